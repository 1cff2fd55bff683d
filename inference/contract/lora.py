"""LoRA adapters named in a request: what a caller may send (``lora``: one or a list) and its rules.

Each adapter is given one way: ``name`` (``<name>.safetensors`` or a folder ``<name>/`` under the worker's
``ACESTEP_LORA_DIR``), ``path`` (an object in the job's own bucket: ``s3://bucket/key``, read with its
``s3Config``) or ``url`` (http(s), on a public address); ``scale`` multiplies its effect (0 = off, 1 = as
trained). Files are safetensors only: a pickle is never loaded.
"""

from __future__ import annotations

import json
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

LORA_MAX_ADAPTERS = 4
LORA_SCALE_MAX = 2.0
MAX_LORA_URL_CHARS = 4096
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class LoraRef(BaseModel):
    """One adapter of a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, description="An adapter under ACESTEP_LORA_DIR: <name>.safetensors or a folder "
                                               "<name>/ (diffusers' save_lora_weights or ACE-Step's trainer).")
    path: str | None = Field(None, max_length=MAX_LORA_URL_CHARS,
                             description="s3://bucket/key of a .safetensors file, read with the job's s3Config.")
    url: str | None = Field(None, max_length=MAX_LORA_URL_CHARS,
                            description="http(s) URL of a .safetensors file on a public address.")
    scale: float = Field(1.0, ge=0.0, le=LORA_SCALE_MAX, description="Strength: 0 = off, 1 = as trained.")

    @field_validator("name", mode="after")
    @classmethod
    def _name(cls, value):
        if value is None:
            return None
        value = value.strip().removesuffix(".safetensors")
        if not NAME.fullmatch(value) or ".." in value:
            raise ValueError("must be a file or folder name under ACESTEP_LORA_DIR: letters, digits, '.', '_' and '-' "
                             "(no path)")
        return value

    @field_validator("path", mode="after")
    @classmethod
    def _path(cls, value):
        if value is None:
            return None
        value = value.strip()
        if not value.lower().startswith("s3://") or len(value.split("/", 3)) < 4 or not value.split("/", 3)[3]:
            raise ValueError("must be s3://<bucket>/<key> (read with the job's s3Config)")
        return value

    @field_validator("url", mode="after")
    @classmethod
    def _url(cls, value):
        if value is None:
            return None
        value = value.strip()
        if value.split("://", 1)[0].lower() not in ("http", "https") or "://" not in value:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("name", "path", "url") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of name, path or url")
        return self


def as_list(value):
    """``lora`` as sent: one adapter (an object or a bare name), a list of them, or nothing; as a form field, the
    same as a JSON string."""
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("must be an adapter {name | path | url, scale}, a name, or a list of them "
                             "(got text that is not JSON)") from None
    if value is None or value == "" or value == []:
        return []
    if isinstance(value, (dict, str)):
        value = [value]
    if isinstance(value, list):
        return [{"name": item} if isinstance(item, str) else item for item in value]
    return value
