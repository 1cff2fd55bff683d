"""What upstream's per-step corrections cost: the same request rendered with DCW and without, and a balanced
repaint against plain text2music and against an aggressive repaint (the same render without the source's
injection, crossfade and splice), side by side.

All run in this process on the same loaded weights and the same request (60 s, batch 1, 8 steps; the repaints
of a 60 s source), interleaved round by round so machine noise hits them alike. Reported: the medians, the cost
per sampler step in milliseconds, and, as the headline, the ratio of the medians with DCW and without.

    python bench/fidelity.py [--rounds 5] [--duration 60] [--steps 8] [--checkpoint-dir DIR]

Without --checkpoint-dir (or ACESTEP_CHECKPOINT_DIR) a tiny random-weight checkpoint is made in a temporary
folder; there the DiT is so small that DCW's share is far larger than on a real model. The last line is the
headline: ``dcw_ratio <median with DCW / median without>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--checkpoint-dir", type=Path, default=os.environ.get("ACESTEP_CHECKPOINT_DIR"))
    args = parser.parse_args()

    from bench.tiny import checkpoint_root
    from inference import run
    from inference.contract import parse_generate_request
    from inference.load import load_pipeline
    from inference.settings import Settings

    loaded = load_pipeline(Settings(ACESTEP_CHECKPOINT_DIR=checkpoint_root(args.checkpoint_dir), ACESTEP_WARMUP=False))
    base = {"prompt": "bench", "lyrics": "[inst]", "audio_duration": args.duration, "batch_size": 1, "seed": 1,
            "inference_steps": args.steps, "use_random_seed": False}
    import base64

    import numpy as np

    from inference.audio import encode

    noise = (0.3 * np.random.default_rng(0).standard_normal((2, int(args.duration * 48_000)))).astype(np.float32)
    source = base64.b64encode(encode(noise, 48_000, "wav").data).decode()
    repaint = {**base, "dcw_enabled": False, "task_type": "repaint", "src_audio_base64": source,
               "repainting_start": args.duration / 4, "repainting_end": args.duration / 2}
    variants = {"off": {**base, "dcw_enabled": False}, "dcw": {**base, "dcw_enabled": True},
                "balanced": repaint, "aggressive": {**repaint, "repaint_mode": "aggressive"}}
    requests = {name: parse_generate_request(job, loaded.limits) for name, job in variants.items()}
    times: dict[str, list[float]] = {name: [] for name in variants}
    run.generate(loaded, [requests["off"]])  # warm-up
    for _ in range(args.rounds):
        for name, request in requests.items():
            started = time.perf_counter()
            run.generate(loaded, [request])
            times[name].append(time.perf_counter() - started)
    off, dcw = statistics.median(times["off"]), statistics.median(times["dcw"])
    balanced, aggressive = statistics.median(times["balanced"]), statistics.median(times["aggressive"])
    print(f"device {loaded.device}, {args.duration:g} s, {args.steps} steps, {args.rounds} rounds")
    print(f"median text2music without DCW {off * 1000:.1f} ms, with DCW {dcw * 1000:.1f} ms")
    print(f"median repaint balanced {balanced * 1000:.1f} ms, aggressive {aggressive * 1000:.1f} ms")
    print(f"balanced_vs_text2music_ratio {balanced / off:.3f}")
    print(f"balanced_ms_per_step {(balanced - aggressive) * 1000 / args.steps:.2f}")
    print(f"dcw_ms_per_step {(dcw - off) * 1000 / args.steps:.2f}")
    print(f"dcw_ratio {dcw / off:.3f}")


if __name__ == "__main__":
    main()
