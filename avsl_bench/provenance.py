"""Tool provenance recorded in every output: version and the git commit of the installed source."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from . import __version__


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Commit of the avsl-bench source tree this module was imported from (None if not a checkout)."""
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=10,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def tool_info() -> dict[str, str | None]:
    """`{"name", "version", "git_commit"}` for result and manifest files."""
    return {"name": "avsl-bench", "version": __version__, "git_commit": git_commit()}
