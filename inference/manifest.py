"""The build manifest: what ``builder/verify.py`` checked, and the one-second check at cold start.

The manifest (``acestep_manifest.json`` in the checkpoint folder) lists every file with its size and sha256,
the library versions and the verification run. At cold start only sizes are compared, so a truncated or
swapped file is caught in well under a second instead of minutes of hashing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from inference.errors import CheckpointError

MANIFEST = "acestep_manifest.json"
_SKIP = (MANIFEST,)


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in _SKIP and not p.name.endswith(".part"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(folder: Path, extra: dict[str, Any]) -> Path:
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files_of(folder)}
    path = folder / MANIFEST
    path.write_text(json.dumps({"format": 1, "files": files, **extra}, indent=2, sort_keys=True) + "\n")
    return path


def check_manifest(folder: Path) -> int:
    """Compare file sizes with the manifest; returns the number of files checked (0 = no manifest)."""
    path = folder / MANIFEST
    if not path.is_file():
        return 0
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"{folder.name}/{MANIFEST} is unreadable ({type(err).__name__}); rebuild the image "
                              f"with builder/") from None
    for name, entry in files.items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{folder.name}/{name} is missing, though the build verified it; rebuild the "
                                  f"image with builder/")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise CheckpointError(f"{folder.name}/{name} has {size} bytes, but the build verified {entry['bytes']}; "
                                  f"the checkpoint changed after it was built: rebuild the image with builder/")
    return len(files)
