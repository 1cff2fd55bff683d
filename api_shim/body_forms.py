"""A request body, already read within its limits, to a dict of fields, whatever form upstream clients send it in.

In order, as upstream ACE-Step's server reads ``/release_task``: ``application/json`` or any ``+json`` type;
``multipart/form-data`` (files included); ``application/x-www-form-urlencoded``; then, for any other or no
content type, the body itself: JSON when it starts with ``{`` or ``[``, ``k=v&...`` when it has an ``=``, else
415. An empty body is an empty object. Form values are strings (a repeated key keeps its values as a list), so
JSON-looking values of containers (``param_obj``, ``metas``) are read by the normaliser as JSON.

Uploaded audio files (``src_audio``/``ctx_audio``, ``ref_audio``/``reference_audio``, as upstream names them)
become the request's ``src_audio_base64`` / ``reference_audio_base64``: the worker and RunPod jobs take audio
inputs in that one form. Multipart parsing is Starlette's (python-multipart underneath).
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from typing import Any

from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartParser, MultiPartException

from api_shim.envelope import ApiError
from inference.contract.vocabulary import MAX_AUDIO_INPUT_BYTES

UPLOAD_FIELDS = {"src_audio": "src_audio_base64", "ctx_audio": "src_audio_base64",
                 "ref_audio": "reference_audio_base64", "reference_audio": "reference_audio_base64"}
MAX_FILES = 4
UNSUPPORTED_TYPE = ("Unsupported Content-Type: {}; use application/json, application/x-www-form-urlencoded or "
                    "multipart/form-data")


async def decode_body(raw: bytes, headers: Headers) -> Any:
    content_type = headers.get("content-type", "").lower()
    mime = content_type.split(";", 1)[0].strip()
    if mime == "application/json" or mime.endswith("+json"):
        return _json(raw)
    if mime == "multipart/form-data":
        return await _multipart(raw, headers)
    if mime == "application/x-www-form-urlencoded":
        return _urlencoded(raw)
    text = raw.lstrip()
    if not text:
        return {}
    if text[:1] in (b"{", b"["):
        return _json(raw)
    if b"=" in text:
        return _urlencoded(raw)
    raise ApiError(415, UNSUPPORTED_TYPE.format(content_type or "(missing)"))


def _json(raw: bytes) -> Any:
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:  # not JSON, not UTF-8, nested too deep, an int too long to read
        raise ApiError(400, f"the request body is not valid JSON ({err.__class__.__name__} at byte "
                            f"{getattr(err, 'pos', 0)})") from None


def _urlencoded(raw: bytes) -> dict[str, Any]:
    try:
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise ApiError(400, "the form body is not UTF-8") from None
    return dict(pairs)  # a repeated key: the last value, as upstream reads a form


def _collect(pairs) -> dict[str, Any]:
    """Multipart fields: a repeated key keeps its values as a list (``track_classes`` sent once per class)."""
    form: dict[str, Any] = {}
    for key, value in pairs:
        if key in form:
            form[key] = (form[key] if isinstance(form[key], list) else [form[key]]) + [value]
        else:
            form[key] = value
    return form


async def _multipart(raw: bytes, headers: Headers) -> dict[str, Any]:
    async def stream():
        yield raw

    parser = MultiPartParser(headers, stream(), max_files=MAX_FILES, max_fields=1000, max_part_size=len(raw) + 1)
    try:
        form = await parser.parse()
    except MultiPartException as err:
        raise ApiError(400, f"the multipart body cannot be read: {err.message}") from None
    fields: list[tuple[str, Any]] = []
    try:
        for key, value in form.multi_items():
            if not isinstance(value, UploadFile):
                fields.append((key, value))
                continue
            target = UPLOAD_FIELDS.get(key)
            if target is None:
                raise ApiError(400, f"the uploaded file '{key[:40]}' is not an audio input; upload audio as "
                                    f"{', '.join(UPLOAD_FIELDS)}")
            data = await value.read(MAX_AUDIO_INPUT_BYTES + 1)
            if len(data) > MAX_AUDIO_INPUT_BYTES:
                raise ApiError(413, f"{key} must be at most {MAX_AUDIO_INPUT_BYTES // (1024 * 1024)} MiB of audio")
            if data:
                if any(name == target for name, _ in fields):
                    raise ApiError(400, f"give one source and one reference audio: {', '.join(UPLOAD_FIELDS)} "
                                        f"name them twice here")
                fields.append((target, base64.b64encode(data).decode("ascii")))
    finally:
        await form.close()
    return _collect(fields)
