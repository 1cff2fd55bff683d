"""The response envelope (docs/api.md section 1), and the error type every route raises."""

from __future__ import annotations

import time
from typing import Any, Generic, TypeVar

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel

T = TypeVar("T")


class Envelope(BaseModel, Generic[T]):
    """Every JSON answer: ``data`` on success; on failure ``error`` and ``detail`` carry the same message."""

    data: T | None = None
    code: int = 200
    error: str | None = None
    timestamp: int
    extra: Any = None


class ErrorEnvelope(Envelope[Any]):
    detail: str


class ApiError(Exception):
    """An answer with an HTTP status other than 200 and a one-line message naming what was wrong."""

    def __init__(self, status: int, message: str, data: Any = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.data = data
        self.headers = headers


def now_ms() -> int:
    return int(time.time() * 1000)


def ok(data: Any, status: int = 200) -> JSONResponse:
    data = jsonable_encoder(data)
    return JSONResponse({"data": data, "code": status, "error": None, "timestamp": now_ms(), "extra": None},
                        status_code=status)


def failure(status: int, message: str, data: Any = None, headers: dict[str, str] | None = None,
            http_status: int | None = None) -> JSONResponse:
    """The envelope of a refusal; ``http_status`` when the HTTP answer is not ``status`` (upstream answers some
    refusals with HTTP 200 and the code in the envelope)."""
    data = jsonable_encoder(data)
    body = {"data": data, "code": status, "error": message, "timestamp": now_ms(), "extra": None, "detail": message}
    return JSONResponse(body, status_code=http_status or status, headers=headers)
