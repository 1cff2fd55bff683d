"""Seconds per song, where they go, and what the hardware gives: the speed bench of issue 4.

Builds the pipeline with random weights, either tiny (default; CPU-friendly, kept working by the tests) or
full size with ``--full`` (the real configs: DiT hidden 2048 x 24 layers, a Qwen3-Embedding-0.6B-sized text
encoder, the 48 kHz Oobleck VAE), then for every duration x batch: seconds per song, the split between
text encoding, DiT steps and VAE decode, peak accelerator memory, and the DiT's achieved TFLOP/s (FLOPs
counted once with torch's FlopCounterMode, against ``--peak-tflops`` when given). Then each speed choice of the
worker measured against what it replaced, side by side in this process: the VAE decode (one call vs chunked
overlap-add, weight norm folded, float32), the DiT's attention kernel, its dtype (CUDA) and torch.compile
(``--compile``, default with ``--full``). Then the MP3 encode and the upload of one song of the longest duration
to a local S3 server, and the throughput of the biggest batch against batch 1.

    python bench/gpu.py [--full] [--durations 10,30] [--batches 1,2] [--steps 8] [--dtype auto] [--peak-tflops 989]

The last line is the headline: ``seconds_per_song`` at 240 s (else the longest duration), batch 1.
"""

from __future__ import annotations

import argparse
import logging
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
    """ACE-Step 1.5 turbo at full size, random weights (docs/checkpoints.md section 1 configs)."""
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


def call(pipe, batch: int, duration: float, steps: int, plan=None):
    """What the worker does per batch: the pipeline to latents, then its own chunked VAE decode and levels."""
    from inference.vae_decode import ChunkPlan, decode_latents, normalise_levels

    latents = latents_only(pipe, batch, duration, steps)
    return normalise_levels(decode_latents(pipe.vae, latents, plan or ChunkPlan()))


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


def latents_only(pipe, batch: int, duration: float, steps: int):
    return pipe(prompt=["bench"] * batch, lyrics=["[inst]"] * batch, audio_duration=duration,
                num_inference_steps=steps, guidance_scale=1.0, output_type="latent",
                generator=[torch.Generator().manual_seed(i) for i in range(batch)]).audios


