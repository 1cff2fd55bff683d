"""Seconds per song, where they go, and what the hardware gives: the speed bench of issue 4.

Builds the pipeline with random weights, either tiny (default; CPU-friendly, kept working by the tests) or
full size with ``--full`` (the real configs: DiT hidden 2048 x 24 layers, a Qwen3-Embedding-0.6B-sized text
encoder, the 48 kHz Oobleck VAE), then for every duration x batch: seconds per song, the split between
text encoding, DiT steps and VAE decode, peak accelerator memory, and the DiT's achieved TFLOP/s (FLOPs
counted once with torch's FlopCounterMode, against ``--peak-tflops`` when given). Also the MP3 encode cost
of one song of the longest duration.

    python bench/gpu.py [--full] [--durations 10,30] [--batches 1,2] [--steps 8] [--dtype auto] [--peak-tflops 989]

The last line is the headline: ``seconds_per_song <longest duration, batch 1>``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_full_pipeline():
    """ACE-Step 1.5 turbo at full size, random weights (CHECKPOINTS.md section 1 configs)."""
    from diffusers import AceStepPipeline, AutoencoderOobleck, FlowMatchEulerDiscreteScheduler
    from diffusers.models.transformers.ace_step_transformer import AceStepTransformer1DModel
    from diffusers.pipelines.ace_step import AceStepAudioTokenDetokenizer, AceStepAudioTokenizer, AceStepConditionEncoder
    from transformers import Qwen3Config, Qwen3Model

    from inference.demo_checkpoint import build_tokenizer

    attention = dict(num_attention_heads=16, num_key_value_heads=8, head_dim=128, rope_theta=1_000_000.0,
                     sliding_window=128)
    layer_types = ["sliding_attention", "full_attention"] * 12
    transformer = AceStepTransformer1DModel(hidden_size=2048, intermediate_size=6144, num_hidden_layers=24,
                                            in_channels=192, audio_acoustic_hidden_dim=64, patch_size=2,
                                            layer_types=layer_types, encoder_hidden_size=2048, is_turbo=True,
                                            model_version="turbo", **attention)
    condition = AceStepConditionEncoder(hidden_size=2048, intermediate_size=6144, text_hidden_dim=1024,
                                        timbre_hidden_dim=64, num_lyric_encoder_hidden_layers=8,
                                        num_timbre_encoder_hidden_layers=4, layer_types=layer_types, **attention)
    with torch.no_grad():
        condition.silence_latent.normal_(0, 0.5)
    pooler = dict(hidden_size=2048, intermediate_size=6144, audio_acoustic_hidden_dim=64, pool_window_size=5,
                  num_attention_pooler_hidden_layers=2, layer_types=layer_types[:2], **attention)
    tokenizer = build_tokenizer()
    text = Qwen3Model(Qwen3Config(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                                  num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                                  vocab_size=max(len(tokenizer), 1024), max_position_embeddings=32768))
    vae = AutoencoderOobleck(encoder_hidden_size=128, downsampling_ratios=[2, 4, 4, 6, 10],
                             channel_multiples=[1, 2, 4, 8, 16], decoder_channels=128, decoder_input_channels=64,
                             audio_channels=2, sampling_rate=48000)
    return AceStepPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, transformer=transformer,
                           condition_encoder=condition, scheduler=FlowMatchEulerDiscreteScheduler(
                               num_train_timesteps=1, shift=1.0),
                           audio_tokenizer=AceStepAudioTokenizer(fsq_dim=2048, fsq_input_levels=[8, 8, 8, 5, 5, 5],
                                                                 fsq_input_num_quantizers=1, **pooler),
                           audio_token_detokenizer=AceStepAudioTokenDetokenizer(**pooler))


class Split:
    """Wall time spent inside the text encoder, the DiT and the VAE decoder, synchronised on the device."""

    def __init__(self, pipe, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)
        self._wrap(pipe.text_encoder, "forward", "text")
        self._wrap(pipe.transformer, "forward", "dit")
        self._wrap(pipe.vae, "decode", "vae")

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _wrap(self, module, method: str, name: str) -> None:
        original = getattr(module, method)

        def timed(*args, **kwargs):
            self._sync()
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._sync()
                self.seconds[name] += time.perf_counter() - started

        setattr(module, method, timed)

    @contextmanager
    def measure(self):
        self.seconds.clear()
        self._sync()
        started = time.perf_counter()
        yield
        self._sync()
        self.seconds["total"] = time.perf_counter() - started


def call(pipe, batch: int, duration: float, steps: int):
    return pipe(prompt=["bench: bright synth-pop"] * batch, lyrics=["[Verse]\nla la la"] * batch,
                vocal_language=["en"] * batch, audio_duration=duration, num_inference_steps=steps,
                guidance_scale=1.0, generator=[torch.Generator().manual_seed(i) for i in range(batch)],
                output_type="pt")


def dit_flops(pipe, batch: int, duration: float) -> float:
    """FLOPs of one DiT forward at this size, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    counted = []
    original = pipe.transformer.forward

    def counting(*args, **kwargs):
        with FlopCounterMode(display=False) as counter:
            out = original(*args, **kwargs)
        counted.append(counter.get_total_flops())
        return out

    pipe.transformer.forward = counting
    try:
        call(pipe, batch, duration, 1)
    finally:
        pipe.transformer.forward = original
    return float(counted[0]) if counted else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="full-size random-weight pipeline (needs a GPU)")
    parser.add_argument("--durations", default=None, help="seconds, comma-separated (default 10,30; full: "
                                                          "30,60,120,240,600)")
    parser.add_argument("--batches", default=None, help="comma-separated (default 1,2; full: 1,2,4,8)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense peak, for utilisation")
    args = parser.parse_args()

    from inference.audio import encode
    from inference.hardware import pick_device, pick_dtype

    device = pick_device(args.device)
    dtype = pick_dtype(args.dtype, device)
    durations = [float(d) for d in (args.durations or ("30,60,120,240,600" if args.full else "10,30")).split(",")]
    batches = [int(b) for b in (args.batches or ("1,2,4,8" if args.full else "1,2")).split(",")]
    built = time.perf_counter()
    if args.full:
        pipe = build_full_pipeline()
    else:
        from inference.demo_checkpoint import build_pipeline

        pipe = build_pipeline()
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    build_s = time.perf_counter() - built
    split = Split(pipe, device)
    with torch.inference_mode():
        call(pipe, 1, min(durations), 2)  # warm-up
    print(f"{'full' if args.full else 'tiny'} pipeline on {device} ({dtype}), built in {build_s:.1f} s; "
          f"torch {torch.__version__}; {args.steps} steps, median of {args.rounds}")
    print(f"{'duration':>8} {'batch':>5} {'s/song':>8} {'text':>7} {'dit':>7} {'vae':>7} {'peak GiB':>8} "
          f"{'TFLOP/s':>8}")
    headline = None
    for duration in durations:
        for batch in batches:
            runs = []
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            try:
                for _ in range(args.rounds):
                    with torch.inference_mode(), split.measure():
                        call(pipe, batch, duration, args.steps)
                    runs.append(dict(split.seconds))
            except torch.OutOfMemoryError:
                print(f"{duration:8.0f} {batch:5d}  out of memory")
                torch.cuda.empty_cache()
                continue
            median = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in ("total", "text", "dit", "vae")}
            peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            with torch.inference_mode():
                flops = dit_flops(pipe, batch, duration) * args.steps
            tflops = flops / median["dit"] / 1e12 if median["dit"] else 0.0
            util = f" ({100 * tflops / args.peak_tflops:.0f}%)" if args.peak_tflops else ""
            print(f"{duration:8.0f} {batch:5d} {median['total'] / batch:8.3f} {median['text']:7.3f} "
                  f"{median['dit']:7.3f} {median['vae']:7.3f} {peak:8.2f} {tflops:8.3f}{util}")
            if batch == 1:
                headline = median["total"]
    longest = max(durations)
    song = np.random.default_rng(0).uniform(-0.5, 0.5, (2, int(longest * 48000))).astype(np.float32)
    started = time.perf_counter()
    encoded = encode(song, 48000, "mp3", 192)
    print(f"mp3 encode of one {longest:.0f} s song: {time.perf_counter() - started:.2f} s CPU ({len(encoded.data)} "
          f"bytes)")
    print(f"seconds_per_song {headline:.3f}")


if __name__ == "__main__":
    main()
