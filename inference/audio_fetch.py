"""Audio inputs by URL (``src_audio_url``, ``reference_audio_url``), fetched when a job is admitted.

``http(s)://``: every hop's host is resolved once, every address it has must pass the address policy (public
addresses only, unless the operator allows private ones: ``inference.endpoints``), and the connection goes to
the address that was checked (the name is kept for ``Host`` and TLS), so a DNS answer that changes in between
cannot redirect it. Redirects are followed by hand, at most ``MAX_REDIRECTS``, http(s) only. No proxy or
credentials from the environment; no compressed transfer (the cap counts the bytes as sent). ``s3://bucket/key``:
only with the job's own ``s3Config`` credentials (never the operator's ``BUCKET_*``: a caller must not read
other objects through the worker). Either way the file may be at most ``MAX_AUDIO_INPUT_BYTES`` (the declared
length first, then the bytes as they come) and everything, redirects included, must be done within
``FETCH_TIMEOUT_S``; its header is then checked like any uploaded file's. Runs on the admission thread, never
the GPU thread (a slow URL holds admission for at most that long).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from inference.contract import check_audio_header
from inference.contract.vocabulary import AUDIO_URL_FIELDS, MAX_AUDIO_INPUT_BYTES
from inference.endpoints import public_address
from inference.errors import InputError
from inference.settings import Settings

MAX_REDIRECTS = 5
FETCH_TIMEOUT_S = 30.0
CHUNK = 1 << 16
Policy = Callable[[str, str], str]  # (url, field) -> the address to connect to; InputError when not allowed


def fetch_audio_inputs(request, settings: Settings, s3_config: Any = None, policy: Policy | None = None) -> None:
    """Fetch the request's audio inputs given by URL into it (as if they had come as files)."""
    policy = policy or (lambda url, field: public_address(url, field, settings.allow_private_endpoints))
    for url_field, file_field in AUDIO_URL_FIELDS.items():
        url = getattr(request, url_field)
        if url is None:
            continue
        data = from_bucket(url, url_field, settings, s3_config) if url.startswith("s3://") else \
            fetch_http(url, url_field, policy)
        check_audio_header(data, url_field)
        request.set_audio_input(file_field, data)


@dataclass(frozen=True)
class Fetched:
    """What is fetched, for the messages and the cap: the audio (the default), or a LoRA adapter."""

    what: str = "audio"
    max_bytes: int = MAX_AUDIO_INPUT_BYTES


AUDIO = Fetched()


def fetch_http(url: str, field: str, policy: Policy, timeout_s: float = FETCH_TIMEOUT_S,
               kind: Fetched = AUDIO) -> bytes:
    """GET ``url`` under the address policy, at most ``kind.max_bytes`` within ``timeout_s``."""
    what = kind.what
    deadline = time.monotonic() + timeout_s
    with httpx.Client(follow_redirects=False, trust_env=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            address = policy(url, field)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise InputError(f"{field}: the {what} did not arrive within {timeout_s:g} s")
            parts = urlsplit(url)
            pinned = parts._replace(netloc=_netloc(address, parts)).geturl()
            try:
                with client.stream("GET", pinned, timeout=httpx.Timeout(min(10.0, remaining), read=remaining),
                                   headers={"Host": parts.netloc.rsplit("@", 1)[-1], "Accept-Encoding": "identity"},
                                   extensions={"sni_hostname": parts.hostname}) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers.get("location", ""))
                        if urlsplit(url).scheme not in ("http", "https"):
                            raise InputError(f"{field}: the {what}'s server redirected to a non-http(s) address")
                        continue
                    if response.status_code != 200:
                        raise InputError(f"{field}: the {what}'s server answered HTTP {response.status_code}")
                    return _read_capped(response, field, deadline, timeout_s, kind)
            except httpx.TimeoutException:
                raise InputError(f"{field}: the {what} did not arrive within {timeout_s:g} s") from None
            except httpx.HTTPError as err:
                raise InputError(f"{field}: the {what} could not be fetched ({type(err).__name__})") from None
    raise InputError(f"{field}: more than {MAX_REDIRECTS} redirects")


def _netloc(address: str, parts) -> str:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{parts.port}" if parts.port else host


def _read_capped(response: httpx.Response, field: str, deadline: float, timeout_s: float, kind: Fetched) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > kind.max_bytes:
        raise too_large(field, kind, f" (the server says {int(declared)} bytes)")
    chunks, size = [], 0
    for chunk in response.iter_raw():  # as it arrives, so the deadline is checked often
        size += len(chunk)
        if size > kind.max_bytes:
            raise too_large(field, kind)
        if time.monotonic() > deadline:
            raise InputError(f"{field}: the {kind.what} did not arrive within {timeout_s:g} s")
        chunks.append(chunk)
    if not size:
        raise InputError(f"{field}: the {kind.what}'s server sent an empty file")
    return b"".join(chunks)


def from_bucket(url: str, field: str, settings: Settings, s3_config: Any, kind: Fetched = AUDIO,
                timeout_s: float = FETCH_TIMEOUT_S) -> bytes:
    """``s3://bucket/key`` read with the job's own bucket credentials, at most ``kind.max_bytes`` within
    ``timeout_s``."""
    from botocore.exceptions import BotoCoreError, ClientError

    from inference.delivery.buckets import CLIENTS, bucket_from_job

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise InputError(f"{field} must be s3://<bucket>/<key>")
    if not s3_config:
        raise InputError(f"{field}: an s3:// address is read with the job's own bucket credentials: give s3Config")
    config = bucket_from_job(s3_config, settings)
    client = CLIENTS.get(config, settings.upload_attempts)  # the same client delivery keeps for this bucket
    body = None
    try:
        head = client.head_object(Bucket=bucket, Key=key)
        if head.get("ContentLength", 0) > kind.max_bytes:
            raise too_large(field, kind)
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        deadline = time.monotonic() + timeout_s
        chunks, size = [], 0
        for chunk in body.iter_chunks(CHUNK):
            size += len(chunk)
            if size > kind.max_bytes or time.monotonic() > deadline:
                raise too_large(field, kind, f", read within {timeout_s:g} s")
            chunks.append(chunk)
        data = b"".join(chunks)
    except (BotoCoreError, ClientError) as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code", type(err).__name__)
        raise InputError(f"{field}: the {kind.what} could not be read from the bucket ({code})") from None
    finally:
        if body is not None:
            body.close()  # its connection goes back to the client's pool
    if len(data) > kind.max_bytes:
        raise too_large(field, kind)
    return data


def too_large(field: str, kind: Fetched = AUDIO, detail: str = "") -> InputError:
    return InputError(f"{field} must be at most {kind.max_bytes // (1024 * 1024)} MiB of {kind.what}{detail}")
