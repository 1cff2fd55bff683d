"""What every request passes before a backend sees it, cheapest first: the API key in the header, the body's
size (declared, then counted while reading) against the route's limit and against the bytes all requests
may be reading at once, decoding as its content type says (JSON, forms, multipart uploads), and last the key
in the body (``ai_token``, JSON or form) for clients that send it there. Without a valid header only a small
body is read, so nobody without the key can make the server read megabytes."""

from __future__ import annotations

import hmac
from contextlib import contextmanager
from typing import Any

from fastapi import Request

from api_shim.body_forms import decode_body
from api_shim.envelope import ApiError
from inference.settings import Settings

PRE_AUTH_BODY_BYTES = 64 * 1024  # read before the key is known: ai_token bodies are small
QUERY_BODY_BYTES = 1024 * 1024  # /query_result: 500 task ids are about 20 KB
# RunPod refuses larger job payloads (/run about 10 MB, /runsync about 20 MB). The runpod backend forwards a body
# nearly as it is, so a body that cannot fit is refused at once rather than after a 502 (unless the shim has a
# bucket to pass big audio inputs through: api_shim.backends.runpod_staging); the margin is the job envelope's.
RUNPOD_PAYLOAD_BYTES = {"release_task": (10_000_000, "/run"), "format_input": (20_000_000, "/runsync")}
ENVELOPE_MARGIN_BYTES = 16 * 1024
KEY_REQUIRED = "a valid API key is required: send 'Authorization: Bearer <key>' (or 'ai_token' in the body)"


class BodyBudget:
    """The bytes of request bodies being read at the same time, across all requests; past ``capacity`` a request
    is refused with 503 at once instead of growing the server (one event loop: no lock needed)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.held = 0

    @contextmanager
    def reading(self):
        taken = 0

        def take(size: int) -> None:
            nonlocal taken
            if self.held + size > self.capacity:
                raise ApiError(503, f"the server is reading {self.held} bytes of other requests "
                                    f"(ACESTEP_BODY_BUDGET_BYTES {self.capacity}); retry shortly",
                               headers={"Retry-After": "2"})
            self.held += size
            taken += size

        try:
            yield take
        finally:
            self.held -= taken


def body_limit(settings: Settings, backend: str, route: str) -> tuple[int, str]:
    """The largest body ``route`` accepts with this backend, and the name of that limit for the 413 message."""
    if route == "query_result":
        return QUERY_BODY_BYTES, "query_result's limit"
    staged = route == "release_task" and settings.env_bucket_configured  # big audio inputs go through the bucket
    if backend == "runpod" and not staged:
        payload, path = RUNPOD_PAYLOAD_BYTES[route]
        if payload - ENVELOPE_MARGIN_BYTES < settings.max_body_bytes:
            hint = "; give audio inputs by URL, or set BUCKET_* on this shim to pass them through a bucket" \
                if route == "release_task" else ""
            return payload - ENVELOPE_MARGIN_BYTES, f"RunPod's {path} payload limit{hint}"
    return settings.max_body_bytes, "ACESTEP_MAX_BODY_BYTES"


def header_authorized(request: Request, settings: Settings) -> bool:
    """No key configured, or ``Authorization: Bearer <key>`` or the bare ``Authorization: <key>`` upstream clients
    also send matches (constant time)."""
    if settings.api_key is None:
        return True
    header = request.headers.get("authorization", "").strip()
    scheme, _, rest = header.partition(" ")
    given = rest.strip() if scheme.lower() == "bearer" else header
    return hmac.compare_digest(given.encode(), settings.api_key.get_secret_value().encode())


def authorize(request: Request, settings: Settings) -> None:
    """For routes without a body: the header alone."""
    if not header_authorized(request, settings):
        raise ApiError(401, KEY_REQUIRED, headers={"WWW-Authenticate": "Bearer"})


async def read_body(request: Request, settings: Settings, budget: BodyBudget, limit: int, limit_name: str) -> Any:
    """The JSON body of an authorized request. ``limit`` is the route's (``limit_name`` says whose it is)."""
    keyed = header_authorized(request, settings)
    cap = limit if keyed else min(limit, PRE_AUTH_BODY_BYTES)
    try:
        body = await _read_body(request, cap, budget, limit_name)
    except ApiError as err:
        if err.status == 413 and not keyed:  # too big to look for ai_token: the key must come in the header
            raise ApiError(401, f"{KEY_REQUIRED}; bodies over {PRE_AUTH_BODY_BYTES} bytes need the header",
                           headers={"WWW-Authenticate": "Bearer"}) from None
        raise
    if not keyed:
        token = body.get("ai_token") if isinstance(body, dict) else None
        expected = settings.api_key.get_secret_value().encode()
        if not (isinstance(token, str) and hmac.compare_digest(token.encode(), expected)):
            raise ApiError(401, KEY_REQUIRED, headers={"WWW-Authenticate": "Bearer"})
    return body


async def _read_body(request: Request, limit: int, budget: BodyBudget, limit_name: str) -> Any:
    """413 past ``limit`` bytes (the declared length first, then while reading); then decoded as its content type
    says (``api_shim.body_forms``)."""
    header = request.headers.get("content-length", "")
    declared = int(header) if header.isdigit() else None
    if declared is not None and declared > limit:
        raise ApiError(413, f"the request body is {declared} bytes; at most {limit} are accepted ({limit_name})")
    chunks, size = [], 0
    with budget.reading() as take:
        if declared is not None:
            take(declared)  # reserved up front: refused before a byte is read
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the request body is larger than {limit} bytes ({limit_name})")
            if declared is None:
                take(len(chunk))
            chunks.append(chunk)
        return await decode_body(b"".join(chunks), request.headers)
