"""The 5 Hz LM's cost against the DiT's for the same request, measured side by side in one process.

For a ``thinking`` request (caption, lyrics, 10 s by default, batch 1) it times, round by round: phase 1
(the metadata plan, constrained), phase 2 (the audio codes, with CFG), and the DiT call that renders them.

    python bench/lm.py [--rounds 3] [--duration 10] [--checkpoint-dir DIR] [--lm NAME]

Without --checkpoint-dir a tiny random DiT and LM are made in a temporary folder. The last line is the
headline: ``lm_to_dit_ratio <median LM seconds / median DiT seconds>``.
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--checkpoint-dir", type=Path, default=os.environ.get("ACESTEP_CHECKPOINT_DIR"))
    parser.add_argument("--lm", default="acestep-5Hz-lm-0.6B")
    args = parser.parse_args()
    from bench.tiny import checkpoint_root

    args.checkpoint_dir = checkpoint_root(args.checkpoint_dir, with_lm=args.lm)

    from inference import run
    from inference.lm.sampling import Sampling
    from inference.lm.stage import prepare
    from inference.contract import parse_generate_request
    from inference.service import GenerationService
    from inference.settings import Settings

    service = GenerationService.start(Settings(ACESTEP_CHECKPOINT_DIR=args.checkpoint_dir, ACESTEP_LM_MODEL=args.lm))
    planner = service.planner
    request = parse_generate_request({"caption": "dreamy synthwave, airy vocals", "lyrics": "[Verse]\nneon rain\n",
                                      "thinking": True, "audio_duration": args.duration, "batch_size": 1, "seed": 1},
                                     service.loaded.limits)
    plan_s, codes_s, dit_s, tokens = [], [], [], []
    for index in range(args.rounds):
        started = time.perf_counter()
        plan = planner.plan(request.prompt, request.lyrics, {"duration": int(args.duration)}, Sampling(), index)
        plan_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        codes = planner.codes(request.prompt, request.lyrics, plan.output.metas(), args.duration,
                              Sampling(cfg_scale=2.5), "NO USER INPUT", index)
        codes_s.append(time.perf_counter() - started)
        tokens.append(plan.tokens + codes.tokens)
        prepared = prepare(None, request, True)  # the DiT alone, rendering the codes
        started = time.perf_counter()
        run.generate(service.loaded, [prepared.request], None, [codes.output.codes])
        dit_s.append(time.perf_counter() - started)
    plan_m, codes_m, dit_m = (statistics.median(v) for v in (plan_s, codes_s, dit_s))
    print(f"{planner.name} on {service.loaded.device}, {args.duration:g} s, batch 1, {args.rounds} rounds "
          f"(medians); {statistics.median(tokens):.0f} LM tokens per request")
    print(f"phase 1 (plan)   {plan_m:8.3f} s")
    print(f"phase 2 (codes)  {codes_m:8.3f} s")
    print(f"DiT (8 steps)    {dit_m:8.3f} s")
    print(f"lm_to_dit_ratio {(plan_m + codes_m) / dit_m:.2f}")


if __name__ == "__main__":
    main()
