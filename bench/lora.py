"""LoRA adapters: what loading one costs (the first request, and again), and what an active one costs per step.

On a worker of its own (the tiny random checkpoint unless --checkpoint-dir is given) with an adapter of rank
--rank on every attention projection of the DiT, saved as diffusers does under a temporary ACESTEP_LORA_DIR:

- **load, first**: the admission's work for a request naming it (read, check against the DiT, fold the alpha)
  plus putting it into the model on the GPU thread; **load, again**: the same for the next request (it is kept);
- **per step**: the DiT's time per step (its forward calls alone, timed) for the same request (--steps
  steps) with the adapter active against none, median of rounds, interleaved in one run.

    python bench/lora.py [--rounds 5] [--steps 8] [--rank 16] [--checkpoint-dir DIR]

The last line is the headline: ``lora_step_ratio <seconds per step with the adapter / without>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    args = parser.parse_args()
    from bench.tiny import checkpoint_root
    from inference.contract import parse_generate_request
    from inference.contract.lora import LoraRef
    from inference.load import load_pipeline
    from inference.service import GenerationService
    from inference.settings import Settings
    from tests.lora_files import diffusers_file, peft_lora

    folder = Path(tempfile.mkdtemp(prefix="bench-loras-"))
    settings = Settings(ACESTEP_CHECKPOINT_DIR=checkpoint_root(args.checkpoint_dir), ACESTEP_WARMUP=False,
                        ACESTEP_LORA_DIR=folder)
    service = GenerationService(load_pipeline(settings), settings)
    pipe = service.loaded.pipe
    diffusers_file(peft_lora(pipe.transformer, rank=args.rank), folder / "bench.safetensors", alpha=args.rank)
    size = (folder / "bench.safetensors").stat().st_size

    def load() -> float:
        started = time.perf_counter()
        actives = service.lora.resolve([LoraRef(name="bench")])
        service.lora.activate(pipe, actives)
        return time.perf_counter() - started

    first, again = load(), statistics.median(load() for _ in range(args.rounds))
    request = parse_generate_request({"prompt": "bench", "lyrics": "[inst]", "audio_duration": 10, "batch_size": 1,
                                      "inference_steps": args.steps, "seed": 1, "audio_format": "wav"},
                                     service.loaded.limits)
    with_lora = service.lora.resolve([LoraRef(name="bench")])

    from inference import run

    inside = {"s": 0.0, "calls": 0}
    forward = pipe.transformer.forward

    def timed_forward(*a, **k):  # the DiT's own time, apart from the text encoder and the VAE
        started = time.perf_counter()
        try:
            return forward(*a, **k)
        finally:
            inside["s"] += time.perf_counter() - started
            inside["calls"] += 1

    pipe.transformer.forward = timed_forward

    def render(actives) -> float:
        """Seconds per DiT call of one render."""
        service.lora.activate(pipe, actives)
        staged = service.plan(service.admit(request, "bench"))
        inside.update(s=0.0, calls=0)
        run.generate(service.loaded, [staged.prepared.request])
        return inside["s"] / max(inside["calls"], 1)

    render(()), render(with_lora)  # warm both paths
    plain, styled = [], []
    for _ in range(args.rounds):  # interleaved, so drift in the machine's speed hits both alike
        plain.append(render(()))
        styled.append(render(with_lora))
    plain_s, styled_s = statistics.median(plain), statistics.median(styled)
    print(f"adapter: rank {args.rank} on {len(with_lora[0].adapter.ranks)} modules, {size / 2**20:.2f} MiB file; "
          f"{service.loaded.device}, {args.steps} steps, median of {args.rounds}")
    print(f"load, first request  {first * 1000:8.1f} ms  (read, check, fold, into the DiT)")
    print(f"load, again          {again * 1000:8.2f} ms  (kept: found by its file's stamp)")
    print(f"DiT per step         {plain_s * 1000:8.2f} ms without, {styled_s * 1000:8.2f} ms with the adapter")
    print(f"lora_step_ratio {styled_s / plain_s:.2f}")


if __name__ == "__main__":
    main()
