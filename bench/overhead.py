"""Handler overhead: a whole job through ``handler.handler`` against the bare pipeline call.

Both run in this process on the same loaded weights and the same request (test_input.json's: 10 s of
audio, batch 2, 8 steps, mp3), interleaved round by round so machine noise hits both alike; the figure is
the ratio of the medians. Also measured: the same job as wav (what the handler costs without a lossy
encoder), and encode time per second of audio for every format.

    python bench/overhead.py [--rounds 7] [--checkpoint-dir DIR] [--duration 240 --batch 1]

Without --checkpoint-dir (or ACESTEP_CHECKPOINT_DIR) a tiny random-weight checkpoint is made in a
temporary folder. The last line is the headline: ``overhead_ratio <median handler / median bare>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--checkpoint-dir", type=Path, default=os.environ.get("ACESTEP_CHECKPOINT_DIR"))
    parser.add_argument("--duration", type=float, default=None, help="audio_duration instead of test_input.json's")
    parser.add_argument("--batch", type=int, default=None, help="batch_size instead of test_input.json's")
    args = parser.parse_args()

    from bench.tiny import checkpoint_root

    args.checkpoint_dir = checkpoint_root(args.checkpoint_dir)
    # configure the real handler before importing it: the import is the cold start
    for name in [k for k in os.environ if k.startswith("BUCKET_") or k == "ACESTEP_OUTPUT_DIR"]:
        del os.environ[name]
    os.environ["ACESTEP_CHECKPOINT_DIR"] = str(args.checkpoint_dir)
    os.environ["ACESTEP_INLINE_MAX_BYTES"] = str(2**30)  # inline at any --duration: the handler's cost, not the cap
    import handler  # noqa: E402
    import torch  # noqa: E402

    from inference.audio import encode  # noqa: E402
    from inference.contract import parse_generate_request  # noqa: E402
    from inference.seeds import generators_for  # noqa: E402
    from inference.vae_decode import decode_latents, normalise_levels  # noqa: E402

    job_input = json.loads((ROOT / "test_input.json").read_text())["input"]
    if args.duration is not None:
        job_input["audio_duration"] = args.duration
    if args.batch is not None:
        job_input["batch_size"] = args.batch
    loaded = handler.SERVICE.loaded
    request = parse_generate_request(job_input, loaded.limits)
    n = request.batch_size

    def bare() -> None:  # the generation the worker does, nothing else: pipeline to latents, its VAE decode
        with torch.inference_mode():
            latents = loaded.pipe(
                prompt=[request.prompt] * n, lyrics=[request.lyrics] * n,
                vocal_language=[request.vocal_language] * n, audio_duration=request.audio_duration,
                num_inference_steps=request.inference_steps, guidance_scale=1.0, shift=request.shift,
                generator=generators_for(list(range(n))), bpm=request.bpm, keyscale=request.key_scale,
                timesignature=request.time_signature, output_type="latent").audios
            normalise_levels(decode_latents(loaded.pipe.vae, latents, loaded.vae_plan)).cpu().numpy()

    def whole_job(audio_format: str) -> None:
        result = asyncio.run(handler.handler({"id": "bench", "input": {**job_input, "audio_format": audio_format}}))
        if "error" in result:
            raise SystemExit(f"the handler failed: {result['error']}")

    def job() -> None:
        whole_job(request.audio_format)

    def wav_job() -> None:  # the same job without a lossy codec: validation, bookkeeping, delivery
        whole_job("wav")

    bare(), job(), wav_job()  # one untimed round each
    bare_s, job_s, wav_s = [], [], []
    for _ in range(args.rounds):
        for fn, times in ((bare, bare_s), (job, job_s), (wav_job, wav_s)):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)

    print(f"device {loaded.device}, dtype {loaded.report.dtype}, torch threads {torch.get_num_threads()}, "
          f"random weights {loaded.random_weights}")
    print(f"request: {request.audio_duration:g} s x batch {n}, {request.inference_steps} steps, "
          f"{request.audio_format}, {args.rounds} rounds")
    print(f"bare pipeline   median {statistics.median(bare_s):.3f} s  (min {min(bare_s):.3f})")
    print(f"handler job     median {statistics.median(job_s):.3f} s  (min {min(job_s):.3f})")
    print(f"handler job wav median {statistics.median(wav_s):.3f} s  (min {min(wav_s):.3f})  "
          f"ratio {statistics.median(wav_s) / statistics.median(bare_s):.2f}: the handler without the mp3 encoder")

    song = (0.3 * torch.randn(2, int(10 * loaded.sample_rate), generator=torch.Generator().manual_seed(0))).numpy()
    print("encode cost per second of audio (one stereo 48 kHz song, median of 3):")
    for fmt in ("mp3", "wav", "flac", "ogg", "opus"):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            encode(song, loaded.sample_rate, fmt, 192)
            times.append(time.perf_counter() - started)
        print(f"  {fmt:5s} {statistics.median(times) / 10 * 1000:7.2f} ms per audio-second")
    # throughput: jobs one at a time, against two in flight as RunPod's job loop keeps them (a new job starts as
    # soon as one ends, so the next generates while the last one encodes)
    jobs = 4

    async def in_flight(width: int) -> float:
        slots = asyncio.Semaphore(width)

        async def one(i: int) -> dict:
            async with slots:
                return await handler.handler({"id": f"tp-{i}", "input": job_input})

        started = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(jobs)))
        if any("error" in r for r in results):
            raise SystemExit("a throughput job failed")
        return time.perf_counter() - started

    one_at_a_time = asyncio.run(in_flight(1))
    two_at_a_time = asyncio.run(in_flight(2))
    print(f"{jobs} jobs one at a time {one_at_a_time:.2f} s; two in flight {two_at_a_time:.2f} s "
          f"(throughput x{one_at_a_time / two_at_a_time:.2f})")
    print(f"overhead_ratio {statistics.median(job_s) / statistics.median(bare_s):.2f}")


if __name__ == "__main__":
    main()
