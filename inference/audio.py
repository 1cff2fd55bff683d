"""Songs to file bytes: mp3, wav (16-bit), wav32 (32-bit float), flac, ogg (Vorbis), opus.

The model's rate (48 kHz) and channels are kept; samples are clipped to [-1, 1] before the conversion
to integer PCM or a lossy codec, so a peak at full scale never wraps around. MP3 is constant bitrate at the
requested kbps, by LAME through ``lameenc`` at LAME's recommended high quality (``-q 2``): measured side by
side (``bench/encoders.py``) it costs about 40 % of the CPU time libsndfile's LAME does at the same bitrate,
within 2 dB of its band-limited signal-to-error ratio; the gapless header it does not write is added
(``inference.mp3.gapless``), so the file decodes to exactly the song; a long song is encoded in parts on several
cores at once and joined where no listener can hear it (``inference.mp3.split``). ``ACESTEP_MP3_ENCODER=libsndfile`` uses
libsndfile instead (it maps a compression level in [0, 1] linearly onto 320..32 kbps). Everything else is
libsndfile's (through soundfile), which no candidate beat for those formats. Opus only runs at
8/12/16/24/48 kHz, which 48 kHz is.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import soundfile as sf

from inference.contract import CONTENT_TYPES
from inference.hardware import usable_cores
from inference.mp3 import MP3_MAX_KBPS, MP3_MIN_KBPS, lame_mp3, parts_for

# format -> (libsndfile container, subtype, file extension)
_CODECS = {
    "mp3": ("MP3", "MPEG_LAYER_III", "mp3"),
    "wav": ("WAV", "PCM_16", "wav"),
    "wav32": ("WAV", "FLOAT", "wav"),
    "flac": ("FLAC", "PCM_16", "flac"),
    "ogg": ("OGG", "VORBIS", "ogg"),
    "opus": ("OGG", "OPUS", "opus"),
}
# libsndfile compression levels (0 best, 1 smallest), measured on full-band stereo at 48 kHz:
# vorbis 0.5 is about 170 kbps, opus 0.75 about 140 kbps; both transparent for music.
_LOSSY_LEVELS = {"ogg": 0.5, "opus": 0.75}


# expected bits per second of the formats without a fixed rate, for sizing a job's output before it is made:
# vorbis and opus at the levels above on full-band music; FLAC at about 60 % of 16-bit PCM
_EXPECTED_KBPS = {"ogg": 190, "opus": 160}
FLAC_RATIO = 0.6
WAV_HEADER_BYTES = 44


def expected_bytes(audio_format: str, mp3_bitrate: int, duration_s: float, songs: int, sample_rate: int,
                   channels: int = 2) -> int:
    """About how many bytes ``songs`` encoded songs of ``duration_s`` will take: exact for wav, within a few
    percent for mp3 (constant bitrate), typical for the variable-rate formats."""
    pcm = sample_rate * channels * 2 * duration_s
    if audio_format == "wav":
        one = pcm + WAV_HEADER_BYTES
    elif audio_format == "wav32":
        one = 2 * pcm + WAV_HEADER_BYTES
    elif audio_format == "flac":
        one = pcm * FLAC_RATIO
    elif audio_format == "mp3":
        one = min(max(mp3_bitrate, MP3_MIN_KBPS), MP3_MAX_KBPS) * 1000 / 8 * duration_s
    else:
        one = _EXPECTED_KBPS[audio_format] * 1000 / 8 * duration_s
    return int(one * songs)


@dataclass(frozen=True)
class EncodedAudio:
    data: bytes
    format: str
    extension: str
    content_type: str
    sample_rate: int
    channels: int
    duration_s: float


def mp3_compression_level(kbps: int) -> float:
    """The libsndfile compression level whose constant bitrate is ``kbps`` (libsndfile truncates, so aim
    half a kbps high)."""
    kbps = min(max(int(kbps), MP3_MIN_KBPS), MP3_MAX_KBPS)
    level = (MP3_MAX_KBPS - kbps - 0.5) / (MP3_MAX_KBPS - MP3_MIN_KBPS)
    return min(max(level, 0.0), 1.0)


def peak_safe(samples: np.ndarray) -> np.ndarray:
    """[channels, frames] float -> [frames, channels] float32 in [-1, 1], non-finite samples silenced."""
    audio = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.ascontiguousarray(np.clip(audio, -1.0, 1.0).T)


def encode(samples: np.ndarray, sample_rate: int, audio_format: str = "mp3", mp3_bitrate: int = 192,
           mp3_encoder: str = "lameenc") -> EncodedAudio:
    if audio_format not in _CODECS:
        raise ValueError(f"audio_format must be one of {', '.join(_CODECS)} (got {audio_format!r})")
    container, subtype, extension = _CODECS[audio_format]
    if audio_format == "mp3" and mp3_encoder == "lameenc":
        song = _channels_first(samples)
        return _described(lame_mp3([song], sample_rate, mp3_bitrate, peak_safe)[0], audio_format, sample_rate, song)
    frames = peak_safe(samples)
    options: dict = {}
    if audio_format == "mp3":
        options = {"compression_level": mp3_compression_level(mp3_bitrate), "bitrate_mode": "CONSTANT"}
    elif audio_format in _LOSSY_LEVELS:
        options = {"compression_level": _LOSSY_LEVELS[audio_format]}
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, mode="w", samplerate=sample_rate, channels=frames.shape[1], format=container,
                      subtype=subtype, **options) as handle:
        handle.write(frames)
    return _encoded(buffer.getvalue(), audio_format, sample_rate, frames)


def _encoded(data: bytes, audio_format: str, sample_rate: int, frames: np.ndarray) -> EncodedAudio:
    return _described(data, audio_format, sample_rate, frames.T)


def _described(data: bytes, audio_format: str, sample_rate: int, song: np.ndarray) -> EncodedAudio:
    """The file's description; ``song`` is [channels, samples]."""
    return EncodedAudio(data=data, format=audio_format, extension=_CODECS[audio_format][2],
                        content_type=CONTENT_TYPES[audio_format], sample_rate=sample_rate,
                        channels=song.shape[0], duration_s=song.shape[-1] / sample_rate)


