"""The 5 Hz LM's cost against the DiT's for the same request, measured side by side in one process.

For a ``thinking`` request (caption, lyrics, 10 s by default, batch 1) it times, round by round: phase 1
(the metadata plan, constrained), phase 2 (the audio codes, with CFG), and the DiT call that renders them.
For each phase it also gives the decoding loop's tokens per second and its host-side time per generated token:
the loop's time less the time spent inside the model's forward calls (both timed here by wrapping the model's
``forward`` and the planner's ``decode``; nothing of this is in the worker).

    python bench/lm.py [--rounds 3] [--duration 10] [--checkpoint-dir DIR] [--lm NAME] [--cache auto|static|dynamic]

Without --checkpoint-dir a tiny random DiT and LM are made in a temporary folder. The last line is the
headline: ``lm_to_dit_ratio <median LM seconds / median DiT seconds>``.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Clock:
    """Seconds spent inside the callables it wraps, summed."""

    def __init__(self):
        self.seconds = 0.0

    def wrap(self, function):
        @functools.wraps(function)  # keeps the signature, which the loop inspects
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


class Phase:
    """One LM phase, round by round: wall seconds, the decoding loop's seconds, the seconds inside the model's
    forward calls, and the tokens generated."""

    def __init__(self, name: str, loop: Clock, forward: Clock):
        self.name, self.loop, self.forward = name, loop, forward
        self.seconds, self.loops, self.forwards, self.tokens = [], [], [], []

    def run(self, function, *args):
        loop, forward, started = self.loop.seconds, self.forward.seconds, time.perf_counter()
        result = function(*args)
        self.seconds.append(time.perf_counter() - started)
        self.loops.append(self.loop.seconds - loop)
        self.forwards.append(self.forward.seconds - forward)
        self.tokens.append(result.tokens)
        return result

    def line(self) -> str:
        """Medians: wall seconds, tokens, the loop's tokens per second, host milliseconds per token."""
        rate = statistics.median(n / loop for n, loop in zip(self.tokens, self.loops))
        host = statistics.median(1000 * (loop - fwd) / n for n, loop, fwd in zip(self.tokens, self.loops,
                                                                                   self.forwards))
        return (f"{self.name:16} {statistics.median(self.seconds):8.3f} s  {statistics.median(self.tokens):5.0f} "
                f"tokens  {rate:7.0f} tokens/s  host {host:.3f} ms/token")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--checkpoint-dir", type=Path, default=os.environ.get("ACESTEP_CHECKPOINT_DIR"))
    parser.add_argument("--lm", default="acestep-5Hz-lm-0.6B")
    parser.add_argument("--cache", choices=("auto", "static", "dynamic"), default="auto",
                        help="the KV cache of the loop (auto: the device's default)")
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
    import inference.lm.planner as planner_module

    forward_clock, loop_clock = Clock(), Clock()
    model = planner.lm.model
    model.forward = forward_clock.wrap(model.forward)
    decode = planner_module.decode
    if args.cache != "auto":
        decode = functools.partial(decode, static_cache=args.cache == "static")
    planner_module.decode = loop_clock.wrap(decode)

    plan_phase, codes_phase = Phase("phase 1 (plan)", loop_clock, forward_clock), \
        Phase("phase 2 (codes)", loop_clock, forward_clock)
    request = parse_generate_request({"caption": "dreamy synthwave, airy vocals", "lyrics": "[Verse]\nneon rain\n",
                                      "thinking": True, "audio_duration": args.duration, "batch_size": 1, "seed": 1},
                                     service.loaded.limits)
    dit_s, tokens = [], []
    for index in range(args.rounds):
        plan = plan_phase.run(planner.plan, request.prompt, request.lyrics, {"duration": int(args.duration)},
                              Sampling(), index)
        codes = codes_phase.run(planner.codes, request.prompt, request.lyrics, plan.output.metas(), args.duration,
                                Sampling(cfg_scale=2.5), "NO USER INPUT", index)
        tokens.append(plan.tokens + codes.tokens)
        prepared = prepare(None, request, True)  # the DiT alone, rendering the codes
        started = time.perf_counter()
        run.generate(service.loaded, [prepared.request], None, [codes.output.codes])
        dit_s.append(time.perf_counter() - started)
    plan_m, codes_m, dit_m = (statistics.median(v) for v in (plan_phase.seconds, codes_phase.seconds, dit_s))
    print(f"{planner.name} on {service.loaded.device}, {args.duration:g} s, batch 1, {args.rounds} rounds "
          f"(medians), cache {args.cache}; {statistics.median(tokens):.0f} LM tokens per request")
    print(plan_phase.line())
    print(codes_phase.line())
    print(f"{'DiT (8 steps)':16} {dit_m:8.3f} s")
    print(f"lm_to_dit_ratio {(plan_m + codes_m) / dit_m:.2f}")


if __name__ == "__main__":
    main()
