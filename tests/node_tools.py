"""The Node.js tools of tools/package.json, installed from its lock on first use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def node_tools() -> Path:
    """tools/ with its node_modules in place; skips the test only where Node.js is absent."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed (apt-get install nodejs npm)")
    installed = TOOLS / "node_modules" / ".package-lock.json"
    lock = TOOLS / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(  # noqa: S603 - fixed arguments
            ["npm", "ci", "--no-audit", "--no-fund"],  # noqa: S607 - npm from PATH
            cwd=TOOLS,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return TOOLS