def timed(device: torch.device, fn, rounds: int) -> tuple[float, float]:
    """Median seconds of ``fn()`` over ``rounds`` (after one untimed call) and the peak accelerator GiB."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        fn()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(rounds):
            sync()
            started = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak


def compare(title: str, rows: list[tuple[str, object]], device: torch.device, rounds: int) -> None:
    """One before/after table, every row measured in this process, the first row the reference."""
    print(f"\n{title}")
    print(f"{'':46} {'median s':>9} {'x first':>8} {'peak GiB':>8}")
    first = None
    for name, fn in rows:
        try:
            seconds, peak = timed(device, fn, rounds)
        except Exception as err:  # noqa: BLE001 - a kernel this machine lacks is a row, not the end of the bench
            print(f"{name:46} unavailable: {str(err).strip().splitlines()[0][:80] if str(err).strip() else err!r}")
            continue
        first = first or seconds
        print(f"{name:46} {seconds:9.3f} {first / seconds:8.2f} {peak:8.2f}")


def copy_of(module):
    """A copy of a diffusers model (deepcopy refuses weight-normalised convolutions)."""
    twin = type(module).from_config(module.config)
    twin.load_state_dict(module.state_dict())
    twin.to(device=module.device)
    return (twin if twin.dtype == module.dtype else twin.to(dtype=module.dtype)).eval()


def compare_vae(pipe, raw_vae, device, duration: float, rounds: int) -> None:
    from inference.vae_decode import ChunkPlan, decode_latents

    frames = int(duration * pipe.latents_per_second)
    latents = torch.randn(1, frames, pipe.vae.config.decoder_input_channels, device=device, dtype=pipe.transformer.dtype)
    whole, chunked, ten = ChunkPlan(chunk_latents=10**9), ChunkPlan(), ChunkPlan(chunk_latents=250)
    rows = [("one call, weight norm per forward (before)", lambda: decode_latents(raw_vae, latents, whole)),
            ("one call, weight norm folded", lambda: decode_latents(pipe.vae, latents, whole)),
            ("30 s chunks + overlap-add, folded (worker)", lambda: decode_latents(pipe.vae, latents, chunked)),
            ("10 s chunks + overlap-add, folded", lambda: decode_latents(pipe.vae, latents, ten))]
    if device.type == "cuda" and pipe.vae.dtype != torch.float32:
        fp32 = copy_of(pipe.vae).float()
        rows.append(("30 s chunks, VAE in float32", lambda: decode_latents(fp32, latents, chunked)))
    compare(f"VAE decode of one {duration:.0f} s song", rows, device, rounds)


def compare_attention(pipe, device, duration: float, steps: int, rounds: int) -> None:
    from inference.attention import apply_backend

    candidates = ["native", "_native_cudnn", "_native_efficient", "_native_flash", "flash", "_flash_3"]
    if device.type != "cuda":
        candidates = ["native", "_native_math"]

    def with_backend(name):
        def run():
            apply_backend(pipe.transformer, name)
            latents_only(pipe, 1, duration, steps)
        return run

    compare(f"DiT attention kernel ({duration:.0f} s, batch 1, {steps} steps, to latents)",
            [(name, with_backend(name)) for name in candidates], device, rounds)
    apply_backend(pipe.transformer, "native")


def compare_dtype(pipe, device, duration: float, steps: int, rounds: int) -> None:
    dtype = pipe.transformer.dtype

    def in_dtype(target):
        def run():
            pipe.transformer.to(dtype=target)
            pipe.condition_encoder.to(dtype=target)
            pipe.text_encoder.to(dtype=target)
            latents_only(pipe, 1, duration, steps)
        return run

    compare(f"DiT, encoders dtype ({duration:.0f} s, batch 1, {steps} steps, to latents)",
            [("float32 (before)", in_dtype(torch.float32)), (f"{dtype} (worker)".replace("torch.", ""),
                                                              in_dtype(dtype))], device, rounds)


def compare_compile(pipe, device, duration: float, steps: int, rounds: int) -> None:
    eager = timed(device, lambda: call(pipe, 1, duration, steps), rounds)
    for block in pipe.transformer.layers:
        block.compile(dynamic=True)
    pipe.vae.decoder.compile(dynamic=True)
    started = time.perf_counter()
    with torch.inference_mode():
        call(pipe, 1, duration, steps)
    compile_s = time.perf_counter() - started
    compiled = timed(device, lambda: call(pipe, 1, duration, steps), rounds)
    print(f"\ntorch.compile, DiT blocks + VAE decoder ({duration:.0f} s, batch 1, {steps} steps, whole song)")
    print(f"{'eager (before)':46} {eager[0]:9.3f} {1.0:8.2f} {eager[1]:8.2f}")
    print(f"{'compiled (worker on CUDA)':46} {compiled[0]:9.3f} {eager[0] / compiled[0]:8.2f} {compiled[1]:8.2f}")
    print(f"first compiled call (compiling): {compile_s:.1f} s")


def encode_and_upload(duration: float) -> None:
    """MP3 encode of one song, and its upload to an S3-compatible server on this machine (moto), as the worker
    does it: the client-side cost (hashing, signing, HTTP), not the network's."""
    from inference.audio import encode

    song = np.random.default_rng(0).uniform(-0.5, 0.5, (2, int(duration * 48000))).astype(np.float32)
    started = time.perf_counter()
    encoded = encode(song, 48000, "mp3", 192)
    encode_s = time.perf_counter() - started
    print(f"\nmp3 encode of one {duration:.0f} s song: {encode_s:.2f} s CPU ({len(encoded.data) / 2**20:.1f} MiB); "
          f"the worker overlaps it with the next job's generation")
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        print("upload: skipped (moto not installed)")
        return
    from inference.settings import Settings
    from inference.delivery import choose_target

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=url, aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket="bench")
        # the bench's moto server is on loopback, as an operator's private bucket would be
        target = choose_target(Settings(ACESTEP_ALLOW_PRIVATE_ENDPOINTS=True), {"endpointUrl": url, "accessId": "bench", "accessSecret": "bench",
                                            "bucketName": "bench"})
        target.deliver([encoded], "warm-up")
        started = time.perf_counter()
        target.deliver([encoded], "bench")
        print(f"upload + presign to a local S3 server: {time.perf_counter() - started:.3f} s")
    finally:
        server.stop()


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
    parser.add_argument("--compare-at", type=float, default=None,
                        help="duration of the before/after comparisons (default: the longest, at most 240 s)")
    parser.add_argument("--no-compare", action="store_true", help="skip the before/after comparisons")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (default with --full)")
    args = parser.parse_args()

    from inference.hardware import pick_device, pick_dtype
    from inference.vae_decode import fold_weight_norm

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
    pipe = pipe.to(device=device) if dtype == torch.float32 else pipe.to(device=device, dtype=dtype)
    raw_vae = copy_of(pipe.vae)  # the VAE as loaded, before the worker folds its weight norm
    fold_weight_norm(pipe.vae)
    pipe.set_progress_bar_config(disable=True)
    build_s = time.perf_counter() - built
    split = Split(pipe, device)
    with torch.inference_mode():
        call(pipe, 1, min(durations), 2)  # warm-up
    print(f"{'full' if args.full else 'tiny'} pipeline on {device} ({dtype}), built in {build_s:.1f} s; "
          f"torch {torch.__version__}; {args.steps} steps, median of {args.rounds}")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print(f"{'duration':>8} {'batch':>5} {'s/song':>8} {'text':>7} {'dit':>7} {'vae':>7} {'peak GiB':>8} "
          f"{'TFLOP/s':>8}")
    per_song: dict[tuple[float, int], float] = {}
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
            per_song[(duration, batch)] = median["total"] / batch

    compare_at = args.compare_at or max(d for d in durations if d <= 240 or d == min(durations))
    if not args.no_compare:
        compare_vae(pipe, raw_vae, device, compare_at, args.rounds)
        compare_attention(pipe, device, compare_at, args.steps, args.rounds)
        if device.type == "cuda":
            compare_dtype(pipe, device, compare_at, args.steps, args.rounds)
        if args.compile or args.full:
            compare_compile(pipe, device, compare_at, args.steps, args.rounds)
    encode_and_upload(max(durations))

    biggest = max(batches)
    for duration in durations:
        if (duration, 1) in per_song and (duration, biggest) in per_song and biggest > 1:
            print(f"throughput at batch {biggest} vs batch 1, {duration:.0f} s songs: "
                  f"x{per_song[(duration, 1)] / per_song[(duration, biggest)]:.2f} songs per GPU-second")
    headline_duration = 240.0 if (240.0, 1) in per_song else max(d for d, b in per_song if b == 1)
    print(f"seconds_per_song {per_song[(headline_duration, 1)]:.3f}")


if __name__ == "__main__":
    main()
