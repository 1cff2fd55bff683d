"""Audio a request brings (source or reference, as file bytes) to the model's input: float32 [2, samples].

Any format libsndfile reads (wav, flac, ogg, opus, mp3); resampled to the model's rate with a polyphase
filter; mono is duplicated to stereo, extra channels are dropped. Errors name the request field.

Validation (``inference.contract``) already refused files whose header claims too long a length, an absurd rate
or too many channels; decoding still stops at ``MAX_DURATION_S`` of audio whatever the header said, so a file
that lies about its length costs at most that much memory. Runs on the admission thread, never the GPU thread.
"""

from __future__ import annotations

import io
from math import gcd

import numpy as np
import soundfile as sf
import torch

from inference.errors import InputError
from inference.contract import AUDIO_INPUT_FIELDS, MAX_DURATION_S, GenerateRequest, unreadable_audio

BLOCK_S = 10  # seconds decoded at a time


def decode_audio_input(data: bytes, field: str, sample_rate: int) -> torch.Tensor:
    blocks, frames = [], 0
    try:
        with sf.SoundFile(io.BytesIO(data)) as audio_file:
            rate = audio_file.samplerate
            cap = int(MAX_DURATION_S * rate)
            while frames <= cap:  # reads at most cap + 1 frames, a block at a time
                block = audio_file.read(min(BLOCK_S * rate, cap + 1 - frames), dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    break
                frames += block.shape[0]
                blocks.append(np.ascontiguousarray(block[:, :2]))  # extra channels dropped as they come
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(field, err) from None
    if frames == 0:
        raise InputError(f"{field} holds no audio samples")
    if frames > cap:
        raise InputError(f"{field} must be at most {MAX_DURATION_S:g} seconds long (got more than "
                         f"{MAX_DURATION_S:g})")
    audio = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    del blocks
    if not np.isfinite(audio).all():
        raise InputError(f"{field} contains non-finite samples")
    if rate != sample_rate:
        from scipy.signal import resample_poly

        common = gcd(int(rate), int(sample_rate))
        audio = resample_poly(audio, sample_rate // common, int(rate) // common, axis=0).astype(np.float32)
    audio = audio if audio.shape[1] == 2 else np.repeat(audio, 2, axis=1)  # mono to stereo
    return torch.from_numpy(np.ascontiguousarray(audio.T))


def decode_audio_inputs(request: GenerateRequest, sample_rate: int) -> dict[str, torch.Tensor]:
    """A request's audio inputs, decoded, by field name."""
    return {name: decode_audio_input(data, name, sample_rate)
            for name in AUDIO_INPUT_FIELDS if (data := request.audio_input(name)) is not None}
