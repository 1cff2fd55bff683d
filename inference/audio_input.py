"""Audio a request brings (source or reference, as file bytes) to the model's input: float32 [2, samples].

Any format libsndfile reads (wav, flac, ogg, opus, mp3); resampled to the model's rate with a polyphase
filter; mono is duplicated to stereo, extra channels are dropped. Errors name the request field.
"""

from __future__ import annotations

import io
from math import gcd

import numpy as np
import soundfile as sf
import torch

from inference.errors import InputError
from inference.schema import MAX_DURATION_S


def decode_audio_input(data: bytes, field: str, sample_rate: int) -> torch.Tensor:
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise InputError(f"{field} is not an audio file libsndfile can read (wav, flac, ogg, opus, mp3): "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None
    if audio.shape[0] == 0:
        raise InputError(f"{field} holds no audio samples")
    if audio.shape[0] / rate > MAX_DURATION_S:
        raise InputError(f"{field} must be at most {MAX_DURATION_S:g} seconds long (got {audio.shape[0] / rate:.0f})")
    if not np.isfinite(audio).all():
        raise InputError(f"{field} contains non-finite samples")
    audio = audio[:, :2] if audio.shape[1] >= 2 else np.repeat(audio, 2, axis=1)
    if rate != sample_rate:
        from scipy.signal import resample_poly

        common = gcd(int(rate), int(sample_rate))
        audio = resample_poly(audio, sample_rate // common, int(rate) // common, axis=0).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(audio.T))
