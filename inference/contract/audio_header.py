"""Audio inputs as a request carries them: base64 decoded, and the file's header checked before any decoding
(a few KB of FLAC can claim hours)."""

from __future__ import annotations

import base64
import binascii
import io

import soundfile as sf

from inference.contract.messages import clip_text
from inference.contract.vocabulary import (
    MAX_AUDIO_INPUT_CHANNELS,
    MAX_AUDIO_INPUT_RATE,
    MAX_DURATION_S,
    MIN_AUDIO_INPUT_RATE,
    UNKNOWN_FRAMES,
)
from inference.errors import InputError


def unreadable_audio(field: str, err: Exception) -> InputError:
    # libsndfile's own words without soundfile's "Error opening <_io.BytesIO object at 0x...>: " before them
    reason = getattr(err, "error_string", None) or str(err) or type(err).__name__
    first_line = clip_text(reason.splitlines()[0] if reason.strip() else type(err).__name__, 200)
    return InputError(f"{field} is not an audio file libsndfile can read (wav, flac, ogg, opus, mp3): {first_line}")


def check_audio_header(data: bytes, field: str) -> None:
    """Length, rate and channels from the file's header, before anything is decoded (a few KB of FLAC can
    claim hours). A header that does not give the length is let through: decoding stops at the limit."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(field, err) from None
    if not MIN_AUDIO_INPUT_RATE <= info.samplerate <= MAX_AUDIO_INPUT_RATE:
        raise InputError(f"{field} must have a sample rate between {MIN_AUDIO_INPUT_RATE} and "
                         f"{MAX_AUDIO_INPUT_RATE} Hz (got {info.samplerate})")
    if not 1 <= info.channels <= MAX_AUDIO_INPUT_CHANNELS:
        raise InputError(f"{field} must have between 1 and {MAX_AUDIO_INPUT_CHANNELS} channels (got {info.channels})")
    if info.frames == 0:
        raise InputError(f"{field} holds no audio samples")
    if info.frames != UNKNOWN_FRAMES and info.frames / info.samplerate > MAX_DURATION_S:
        raise InputError(f"{field} must be at most {MAX_DURATION_S:g} seconds long "
                         f"(got {info.frames / info.samplerate:.0f})")


def decode_base64(value: str) -> bytes:
    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if not raw:
        raise ValueError("is empty")
    return raw
