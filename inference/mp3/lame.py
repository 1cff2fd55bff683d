"""One stretch of audio to constant-bitrate MP3 frames with LAME (``lameenc``), at LAME's ``-q 2``.

``lameenc`` runs LAME without Python's lock, so stretches encode in parallel threads. It writes the frames
only: the gapless header is the caller's (``inference.mp3.gapless``).
"""

from __future__ import annotations

import numpy as np

MP3_MIN_KBPS, MP3_MAX_KBPS = 32, 320
LAME_QUALITY = 2  # LAME's -q: 0 slowest .. 9 fastest; 2 is its recommended high quality
LAME_BLOCK_FRAMES = 10 * 48_000  # converted to 16-bit and fed to LAME a block at a time: bounded extra memory


def lame_frames(frames: np.ndarray, sample_rate: int, kbps: int) -> bytes:
    """[frames, channels] float32 in [-1, 1] to LAME's frames, at the song's own rate (LAME would otherwise
    resample low bitrates down, to 16-32 kHz)."""
    import lameenc

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(min(max(int(kbps), MP3_MIN_KBPS), MP3_MAX_KBPS))
    encoder.set_in_sample_rate(sample_rate)
    encoder.set_out_sample_rate(sample_rate)
    encoder.set_channels(frames.shape[1])
    encoder.set_quality(LAME_QUALITY)
    out = bytearray()
    for start in range(0, frames.shape[0], LAME_BLOCK_FRAMES):
        block = np.rint(frames[start:start + LAME_BLOCK_FRAMES] * 32767.0).astype("<i2")
        out += encoder.encode(block.tobytes())
    out += encoder.flush()
    return bytes(out)
