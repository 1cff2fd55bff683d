"""Where a job's audio goes, chosen when the job is admitted, and the local and inline targets.

In order (the README's "Where the audio goes"): the job's ``s3Config`` (RunPod's per-request bucket), the
``BUCKET_*`` environment bucket, ``ACESTEP_OUTPUT_DIR`` (pod mode and local runs), else inline base64 while
the whole output fits RunPod's payload limit. A target is asked at admission whether the output it is
expected to get fits (``check_fits``): inline delivery refuses then, before any GPU time, the songs it could
not return. When a delivery still fails, the files are kept (``inference.delivery.undelivered``) and a
``StorageError`` says what happened, so nothing that was made is lost without a word.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Protocol

from inference.audio import EncodedAudio
from inference.delivery import undelivered
from inference.delivery.buckets import S3Target, bucket_from_job, bucket_from_settings
from inference.delivery.delivered import Delivered
from inference.delivery.files import write_bytes_atomically
from inference.errors import StorageError, UnsupportedError
from inference.settings import Settings

_INLINE_ADVICE = "configure a bucket (BUCKET_* or the request's s3Config), or ask for shorter songs, a smaller " \
                 "batch_size or mp3"


class Target(Protocol):
    kind: str

    def check_fits(self, expected_bytes: int) -> None: ...

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]: ...


class LocalTarget:
    kind = "local"

    def __init__(self, folder: Path):
        self.folder = folder

    def check_fits(self, expected_bytes: int) -> None:
        """A folder takes any size (a full disk is found when writing)."""

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]:
        delivered: list[Delivered] = []
        try:
            for audio in audios:
                delivered.append(Delivered(path=str(write_atomically(self.folder, audio))))
        except OSError as err:
            raise StorageError(f"writing the audio to the output folder failed ({err.strerror or type(err).__name__})"
                               f"; {len(delivered)} of {len(audios)} were written") from None
        return delivered


class InlineTarget:
    kind = "inline"

    def __init__(self, max_bytes: int, keep_dir: Path, keep_ttl_s: int = 86400):
        self.max_bytes = max_bytes
        self.keep_dir = keep_dir
        self.keep_ttl_s = keep_ttl_s

    def check_fits(self, expected_bytes: int) -> None:
        if expected_bytes > self.max_bytes:
            raise UnsupportedError(
                f"batch_size × audio_duration: the songs would be about {expected_bytes / 1e6:.1f} MB, more than "
                f"can be returned inline ({self.max_bytes / 1e6:.1f} MB before base64, ACESTEP_INLINE_MAX_BYTES); "
                f"{_INLINE_ADVICE}")

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]:
        total = sum(len(a.data) for a in audios)
        if total > self.max_bytes:
            kept = undelivered.keep(audios, job_id, self.keep_dir, self.keep_ttl_s)
            raise StorageError(
                f"the audio is {total / 1e6:.1f} MB, more than can be returned inline ({self.max_bytes / 1e6:.1f} MB "
                f"before base64); {_INLINE_ADVICE}; {kept.describe(job_id)}")
        return [Delivered(base64=base64.b64encode(a.data).decode("ascii")) for a in audios]


def write_atomically(folder: Path, audio: EncodedAudio) -> Path:
    return write_bytes_atomically(folder, audio.data, audio.extension)


def choose_target(settings: Settings, s3_config: Any = None) -> Target:
    """The job's bucket, else the environment's bucket, else the output folder, else inline."""
    keep_dir, keep_ttl = settings.undelivered_folder, settings.undelivered_ttl_s
    if s3_config:
        return S3Target(bucket_from_job(s3_config, settings), settings.upload_attempts, keep_dir, keep_ttl)
    if settings.env_bucket_configured:
        return S3Target(bucket_from_settings(settings), settings.upload_attempts, keep_dir, keep_ttl)
    if settings.output_dir is not None:
        return LocalTarget(settings.output_dir)
    return InlineTarget(settings.inline_max_bytes, keep_dir, keep_ttl)


def secrets_of(settings: Settings, s3_config: Any = None) -> tuple[str, ...]:
    """Secret values that must never appear in a message or a log line."""
    found = [settings.bucket_secret_access_key.get_secret_value() if settings.bucket_secret_access_key else "",
             settings.api_key.get_secret_value() if settings.api_key else "",
             settings.runpod_api_key.get_secret_value() if settings.runpod_api_key else ""]
    if isinstance(s3_config, dict):
        found += [str(s3_config.get("accessSecret", "")), str(s3_config.get("accessId", ""))]
    return tuple(s for s in found if s)
