"""What every request passes before a backend sees it: the body size limit, JSON parsing and the API key."""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import Request

from api_shim.envelope import ApiError
from inference.settings import Settings


async def read_json_body(request: Request, limit: int) -> Any:
    """The body as JSON: 413 past ``limit`` bytes (checked while reading), 400 when it is not JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the request body is {int(declared)} bytes; at most {limit} are accepted "
                            f"(ACESTEP_MAX_BODY_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the request body is larger than {limit} bytes (ACESTEP_MAX_BODY_BYTES)")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the request body is not valid JSON ({err.__class__.__name__} at byte "
                            f"{getattr(err, 'pos', 0)})") from None


def authorize(request: Request, settings: Settings, body: Any = None) -> None:
    """With ACESTEP_API_KEY set: ``Authorization: Bearer <key>`` or a body ``ai_token``, compared in constant time."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected):
        return
    token = body.get("ai_token") if isinstance(body, dict) else None
    if isinstance(token, str) and hmac.compare_digest(token.encode(), expected):
        return
    raise ApiError(401, "a valid API key is required: send 'Authorization: Bearer <key>' (or 'ai_token' in the body)",
                   headers={"WWW-Authenticate": "Bearer"})
