"""Delivering encoded audio: an S3-compatible bucket, a local folder, or inline base64.

Where audio goes, in order (API.md section 4): the job's ``s3Config`` (RunPod's per-request bucket), the
``BUCKET_*`` environment bucket, ``ACESTEP_OUTPUT_DIR`` (pod mode and local runs), else inline base64 while
the whole output fits RunPod's payload limit. Uploads retry with exponential backoff; when a delivery
still fails, every file is kept under ``ACESTEP_UNDELIVERED_DIR`` (the path goes to the log, never to
the caller) and a ``StorageError`` says what happened, so nothing that was made is lost.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.audio import EncodedAudio
from inference.endpoints import check_public_url
from inference.errors import InputError, StorageError
from inference.settings import Settings

log = logging.getLogger("acestep.storage")
_SAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Delivered:
    """Where one audio ended up: exactly one of url, path, base64."""

    url: str | None = None
    key: str | None = None
    path: str | None = None
    base64: str | None = None


class Target(Protocol):
    kind: str

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]: ...


class RunPodS3Config(BaseModel):
    """RunPod's per-request bucket (``s3Config`` next to ``input``), as RunPod's own uploader reads it."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    endpoint_url: str = Field(alias="endpointUrl", min_length=1)
    access_id: str = Field(alias="accessId", min_length=1)
    access_secret: str = Field(alias="accessSecret", min_length=1)
    bucket_name: str = Field(alias="bucketName", min_length=1)
    region: str | None = Field(None, alias="region")
    prefix: str | None = Field(None, alias="prefix")


@dataclass(frozen=True)
class BucketConfig:
    endpoint_url: str | None
    access_key_id: str
    secret_access_key: str
    bucket: str
    region: str | None
    prefix: str
    url_expiry_s: int

    def __repr__(self) -> str:  # never print the secret
        return f"BucketConfig(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"


def object_key(prefix: str, job_id: str, extension: str) -> str:
    parts = [p for p in (prefix.strip("/"), _SAFE_KEY_PART.sub("-", job_id).strip("-.")) if p]
    return "/".join(parts + [f"{uuid.uuid4().hex}.{extension}"])


class S3Target:
    kind = "s3"

    def __init__(self, config: BucketConfig, attempts: int, backoff_s: float, keep_dir: Path):
        import boto3
        from botocore.config import Config

        self.config = config
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.keep_dir = keep_dir
        self.client = boto3.client(
            "s3", endpoint_url=config.endpoint_url, aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key, region_name=config.region or "us-east-1",
            config=Config(signature_version="s3v4", retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=5, read_timeout=60,
                          s3={"addressing_style": "path" if config.endpoint_url else "auto"}))

    def _put(self, audio: EncodedAudio, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, self.attempts + 1):
            try:
                self.client.put_object(Bucket=self.config.bucket, Key=key, Body=audio.data,
                                       ContentType=audio.content_type)
                return
            except (BotoCoreError, ClientError) as err:
                reason = _s3_reason(err)
                if attempt == self.attempts or _is_permanent(err):
                    raise StorageError(f"upload to bucket '{self.config.bucket}' failed after {attempt} "
                                       f"attempt(s): {reason}") from None
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("upload attempt %d/%d failed (%s); retrying in %.1f s", attempt, self.attempts,
                            reason, delay)
                time.sleep(delay)

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]:
        delivered = []
        for index, audio in enumerate(audios):
            key = object_key(self.config.prefix, job_id, audio.extension)
            try:
                self._put(audio, key)
            except StorageError as err:
                kept = keep_undelivered(audios[index:], job_id, self.keep_dir)
                raise StorageError(f"{err}; {kept} audio file(s) were kept on the worker for job {job_id}"
                                   + (f" ({index} uploaded before the failure)" if index else "")) from None
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.config.bucket, "Key": key}, ExpiresIn=self.config.url_expiry_s)
            delivered.append(Delivered(url=url, key=key))
        return delivered


class LocalTarget:
    kind = "local"

    def __init__(self, folder: Path):
        self.folder = folder

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]:
        return [Delivered(path=str(write_atomically(self.folder, audio))) for audio in audios]


