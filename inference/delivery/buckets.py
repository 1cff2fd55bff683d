"""Delivering to an S3-compatible bucket: the job's ``s3Config`` (RunPod's per-request bucket) or ``BUCKET_*``.

The bucket is chosen and checked when a job is admitted (a bad ``s3Config``, its endpoint or its region, fails
before any GPU time); the boto3 client is made when the audio is delivered, on a delivery thread, from one
shared session. The environment's bucket keeps one client for the whole process; a job's own bucket gets a
client for that delivery, closed after it. Anything that goes wrong while delivering, making the client
included, keeps the audio not yet uploaded. Uploads
retry with exponential backoff, except for errors that will not fix themselves (wrong credentials, no such
bucket). When an upload still fails, the files not yet uploaded are kept (``inference.undelivered``) and the
``StorageError`` lists the ones that were.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inference.delivery import undelivered
from inference.audio import EncodedAudio
from inference.delivery.delivered import Delivered, object_key
from inference.endpoints import check_public_url
from inference.errors import InputError, StorageError
from inference.settings import Settings

log = logging.getLogger("acestep.storage")
_PERMANENT = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket"}


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


_SESSION_LOCK = threading.Lock()
_SESSION: list = []  # one boto3 session: it loads the S3 service model once


def make_client(config: BucketConfig):
    """A boto3 S3 client from the shared session (boto3 sessions are not thread-safe: made under a lock)."""
    import boto3
    from botocore.config import Config

    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        return _SESSION[0].client(
            "s3", endpoint_url=config.endpoint_url, aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key, region_name=config.region or "us-east-1",
            config=Config(signature_version="s3v4", retries={"max_attempts": 1, "mode": "standard"},
                          connect_timeout=5, read_timeout=60,
                          s3={"addressing_style": "path" if config.endpoint_url else "auto"}))


class _SharedClient:
    """The environment bucket's one client, made on first use."""

    def __init__(self):
        self._lock = threading.Lock()
        self._clients: dict[BucketConfig, Any] = {}

    def get(self, config: BucketConfig):
        with self._lock:
            if config not in self._clients:
                self._clients[config] = make_client(config)
            return self._clients[config]


ENV_CLIENTS = _SharedClient()


class S3Target:
    kind = "s3"

    def __init__(self, config: BucketConfig, attempts: int, backoff_s: float, keep_dir: Path, keep_ttl_s: int,
                 shared: bool = False):
        self.config = config
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.keep_dir = keep_dir
        self.keep_ttl_s = keep_ttl_s
        self.shared = shared  # the environment's bucket: one client for the process

    def check_fits(self, expected_bytes: int) -> None:
        """A bucket takes any size."""

    def _put(self, client, audio: EncodedAudio, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(1, self.attempts + 1):
            try:
                client.put_object(Bucket=self.config.bucket, Key=key, Body=audio.data, ContentType=audio.content_type)
                return
            except (BotoCoreError, ClientError) as err:
                reason = s3_reason(err)
                if attempt == self.attempts or _is_permanent(err):
                    raise StorageError(f"upload to bucket '{self.config.bucket}' failed after {attempt} "
                                       f"attempt(s): {reason}") from None
                delay = self.backoff_s * 2 ** (attempt - 1)
                log.warning("upload attempt %d/%d failed (%s); retrying in %.1f s", attempt, self.attempts,
                            reason, delay)
                time.sleep(delay)

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]:
        delivered: list[Delivered] = []
        client = None
        try:
            client = ENV_CLIENTS.get(self.config) if self.shared else make_client(self.config)
            for audio in audios:
                key = object_key(self.config.prefix, job_id, audio.extension)
                self._put(client, audio, key)
                url = client.generate_presigned_url("get_object", Params={"Bucket": self.config.bucket, "Key": key},
                                                    ExpiresIn=self.config.url_expiry_s)
                delivered.append(Delivered(url=url, key=key))
            return delivered
        except Exception as err:  # noqa: BLE001 - whatever failed, the audio not yet delivered is kept
            reason = str(err) if isinstance(err, StorageError) else \
                f"delivery to bucket '{self.config.bucket}' failed: {type(err).__name__}"
            done = len(delivered)
            kept = undelivered.keep(audios[done:], job_id, self.keep_dir, self.keep_ttl_s)
            uploaded = f"; {done} of {len(audios)} were uploaded before the failure (listed in 'uploaded')" \
                if done else ""
            raise StorageError(f"{reason}{uploaded}; {kept.describe(job_id)}", uploaded=delivered) from None
        finally:
            if client is not None and not self.shared:
                client.close()


def s3_reason(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "error")
        return f"{code} (HTTP {response.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')})"
    return type(err).__name__


def _is_permanent(err: Exception) -> bool:
    """Wrong credentials or a missing bucket will not fix themselves: do not wait for retries."""
    response = getattr(err, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in _PERMANENT


def bucket_from_job(s3_config: Any, settings: Settings) -> BucketConfig:
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
    check_client_settings(parsed.endpoint_url, parsed.region, "s3Config")
    return BucketConfig(endpoint_url=parsed.endpoint_url, access_key_id=parsed.access_id,
                        secret_access_key=parsed.access_secret, bucket=parsed.bucket_name, region=parsed.region,
                        prefix=parsed.prefix if parsed.prefix is not None else settings.bucket_prefix,
                        url_expiry_s=settings.bucket_url_expiry_s)


def check_client_settings(endpoint_url: str | None, region: str | None, where: str) -> None:
    """What boto3 would refuse when making the client, refused at admission instead (after the render it would
    cost the GPU time)."""
    from botocore.utils import is_valid_endpoint_url, is_valid_ipv6_endpoint_url, validate_region_name

    if endpoint_url and not (is_valid_endpoint_url(endpoint_url) or is_valid_ipv6_endpoint_url(endpoint_url)):
        raise InputError(f"{where} endpoint URL is not a valid URL (got {endpoint_url[:80]!r})")
    if region:
        try:
            validate_region_name(region)
        except Exception:  # noqa: BLE001 - botocore's InvalidRegionError
            raise InputError(f"{where} region must be letters, digits and hyphens, e.g. 'us-east-1' "
                             f"(got {region[:40]!r})") from None


def bucket_from_settings(settings: Settings) -> BucketConfig:
    check_client_settings(settings.bucket_endpoint_url, settings.bucket_region, "BUCKET_ENDPOINT_URL/BUCKET_REGION:")
    return BucketConfig(endpoint_url=settings.bucket_endpoint_url, access_key_id=settings.bucket_access_key_id or "",
                        secret_access_key=settings.bucket_secret_access_key.get_secret_value()
                        if settings.bucket_secret_access_key else "",
                        bucket=settings.bucket_name or "", region=settings.bucket_region,
                        prefix=settings.bucket_prefix, url_expiry_s=settings.bucket_url_expiry_s)
