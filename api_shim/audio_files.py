"""``GET /v1/audio?path=...``: audio from the output folder (with HTTP Range), or streamed from a bucket.

Only audio files under the output folder are served: the path is resolved (``..`` and symlinks) before
the check, so neither traversal nor a link pointing outside gets through (403). The task database and any
other non-audio file in the folder are refused as well.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import httpx
from fastapi import Request
from fastapi.responses import FileResponse, Response, StreamingResponse

from api_shim.envelope import ApiError
from api_shim.task_store import TaskStore
from inference.endpoints import check_public_url
from inference.errors import InputError
from inference.contract import CONTENT_TYPES

_PASSED_HEADERS = ("content-length", "content-range", "accept-ranges", "etag", "last-modified")


def resolve(raw: str | None, root: Path) -> Path:
    if not raw:
        raise ApiError(400, "path is required: /v1/audio?path=<the path from a result's file field>")
    if "\x00" in raw or not os.path.isabs(raw):
        raise ApiError(403, "path must be an absolute path inside this server's output folder")
    real = Path(os.path.realpath(raw))
    root_real = Path(os.path.realpath(root))
    if root_real not in real.parents:
        raise ApiError(403, "path is outside this server's output folder")
    if real.suffix.lstrip(".").lower() not in CONTENT_TYPES:
        raise ApiError(403, f"only audio files are served ({', '.join(CONTENT_TYPES)})")
    return real


async def serve(request: Request, raw: str | None, root: Path, store: TaskStore,
                http: httpx.AsyncClient, allow_private: bool) -> Response:
    """The file, or the bucket's audio streamed through: only from a public address unless the operator allows
    private ones, and never through a redirect (the client must not be able to steer the shim elsewhere)."""
    path = resolve(raw, root)
    media_type = CONTENT_TYPES[path.suffix.lstrip(".").lower()]
    if path.is_file():
        return FileResponse(path, media_type=media_type)  # answers Range requests itself
    remote = store.remote_audio(str(path))
    if remote is None:
        raise ApiError(404, "no audio at this path (finished audio is kept for ACESTEP_RESULT_TTL seconds)")
    url, content_type = remote
    try:
        # resolving the host blocks: off the event loop, so other requests are not held up by a slow DNS
        await asyncio.to_thread(check_public_url, url, "the audio's bucket URL", allow_private)
    except InputError as err:
        raise ApiError(502, str(err)) from None
    headers = {"range": request.headers["range"]} if "range" in request.headers else {}
    upstream = await http.send(http.build_request("GET", url, headers=headers), stream=True)
    if upstream.status_code not in (200, 206):
        await upstream.aclose()
        if upstream.status_code == 416:
            raise ApiError(416, "the requested range is outside the audio")
        if upstream.is_redirect:
            raise ApiError(502, "the bucket answered this audio with a redirect, which is not followed")
        raise ApiError(404 if upstream.status_code in (403, 404) else 502,
                       f"the bucket answered HTTP {upstream.status_code} for this audio (its link may have expired)")

    async def body():
        try:
            async for chunk in upstream.aiter_bytes(1 << 16):
                yield chunk
        finally:
            await upstream.aclose()

    passed = {k: v for k, v in upstream.headers.items() if k.lower() in _PASSED_HEADERS}
    return StreamingResponse(body(), status_code=upstream.status_code, media_type=content_type or media_type,
                             headers=passed)
