"""Audio inputs by URL (``src_audio_url``, ``reference_audio_url``), fetched when a job is admitted.

``http(s)://``: every hop must pass the address policy (public addresses only, unless the operator allows
private ones: ``inference.endpoints``); redirects are followed by hand, each new address checked before it is
connected to, at most ``MAX_REDIRECTS``. ``s3://bucket/key``: read with the job's own bucket credentials
(``s3Config``, else the ``BUCKET_*`` bucket). Either way the file may be at most ``MAX_AUDIO_INPUT_BYTES`` (the
declared length is checked first, then the bytes as they come) and must arrive within ``FETCH_TIMEOUT_S``; its
header is then checked like any uploaded file's. Runs on the admission thread, never the GPU thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from inference.contract import check_audio_header
from inference.contract.vocabulary import AUDIO_URL_FIELDS, MAX_AUDIO_INPUT_BYTES
from inference.endpoints import check_public_url
from inference.errors import InputError
from inference.settings import Settings

MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 30.0
CHUNK = 1 << 16
Policy = Callable[[str, str], None]  # (url, field): raises InputError when the address is not allowed


def fetch_audio_inputs(request, settings: Settings, s3_config: Any = None, policy: Policy | None = None) -> None:
    """Fetch the request's audio inputs given by URL into it (as if they had come as files)."""
    policy = policy or (lambda url, field: check_public_url(url, field, settings.allow_private_endpoints))
    for url_field, file_field in AUDIO_URL_FIELDS.items():
        url = getattr(request, url_field)
        if url is None:
            continue
        data = _from_bucket(url, url_field, settings, s3_config) if url.startswith("s3://") else \
            fetch_http(url, url_field, policy)
        check_audio_header(data, url_field)
        request.set_audio_input(file_field, data)


def fetch_http(url: str, field: str, policy: Policy, timeout_s: float = FETCH_TIMEOUT_S) -> bytes:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(10.0, read=timeout_s)) as client:
        for _ in range(MAX_REDIRECTS + 1):
            policy(url, field)
            try:
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        if urlsplit(url).scheme not in ("http", "https"):
                            raise InputError(f"{field}: the audio's server redirected to a non-http(s) address")
                        continue
                    if response.status_code != 200:
                        raise InputError(f"{field}: the audio's server answered HTTP {response.status_code}")
                    return _read_capped(response, field, deadline)
            except httpx.HTTPError as err:
                raise InputError(f"{field}: the audio could not be fetched ({type(err).__name__})") from None
    raise InputError(f"{field}: more than {MAX_REDIRECTS} redirects")


def _read_capped(response: httpx.Response, field: str, deadline: float) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_AUDIO_INPUT_BYTES:
        raise InputError(f"{field} must be at most {MAX_AUDIO_INPUT_BYTES // (1024 * 1024)} MiB of audio (the server "
                         f"says {int(declared)} bytes)")
    chunks, size = [], 0
    for chunk in response.iter_bytes(CHUNK):
        size += len(chunk)
        if size > MAX_AUDIO_INPUT_BYTES:
            raise InputError(f"{field} must be at most {MAX_AUDIO_INPUT_BYTES // (1024 * 1024)} MiB of audio")
        if time.monotonic() > deadline:
            raise InputError(f"{field}: the audio did not arrive within {FETCH_TIMEOUT_S:g} s")
        chunks.append(chunk)
    if not size:
        raise InputError(f"{field}: the audio's server sent an empty file")
    return b"".join(chunks)


def _from_bucket(url: str, field: str, settings: Settings, s3_config: Any) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    from inference.delivery.buckets import bucket_from_job, bucket_from_settings, make_client

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise InputError(f"{field} must be s3://<bucket>/<key>")
    if s3_config:
        config = bucket_from_job(s3_config, settings)
    elif settings.env_bucket_configured:
        config = bucket_from_settings(settings)
    else:
        raise InputError(f"{field}: an s3:// address needs the job's s3Config (or this worker's BUCKET_*) "
                         f"credentials")
    client = make_client(config)
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head.get("ContentLength", 0) > MAX_AUDIO_INPUT_BYTES:
            raise InputError(f"{field} must be at most {MAX_AUDIO_INPUT_BYTES // (1024 * 1024)} MiB of audio")
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(MAX_AUDIO_INPUT_BYTES + 1)
    except (BotoCoreError, ClientError) as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code", type(err).__name__)
        raise InputError(f"{field}: the audio could not be read from the bucket ({code})") from None
    finally:
        client.close()
    if len(data) > MAX_AUDIO_INPUT_BYTES:
        raise InputError(f"{field} must be at most {MAX_AUDIO_INPUT_BYTES // (1024 * 1024)} MiB of audio")
    return data
