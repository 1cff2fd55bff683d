"""A checkpoint laid out as the Hugging Face hub library caches a snapshot: ``models--ORG--NAME/refs/main``,
``snapshots/<hash>/...`` with every file a symlink into ``blobs/`` (named by the file's sha256)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


def cache_as_hub(source: Path, cache: Path, repo: str, revision: str = SNAPSHOT) -> Path:
    """``source``'s files under ``cache`` as the hub library lays out ``repo`` at ``revision``; its snapshot."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    snapshot = folder / "snapshots" / revision
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    (folder / "refs").mkdir(exist_ok=True)
    (folder / "refs" / "main").write_text(revision)
    for file in sorted(p for p in source.rglob("*") if p.is_file()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = folder / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(blob, link.parent), link)
    return snapshot