def _channels_first(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    return samples.reshape(-1, samples.shape[-1])


def encode_all(songs: list[np.ndarray], sample_rate: int, audio_format: str = "mp3",
               mp3_bitrate: int = 192, mp3_encoder: str = "lameenc", threads: int | None = None) -> list[EncodedAudio]:
    """Encode several songs at once on ``threads`` threads (unset: the cores this process may use; libsndfile
    and LAME run without Python's lock). MP3 by LAME also cuts each song into parts, so a batch smaller than
    the core count still keeps every core busy (``inference.mp3.split``); other formats take a thread per song."""
    if not songs:
        return []
    workers = max(1, threads or usable_cores())
    one = partial(encode, sample_rate=sample_rate, audio_format=audio_format, mp3_bitrate=mp3_bitrate,
                  mp3_encoder=mp3_encoder)
    if workers == 1 or (len(songs) <= 1 and not (audio_format == "mp3" and mp3_encoder == "lameenc")):
        return [one(song) for song in songs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="encode") as pool:
        if audio_format == "mp3" and mp3_encoder == "lameenc":
            songs = [_channels_first(song) for song in songs]
            parts = parts_for(len(songs), workers, min(s.shape[-1] for s in songs) / sample_rate)
            encoded = lame_mp3(songs, sample_rate, mp3_bitrate, peak_safe, pool, parts)  # clipped in each part
            return [_described(data, audio_format, sample_rate, song) for data, song in zip(encoded, songs, strict=True)]
        return list(pool.map(one, songs))
