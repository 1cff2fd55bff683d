"""Compile the DiT and the VAE decoder on this machine's GPU and write the kernel cache the image bakes in.

    python -m builder.bake_compile_cache --out compile-cache      # on a machine with the target GPU

Loads the checkpoint exactly as a worker does (ACESTEP_* variables), with ``ACESTEP_COMPILE=all`` unless set,
runs the warm-up (batch 1 and 2) and a few more durations so every graph exists, then writes
``<out>/torch-<version>-<gpu>.bin``. A worker with the same torch and GPU model loads it at cold start.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the cache file (default: ACESTEP_COMPILE_CACHE, else <checkpoints>/compile-cache)")
    parser.add_argument("--durations", default="30,95,240", help="extra warm-up durations in seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from inference.compile import cache_file_for, save_cache
    from inference.load import load_pipeline, warm_up
    from inference.settings import Settings

    environ = dict(os.environ)
    environ.setdefault("ACESTEP_COMPILE", "all")
    if args.out is not None:
        environ["ACESTEP_COMPILE_CACHE"] = str(args.out)
    # the worker's warm-up runs here, not in load_pipeline: the kernels are saved once, after every graph exists
    # (torch hands each artifact to one save only)
    settings = Settings.from_env(environ).model_copy(update={"warmup": False})
    started = time.perf_counter()
    loaded = load_pipeline(settings)
    if not loaded.report.compiled.enabled:
        print("ACESTEP_COMPILE is off: nothing to bake", file=sys.stderr)
        return 2
    warm_up(loaded, durations=(10.0, *(float(d) for d in args.durations.split(",") if d.strip())))
    path = cache_file_for(settings, loaded.device)
    if not save_cache(path):
        print(f"could not write {path}", file=sys.stderr)
        return 1
    print(f"{path} ({path.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
