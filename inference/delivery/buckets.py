"""Delivering to an S3-compatible bucket: the job's ``s3Config`` (RunPod's per-request bucket) or ``BUCKET_*``.

The bucket is chosen and checked when a job is admitted (a bad ``s3Config``, its endpoint or its region, fails
before any GPU time). Delivery uses one boto3 client per bucket configuration, made once from one shared
session and reused by every later job (``ClientCache``); retries are botocore's standard mode
(``ACESTEP_UPLOAD_ATTEMPTS`` tries, backoff with jitter, only for throttling, 5xx and dropped connections: wrong
credentials or a missing bucket fail at once). The songs of a batch go up at once, and an object of
``MULTIPART_BYTES`` or more (a long WAV) in parts, several at once. Anything that goes wrong while delivering,
making the client included, keeps the audio not uploaded (``inference.undelivered``), and the
``StorageError`` lists the ones that were.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
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
MULTIPART_BYTES = 16 * 1024 * 1024  # objects from this size go up in parts, several at once
UPLOAD_CONCURRENCY = 4  # songs of a batch uploaded at once; parts of one large object share these
POOL_CONNECTIONS = 16  # per client: the worker's delivery threads (4) x songs at once (4)


def make_client(config: BucketConfig, attempts: int = 2):
    """A boto3 S3 client from the shared session (boto3 sessions are not thread-safe: made under a lock);
    botocore's standard retry mode gives it ``attempts`` tries per call in all, only on throttling, 5xx answers
    and dropped connections, after a jittered exponential wait (from 1 s for throttling, from 50 ms
    otherwise)."""
    import boto3
    from botocore.config import Config

    with _SESSION_LOCK:
        if not _SESSION:
            _SESSION.append(boto3.session.Session())
        return _SESSION[0].client(
            "s3", endpoint_url=config.endpoint_url, aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key, region_name=config.region or "us-east-1",
            config=Config(signature_version="s3v4", retries={"total_max_attempts": attempts, "mode": "standard"},
                          connect_timeout=5, read_timeout=60, max_pool_connections=POOL_CONNECTIONS,
                          s3={"addressing_style": "path" if config.endpoint_url else "auto"}))


class ClientCache:
    """One client per bucket configuration (the environment's and every job's ``s3Config`` alike), reused by every
    delivery: boto3 clients are thread-safe, and a new one costs milliseconds and a fresh connection pool.
    The least recently used beyond ``size`` are dropped (not closed: a delivery may still hold one)."""

    def __init__(self, size: int = 32):
        self.size = size
        self._lock = threading.Lock()
        self._clients: OrderedDict[tuple[BucketConfig, int], Any] = OrderedDict()

    def get(self, config: BucketConfig, attempts: int):
        key = (config, attempts)
        with self._lock:
            if key in self._clients:
                self._clients.move_to_end(key)
                return self._clients[key]
        client = make_client(config, attempts)
        with self._lock:
            self._clients[key] = client
            while len(self._clients) > self.size:
                self._clients.popitem(last=False)
        return client


CLIENTS = ClientCache()


class S3Target:
    kind = "s3"

    def __init__(self, config: BucketConfig, attempts: int, keep_dir: Path, keep_ttl_s: int):
        self.config = config
        self.attempts = attempts
        self.keep_dir = keep_dir
        self.keep_ttl_s = keep_ttl_s

    def check_fits(self, expected_bytes: int) -> None:
        """A bucket takes any size."""

    def _put(self, client, audio: EncodedAudio, key: str, parts_at_once: int) -> None:
        """One object: a single PUT, or from ``MULTIPART_BYTES`` a multipart upload of several parts at once."""
        if len(audio.data) < MULTIPART_BYTES:
            client.put_object(Bucket=self.config.bucket, Key=key, Body=audio.data, ContentType=audio.content_type)
            return
        from boto3.s3.transfer import TransferConfig

        transfer = TransferConfig(multipart_threshold=MULTIPART_BYTES, multipart_chunksize=8 * 1024 * 1024,
                                  max_concurrency=parts_at_once)
        client.upload_fileobj(io.BytesIO(audio.data), self.config.bucket, key,
                              ExtraArgs={"ContentType": audio.content_type}, Config=transfer)

    def deliver(self, audios: list[EncodedAudio], job_id: str) -> list[Delivered]:
        """The songs of a batch uploaded at once; those that failed are kept (``undelivered``) and the error lists
        the ones that were uploaded."""
        keys = [object_key(self.config.prefix, job_id, audio.extension) for audio in audios]
        try:
            client = CLIENTS.get(self.config, self.attempts)
            urls = [client.generate_presigned_url("get_object", Params={"Bucket": self.config.bucket, "Key": key},
                                                  ExpiresIn=self.config.url_expiry_s) for key in keys]  # local
            at_once = max(1, min(len(audios), UPLOAD_CONCURRENCY))
            with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="upload") as pool:
                futures = [pool.submit(self._put, client, audio, key, max(1, UPLOAD_CONCURRENCY // at_once))
                           for audio, key in zip(audios, keys)]
                failures = [future.exception() for future in futures]
        except Exception as err:  # noqa: BLE001 - whatever failed before any upload, every audio is kept
            failures, urls = [err] * len(audios), []
        delivered = {i: Delivered(url=urls[i], key=keys[i]) for i, failure in enumerate(failures) if failure is None}
        if len(delivered) == len(audios):
            return [delivered[i] for i in range(len(audios))]
        first = next(f for f in failures if f is not None)
        reason = self._reason(first)
        kept = undelivered.keep([a for i, a in enumerate(audios) if i not in delivered], job_id, self.keep_dir,
                                self.keep_ttl_s)
        uploaded = [delivered[i] for i in sorted(delivered)]
        note = f"; {len(uploaded)} of {len(audios)} were uploaded (listed in 'uploaded')" if uploaded else ""
        raise StorageError(f"{reason}{note}; {kept.describe(job_id)}", uploaded=uploaded)

    def _reason(self, err: BaseException) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        from botocore.exceptions import ConnectionError as NoConnection
        from botocore.exceptions import HTTPClientError

        if isinstance(err, ClientError):
            tries = int(err.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
            return f"upload to bucket '{self.config.bucket}' failed after {tries} attempt(s): {s3_reason(err)}"
        if isinstance(err, (NoConnection, HTTPClientError)):  # no answer (refused, dropped): tried to the last
            return (f"upload to bucket '{self.config.bucket}' failed after {self.attempts} attempt(s): "
                    f"{type(err).__name__}")
        if isinstance(err, BotoCoreError):
            return f"upload to bucket '{self.config.bucket}' failed: {type(err).__name__}"
        return f"delivery to bucket '{self.config.bucket}' failed: {type(err).__name__}"


def s3_reason(err: Exception) -> str:
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "error")
        return f"{code} (HTTP {response.get('ResponseMetadata', {}).get('HTTPStatusCode', '?')})"
    return type(err).__name__


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
