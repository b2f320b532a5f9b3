"""The docs name only settings and error codes that exist, and every one that exists is
documented where a user looks: settings in README.md (or docs/), error codes in docs/protocol.md."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import msgspec

from game.errors import ErrorCode
from server.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROTOCOL = ROOT / "docs" / "protocol.md"
# Backticked UPPER_SNAKE names in the docs that are neither settings nor error codes.
OTHER_NAMES = {
    "THISTHAT_CONFIG",  # the path of the TOML file itself
    "PLAYGROUND_SCREENSHOT",  # where a test copies the playground's screenshot
    "THISTHAT_FUZZ_EXAMPLES",  # the fuzz suite's size and time budget
    "THISTHAT_FUZZ_BUDGET_S",
    "BENCH_ARGS",  # make variables
    "CHAOS_ARGS",
    "DATABASE_URL",
    "REDIS_URL",
}
# The deployment's own variables (compose interpolation), named in deploy/.env.example.
DEPLOY_VARIABLES = set(
    re.findall(
        r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / "deploy" / ".env.example").read_text(), re.MULTILINE
    )
)
NAME = re.compile(r"`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?:=[^`]*)?`")


def setting_names() -> set[str]:
    fields = msgspec.structs.fields(Settings) if hasattr(Settings, "__struct_fields__") else None
    names = (
        [field.name for field in fields]
        if fields is not None
        else [field.name for field in dataclasses.fields(Settings)]  # type: ignore[arg-type]
    )
    return {name.upper() for name in names}


def backticked(paths: list[Path]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in paths:
        for name in NAME.findall(path.read_text()):
            found.setdefault(name, set()).add(path.name)
    return found


def test_every_name_the_docs_give_is_a_setting_or_an_error_code() -> None:
    known = setting_names() | {code.value for code in ErrorCode} | OTHER_NAMES | DEPLOY_VARIABLES
    unknown = {name: where for name, where in backticked(DOCS).items() if name not in known}
    assert not unknown, f"named in the docs but not in the code: {unknown}"


def test_every_setting_is_documented() -> None:
    documented = set(backticked(DOCS)) | {
        name for path in DOCS for name in re.findall(r"\b[A-Z][A-Z0-9_]+\b", path.read_text())
    }
    missing = sorted(setting_names() - documented)
    assert not missing, f"settings no doc names: {missing}"


def test_every_error_code_is_in_the_protocol_and_no_other() -> None:
    text = PROTOCOL.read_text()
    table = set(re.findall(r"^\| `([A-Z_]+)` \|", text, re.MULTILINE))
    codes = {code.value for code in ErrorCode}
    assert codes - table == set(), f"codes missing from protocol.md's table: {codes - table}"
    assert table - codes == set(), f"protocol.md's table lists unknown codes: {table - codes}"
