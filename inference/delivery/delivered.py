"""Where one audio ended up, and how an uploaded audio's object key is named."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

_SAFE_KEY_PART = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Delivered:
    """Where one audio ended up: exactly one of url, path, base64."""

    url: str | None = None
    key: str | None = None
    path: str | None = None
    base64: str | None = None


def object_key(prefix: str, job_id: str, extension: str) -> str:
    parts = [p for p in (prefix.strip("/"), _SAFE_KEY_PART.sub("-", job_id).strip("-.")) if p]
    return "/".join(parts + [f"{uuid.uuid4().hex}.{extension}"])
