"""The checkpoint a bench runs on: the one given, else tiny random ones made in a temporary folder."""

from __future__ import annotations

import tempfile
from pathlib import Path


def checkpoint_root(given: Path | None, with_lm: str | None = None) -> Path:
    if given is not None:
        return Path(given)
    from inference.demo_checkpoint import make_demo_checkpoint

    root = Path(tempfile.mkdtemp(prefix="bench-ckpt-"))
    make_demo_checkpoint(root / "acestep-v15-turbo")
    if with_lm:
        from inference.lm.demo import make_demo_lm

        make_demo_lm(root / with_lm)
    return root
