"""Cold start: from process start to the first job served, as RunPod sees a new worker.

Starts ``python handler.py --test_input <job>`` (RunPod's local test mode: the worker's whole cold start, one
job, exit) and times it from the spawn to the job's output, with the worker's own figures for loading and
warm-up from its log. Weights on local disk: the checkpoint given, else a tiny random one made first (not
counted). ``--compile-cache DIR`` measures a compiled start whose kernels come from a baked cache.

    python bench/cold_start.py [--checkpoint-dir checkpoints] [--rounds 3] [--env ACESTEP_COMPILE=all ...]
    python bench/cold_start.py --cache [--rounds 3]     # baked against the host's model cache (the slim image)

The last line is the headline: ``cold_start_s <median>`` (with ``--cache``: ``cached_to_baked_ratio <cached, converted
before / baked>``, the first start that converts printed beside them).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.tiny import checkpoint_root  # noqa: E402

JOB = {"input": {"prompt": "cold start", "lyrics": "[inst]", "audio_duration": 10, "batch_size": 1,
                 "inference_steps": 8, "audio_format": "mp3", "seed": 1}}
LOADED = re.compile(r"load (?P<load>[\d.]+) s, warm-up (?P<warmup>[\d.]+) s")


def one_cold_start(env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "handler.py", "--test_input", json.dumps(JOB)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    total = time.perf_counter() - started
    log = done.stdout + done.stderr
    if done.returncode != 0 or "audios" not in log or "Local testing complete" not in log:
        raise SystemExit(f"the worker did not serve its job:\n{log[-3000:]}")
    figures = LOADED.search(log)
    return {"total": total, "load": float(figures["load"]) if figures else float("nan"),
            "warmup": float(figures["warmup"]) if figures else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile-cache", type=Path, default=None, help="ACESTEP_COMPILE_CACHE for the worker")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the worker, repeatable")
    parser.add_argument("--cache", action="store_true",
                        help="also from the host's model cache (the slim image): the same tiny model as an "
                             "original-layout snapshot, converted at the first start, found converted after")
    args = parser.parse_args()

    if args.cache:
        return compare_with_cache(args.rounds)
    root = checkpoint_root(args.checkpoint_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "RUNPOD_"))}
    env.update(ACESTEP_CHECKPOINT_DIR=str(root), PYTHONUNBUFFERED="1")
    if args.compile_cache:
        env["ACESTEP_COMPILE_CACHE"] = str(args.compile_cache)
    env.update(dict(item.split("=", 1) for item in args.env))
    runs = [one_cold_start(env) for _ in range(args.rounds)]
    median = {k: statistics.median(r[k] for r in runs) for k in ("total", "load", "warmup")}
    rest = median["total"] - median["load"] - median["warmup"]
    print(f"cold start to first job served, median of {args.rounds} ({root.name}):")
    print(f"  weights to device {median['load']:.2f} s, warm-up {median['warmup']:.2f} s, "
          f"imports + first job + exit {rest:.2f} s")
    print(f"cold_start_s {median['total']:.2f}")


def compare_with_cache(rounds: int) -> None:
    """Baked (the diffusers layout, converted at build time) against cached (the same original-layout model as
    the hub caches it): converted in memory (no folder to keep it), converted into a kept folder at the first
    start, and found converted by a later one."""
    import shutil
    import tempfile

    from builder.convert import convert
    from inference.lm.demo import make_demo_lm
    from tests.hub_cache import cache_as_hub
    from tests.original_layout import write_original_checkpoint

    lm = "acestep-5Hz-lm-1.7B"
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    write_original_checkpoint(work / "src")
    make_demo_lm(work / "src" / lm)
    baked = work / "baked"
    convert(work / "src", "acestep-v15-turbo", baked)
    shutil.copytree(work / "src" / lm, baked / lm)
    cache_as_hub(work / "src", work / "hub", "ACE-Step/Ace-Step1.5")
    (work / "empty").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUCKET_", "RUNPOD_", "ACESTEP_", "HF_"))}
    env.update(PYTHONUNBUFFERED="1", ACESTEP_LM_MODEL=lm)
    baked_env = {**env, "ACESTEP_CHECKPOINT_DIR": str(baked)}
    cached_env = {**env, "ACESTEP_CHECKPOINT_DIR": str(work / "empty"), "ACESTEP_HF_CACHE": str(work / "hub")}
    times: dict[str, list[float]] = {"baked": [], "cached, in memory": [], "cached, converting into a folder": [],
                                     "cached, converted before": []}
    for index in range(rounds):  # interleaved, so the machine's drift hits all four alike
        times["baked"].append(one_cold_start(baked_env)["total"])
        times["cached, in memory"].append(one_cold_start(cached_env)["total"])
        first = {**cached_env, "ACESTEP_CONVERTED_DIR": str(work / f"converted-{index}")}
        times["cached, converting into a folder"].append(one_cold_start(first)["total"])
        times["cached, converted before"].append(one_cold_start(first)["total"])
    print(f"cold start to first job served, the same tiny model, median of {rounds}:")
    for name, values in times.items():
        print(f"  {name:34s} {statistics.median(values):6.2f} s")
    ratio = statistics.median(times["cached, converted before"]) / statistics.median(times["baked"])
    print(f"cached_to_baked_ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
