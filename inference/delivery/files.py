"""Writing a file so that no reader ever sees half of it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_bytes_atomically(folder: Path, data: bytes, extension: str) -> Path:
    """``data`` as ``folder/<fresh uuid>.<extension>``, written beside it first; a failed write leaves nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.{extension}"
    partial = path.with_suffix(path.suffix + ".part")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return path.resolve()
