"""Any form a client sends, to the canonical field names: aliases folded, metadata containers read in order.

Parameters are read from the top-level body, then from ``param_obj``, then from ``metas``/``metadata``
(a dict or a JSON string). Aliases are folded into canonical names per source before merging, so a
top-level ``caption`` beats a ``param_obj.prompt``. Keys that are neither fields nor the envelope's are
returned as unknown (the caller reports them in ``warnings``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from inference.errors import InputError

# Keys that select a field by another name , per canonical field.
ALIASES: dict[str, tuple[str, ...]] = {
    "prompt": ("caption",),
    "audio_duration": ("duration", "target_duration"),
    "key_scale": ("keyscale", "key"),
    "time_signature": ("timesignature",),
    "vocal_language": ("language",),
    "use_format": ("format",),
    "sample_query": ("description",),
}
# Keys that are not generation fields but belong to the request envelope.
ENVELOPE_KEYS = frozenset({"action", "s3Config", "ai_token", "param_obj", "metas", "metadata"})
_NESTED_SOURCES = ("param_obj", "metas", "metadata")  # read in this order after the top level
UNSET_STRINGS = frozenset({"", "n/a", "none", "null", "auto"})


def is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in UNSET_STRINGS)


_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}


def _source_dict(value: Any, name: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, nested too deep, or an int too long to read
            raise InputError(f"{name} must be a JSON object (a dict or a JSON string of one)") from None
    if not isinstance(value, Mapping):
        raise InputError(f"{name} must be a JSON object (a dict or a JSON string of one), got {type(value).__name__}")
    return dict(value)


def _canonical(source: Mapping[str, Any]) -> dict[str, Any]:
    """Fold aliases into canonical names; the canonical name wins over an alias in the same source."""
    out: dict[str, Any] = {}
    for key, value in source.items():
        name = _CANONICAL.get(key, key)
        if name not in out or key == name:
            out[name] = value
    return out


def merge_sources(data: Mapping[str, Any], field_names: frozenset[str]) -> tuple[dict[str, Any], list[str]]:
    """Top level, then ``param_obj``, then ``metas``/``metadata``; returns (fields, unknown keys)."""
    merged: dict[str, Any] = {}
    unknown: list[str] = []
    sources = [("input", {k: v for k, v in data.items() if k not in ENVELOPE_KEYS})]
    sources += [(name, _source_dict(data.get(name), name)) for name in _NESTED_SOURCES]
    for source_name, source in sources:
        for key, value in _canonical(source).items():
            if key in field_names:
                merged.setdefault(key, value)
            elif key not in ENVELOPE_KEYS:
                unknown.append(key if source_name == "input" else f"{source_name}.{key}")
    return merged, unknown
