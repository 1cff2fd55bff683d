"""Lossy encoders side by side: CPU time per second of audio and quality at the same bitrate.

For each lossy format, every candidate this machine has encodes the same 30 s of synthetic music (stereo at
48 kHz: chords of harmonic tones with decays, a kick, hats of filtered noise, each channel a little different):

- mp3: libsndfile (LAME inside), ``lameenc`` (LAME at quality 2, 5 and 7), PyAV's ``libmp3lame`` (FFmpeg);
- opus: libsndfile, PyAV's ``libopus``; ogg (Vorbis): libsndfile, PyAV's native ``vorbis``;
- aac (m4a): PyAV's native ``aac`` (FFmpeg's encoder), the one AAC encoder a wheel ships.

**Speed** is the process CPU time of one single-threaded encode (median of rounds) per second of audio.
**Quality** is the signal-to-error ratio, in dB, of the decoded file against the source within 50 Hz-15 kHz
(the band where a 128-320 kbps codec spends its bits and ears hear best), split at 4 kHz (below it most
of the music's energy and the ear's keenest band; above it the detail a codec cuts first), on STFT frames after the
encoder's delay is found by cross-correlation and removed, and after a least-squares gain, so only what the
codec changed counts. Higher is better; a few dB between encoders at the same bitrate is audible on critical
material, fractions of a dB are not. The bitrate achieved is reported beside it.

    python bench/encoders.py [--seconds 30] [--rounds 3] [--kbps 192]

The last line is the headline: ``mp3_speedup <libsndfile CPU time / the default mp3 encoder's>``.
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


def material(seconds: float, rate: int = RATE) -> np.ndarray:
    """[2, samples] float32 of music-like sound, peak 0.9."""
    rng = np.random.default_rng(7)
    t = np.arange(int(seconds * rate)) / rate
    out = np.zeros((2, t.size))
    chords = [(220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (164.8, 207.7, 246.9)]
    for start in np.arange(0, seconds, 0.5):
        notes = chords[int(start / 2) % len(chords)]
        span = (t >= start) & (t < start + 1.5)
        local = t[span] - start
        for k, f in enumerate(notes):
            tone = sum(np.sin(2 * np.pi * f * h * local + k) / h ** 1.3 for h in range(1, 9))
            envelope = np.exp(-2.5 * local)
            out[0, span] += 0.12 * tone * envelope * (1.0 + 0.2 * k)
            out[1, span] += 0.12 * tone * envelope * (1.2 - 0.2 * k)
    for beat in np.arange(0, seconds, 0.25):
        index = int(beat * rate)
        length = min(int(0.2 * rate), t.size - index)
        local = np.arange(length) / rate
        if int(beat * 4) % 4 == 0:  # kick
            kick = np.sin(2 * np.pi * 60 * local * (1 + 2 * np.exp(-30 * local))) * np.exp(-12 * local)
            out[:, index:index + length] += 0.5 * kick
        hat = np.diff(rng.standard_normal(length + 1)) * np.exp(-60 * local)  # differenced noise: bright
        out[0, index:index + length] += 0.08 * hat
        out[1, index:index + length] += 0.06 * np.roll(hat, 3)
    return (0.9 * out / np.abs(out).max()).astype(np.float32)


def pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 1).T * 32767).astype("<i2").tobytes()


def lameenc_mp3(samples: np.ndarray, kbps: int, quality: int) -> bytes:
    import lameenc

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(kbps)
    encoder.set_in_sample_rate(RATE)
    encoder.set_out_sample_rate(RATE)
    encoder.set_channels(2)
    encoder.set_quality(quality)
    return bytes(encoder.encode(pcm16(samples)) + encoder.flush())


def pyav_encode(samples: np.ndarray, container: str, codec: str, kbps: int) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=RATE, layout="stereo")
        stream.bit_rate = kbps * 1000
        frame_size = stream.codec_context.frame_size or 1152
        fmt = stream.codec_context.format.name
        planar = np.ascontiguousarray(np.clip(samples, -1, 1).astype(np.float32))
        for start in range(0, planar.shape[1], frame_size):
            chunk = planar[:, start:start + frame_size]
            if fmt == "s16p":
                frame = av.AudioFrame.from_ndarray((chunk * 32767).astype(np.int16), format="s16p", layout="stereo")
            elif fmt == "s16":
                frame = av.AudioFrame.from_ndarray((chunk.T.reshape(1, -1) * 32767).astype(np.int16), format="s16",
                                                   layout="stereo")
            elif fmt == "flt":
                frame = av.AudioFrame.from_ndarray(chunk.T.reshape(1, -1), format="flt", layout="stereo")
            else:
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def libsndfile(samples: np.ndarray, fmt: str, kbps: int) -> bytes:
    from inference.audio import encode

    return encode(samples, RATE, fmt, kbps, mp3_encoder="libsndfile").data


def decode(data: bytes) -> np.ndarray:
    """[2, samples] float32 of any file here (libsndfile, else PyAV for m4a)."""
    import soundfile as sf

    try:
        return sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].T
    except Exception:  # noqa: BLE001 - libsndfile reads no mp4
        import av

        with av.open(io.BytesIO(data)) as container:
            frames = [f.to_ndarray() for f in container.decode(audio=0)]
        audio = np.concatenate(frames, axis=1)
        return audio.astype(np.float32)


def band_snr(source: np.ndarray, decoded: np.ndarray, bands=((50.0, 4_000.0), (4_000.0, 15_000.0))
             ) -> list[float]:
    from scipy.signal import correlate, stft

    probe = min(source.shape[1], 5 * RATE)
    lags = correlate(decoded[0, : probe + 4096], source[0, :probe], mode="valid", method="fft")
    delay = int(np.argmax(lags))
    decoded = decoded[:, delay:]
    n = min(source.shape[1], decoded.shape[1])
    src, dec = source[:, :n].astype(np.float64), decoded[:, :n].astype(np.float64)
    gain = float((src * dec).sum() / (dec * dec).sum())
    f, _, s = stft(src, RATE, nperseg=2048)
    _, _, d = stft(gain * dec, RATE, nperseg=2048)
    out = []
    for low, high in bands:
        band = (f >= low) & (f < high)
        out.append(10 * np.log10(np.sum(np.abs(s[:, band]) ** 2) / np.sum(np.abs(s[:, band] - d[:, band]) ** 2)))
    return out


def measure(encode_fn, samples: np.ndarray, rounds: int) -> tuple[float, float, list[float]]:
    seconds = samples.shape[1] / RATE
    times, data = [], b""
    for _ in range(rounds):
        started = time.process_time()
        data = encode_fn(samples)
        times.append(time.process_time() - started)
    return statistics.median(times) * 1000 / seconds, len(data) * 8 / seconds / 1000, band_snr(samples, decode(data))


def candidates(kbps: int) -> dict[str, dict]:
    found: dict[str, dict] = {"mp3": {"libsndfile": lambda s: libsndfile(s, "mp3", kbps)},
                              "opus": {"libsndfile": lambda s: libsndfile(s, "opus", kbps)},
                              "ogg": {"libsndfile": lambda s: libsndfile(s, "ogg", kbps)}, "aac": {}}
    try:
        import lameenc  # noqa: F401

        from inference.audio import encode

        found["mp3"]["lameenc q2"] = lambda s: encode(s, RATE, "mp3", kbps, mp3_encoder="lameenc").data  # the worker's
        for quality in (5, 7):
            found["mp3"][f"lameenc q{quality}"] = lambda s, q=quality: lameenc_mp3(s, kbps, q)
    except ImportError:
        pass
    try:
        import av  # noqa: F401

        found["mp3"]["pyav libmp3lame"] = lambda s: pyav_encode(s, "mp3", "libmp3lame", kbps)
        found["opus"]["pyav libopus"] = lambda s: pyav_encode(s, "ogg", "libopus", 140)  # libsndfile's rate
        found["ogg"]["pyav vorbis"] = lambda s: pyav_encode(s, "ogg", "vorbis", 190)
        found["aac"]["pyav aac"] = lambda s: pyav_encode(s, "ipod", "aac", kbps)
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kbps", type=int, default=192)
    args = parser.parse_args()

    from inference.settings import Settings

    MP3_ENCODER = Settings().mp3_encoder  # noqa: N806 - what a worker runs with this environment
    samples = material(args.seconds)
    results: dict[tuple[str, str], tuple[float, float, list[float]]] = {}
    print(f"{args.seconds:g} s of synthetic music, stereo 48 kHz, {args.kbps} kbps where the codec takes a rate")
    print(f"{'format':6} {'encoder':18} {'cpu ms/audio-s':>15} {'kbps':>7} {'SNR dB <4k':>11} {'4k-15k':>7}")
    for fmt, encoders in candidates(args.kbps).items():
        for name, fn in encoders.items():
            try:
                results[fmt, name] = measure(fn, samples, args.rounds)
            except Exception as err:  # noqa: BLE001 - a candidate this build lacks
                print(f"{fmt:6} {name:18} unavailable: {type(err).__name__}: {err}")
                continue
            ms, rate, (low, high) = results[fmt, name]
            print(f"{fmt:6} {name:18} {ms:15.2f} {rate:7.0f} {low:11.2f} {high:7.2f}")
    default = {"libsndfile": "libsndfile", "lameenc": "lameenc q2"}[MP3_ENCODER]
    print(f"default mp3 encoder: {default}")
    print(f"mp3_speedup {results['mp3', 'libsndfile'][0] / results['mp3', default][0]:.2f}")


if __name__ == "__main__":
    main()
