"""One long song's MP3 on one core against the same song cut into parts on several cores, side by side.

A 240 s song of synthetic music (``bench/encoders.py``'s material) is encoded at 192 kbps through the worker's
own ``encode_all``: with one thread (one piece), then with each thread count up to the usable cores (parts
encoded at once and joined, ``inference/mp3/split.py``). Wall time is the median of rounds. Each joined file
is decoded and checked against the one-piece file: the same length, and the error against the source in
3-frame windows around the joins at most what the one-piece file's is there (the ratio is printed; 1.00 means
the same coding noise).

    python bench/mp3_parts.py [--seconds 240] [--rounds 3] [--kbps 192]

The last line is the headline: ``parts_wall_ratio <wall time on 2 threads / on 1>``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RATE = 48_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kbps", type=int, default=192)
    args = parser.parse_args()
    import soundfile as sf

    from bench.encoders import material
    from inference.audio import encode_all
    from inference.hardware import usable_cores
    from tests.test_mp3_split import join_quality

    song = material(args.seconds).astype(np.float32)
    cores = usable_cores()
    counts = sorted({1, 2, cores})
    walls: dict[int, float] = {}
    files: dict[int, bytes] = {}
    for threads in counts:
        times = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            files[threads] = encode_all([song], RATE, "mp3", args.kbps, threads=threads)[0].data
            times.append(time.perf_counter() - started)
        walls[threads] = statistics.median(times)

    def decode(data: bytes) -> np.ndarray:
        return sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0]

    whole = decode(files[1])
    print(f"{args.seconds:g} s stereo 48 kHz at {args.kbps} kbps, {cores} usable cores, median of {args.rounds}")
    for threads in counts:
        line = f"{threads:3d} thread(s): {walls[threads]:7.3f} s wall  ({walls[threads] / walls[1]:.2f}x one)"
        if threads > 1:
            joined = decode(files[threads])
            assert joined.shape == whole.shape, "a joined file must decode to the song's length"
            rms, peak = join_quality(song, whole, joined, threads)
            line += f"  joins: error {rms:.2f}x (rms), {peak:.2f}x (peak) the one-piece file's"
        print(line)
    print(f"parts_wall_ratio {walls[2] / walls[1]:.2f}")


if __name__ == "__main__":
    main()
