"""Where an index lives by default."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """``$PIXFIND_HOME``, else ``$XDG_DATA_HOME/pixfind``, else ``~/.local/share/pixfind``."""
    if env := os.environ.get("PIXFIND_HOME"):
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser() / "pixfind"


def resolve_home(index: str | os.PathLike | None) -> Path:
    return (Path(index).expanduser() if index else default_home()).resolve()