class InlineTarget:
    kind = "inline"

    def __init__(self, max_bytes: int, keep_dir: Path):
        self.max_bytes = max_bytes
        self.keep_dir = keep_dir

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]:
        total = sum(len(a.data) for a in audios)
        if total > self.max_bytes:
            kept = keep_undelivered(audios, job_id, self.keep_dir)
            raise StorageError(
                f"the audio is {total / 1e6:.1f} MB, more than can be returned inline ({self.max_bytes / 1e6:.1f} MB "
                f"before base64); configure a bucket (BUCKET_* or the request's s3Config), or ask for shorter songs, a "
                f"smaller batch_size or mp3; {kept} audio file(s) were kept on the worker for job {job_id}")
        return [Delivered(base64=base64.b64encode(a.data).decode("ascii")) for a in audios]


def write_atomically(folder: Path, audio: EncodedAudio) -> Path:
    return write_bytes_atomically(folder, audio.data, audio.extension)


def write_bytes_atomically(folder: Path, data: bytes, extension: str) -> Path:
    """``data`` as ``folder/<fresh uuid>.<extension>``, written beside it first so no reader sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.{extension}"
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)
    return path.resolve()


def keep_undelivered(audios: list[EncodedAudio], job_id: str, keep_dir: Path) -> int:
    """Write audios that could not be delivered to ``keep_dir/<job_id>/``; log where (never return it)."""
    folder = keep_dir / (_SAFE_KEY_PART.sub("-", job_id).strip("-.") or "job")
    paths = [write_atomically(folder, audio) for audio in audios]
    for path in paths:
        log.error("job %s: undelivered audio kept at %s", job_id, path)
    return len(paths)


def _s3_reason(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "error")
        return f"{code} (HTTP {response.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')})"
    return type(err).__name__


def _is_permanent(err: Exception) -> bool:
    """Wrong credentials or a missing bucket will not fix themselves: do not wait for retries."""
    response = getattr(err, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"}


def _bucket_from_job(s3_config: Any, settings: Settings) -> BucketConfig:
    if not isinstance(s3_config, dict):
        raise InputError(f"s3Config must be an object with endpointUrl, accessId, accessSecret and bucketName "
                         f"(got {type(s3_config).__name__})")
    try:
        parsed = RunPodS3Config.model_validate(s3_config)
    except ValidationError as err:
        missing = sorted({str(e["loc"][0]) for e in err.errors()})
        raise InputError(f"s3Config needs non-empty endpointUrl, accessId, accessSecret and bucketName "
                         f"(missing or invalid: {', '.join(missing)})") from None
    check_public_url(parsed.endpoint_url, "s3Config.endpointUrl", settings.allow_private_endpoints)
    return BucketConfig(endpoint_url=parsed.endpoint_url, access_key_id=parsed.access_id,
                        secret_access_key=parsed.access_secret, bucket=parsed.bucket_name, region=parsed.region,
                        prefix=parsed.prefix if parsed.prefix is not None else settings.bucket_prefix,
                        url_expiry_s=settings.bucket_url_expiry_s)


def _bucket_from_settings(settings: Settings) -> BucketConfig:
    return BucketConfig(endpoint_url=settings.bucket_endpoint_url, access_key_id=settings.bucket_access_key_id or "",
                        secret_access_key=settings.bucket_secret_access_key.get_secret_value()
                        if settings.bucket_secret_access_key else "",
                        bucket=settings.bucket_name or "", region=settings.bucket_region,
                        prefix=settings.bucket_prefix, url_expiry_s=settings.bucket_url_expiry_s)


def choose_target(settings: Settings, s3_config: Any = None) -> Target:
    """The job's bucket, else the environment's bucket, else the output folder, else inline."""
    if s3_config:
        bucket = _bucket_from_job(s3_config, settings)
    elif settings.env_bucket_configured:
        bucket = _bucket_from_settings(settings)
    else:
        bucket = None
    if bucket is not None:
        return S3Target(bucket, settings.upload_attempts, settings.upload_backoff_s, settings.undelivered_dir)
    if settings.output_dir is not None:
        return LocalTarget(settings.output_dir)
    return InlineTarget(settings.inline_max_bytes, settings.undelivered_dir)


def secrets_of(settings: Settings, s3_config: Any = None) -> tuple[str, ...]:
    """Secret values that must never appear in a message or a log line."""
    found = [settings.bucket_secret_access_key.get_secret_value() if settings.bucket_secret_access_key else "",
             settings.api_key.get_secret_value() if settings.api_key else "",
             settings.runpod_api_key.get_secret_value() if settings.runpod_api_key else ""]
    if isinstance(s3_config, dict):
        found += [str(s3_config.get("accessSecret", "")), str(s3_config.get("accessId", ""))]
    return tuple(s for s in found if s)
