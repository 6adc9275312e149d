"""Atomic JSON writes: a temporary file in the same folder, then ``os.replace``, so a reader
or a crash sees the old file or the new one, never part of one."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Replace ``path`` with ``obj`` as JSON in one step; on any error the old file (if any)
    is left as it was and no temporary file stays behind. The file gets the usual mode
    (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}-{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=indent)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
