"""Any form a client sends, to the canonical field names: aliases folded, metadata containers read in order.

Names: every canonical field is also accepted in camelCase (``inferenceSteps``) and hyphenated
(``inference-steps``), and under upstream ACE-Step's own aliases (``ALIASES``: ``caption``, ``duration``,
``desc``, ``dit_model``, ...). Sources, in order: the top-level body, then ``param_obj``, then the first
non-empty metadata container of ``METADATA_CONTAINERS`` (``metas``, ``meta``, ``metadata``, ...), each a dict
or a JSON string of one, with the same names inside. A value given in an earlier source wins; within one
source the canonical name wins over an alias. ``null`` is "not given": the next source is read. Keys upstream
clients send for features this worker does not have are reported as such (``UNSUPPORTED``); any other key as
unknown. Neither is an error.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from inference.errors import InputError

# Upstream ACE-Step's own names for a field (beside the camelCase and hyphenated forms made for every field).
ALIASES: dict[str, tuple[str, ...]] = {
    "prompt": ("caption",),
    "audio_duration": ("duration", "target_duration"),
    "key_scale": ("keyscale", "key"),
    "time_signature": ("timesignature",),
    "vocal_language": ("language",),
    "use_format": ("format",),
    "sample_query": ("description", "desc"),
    "model": ("model_name", "dit_model"),
    "audio_cover_strength": ("cover_strength",),
    "track_classes": ("instruments",),
    "audio_code_string": ("audio_codes",),
    "use_cot_caption": ("cot_caption",),
    "use_cot_language": ("cot_language",),
    "constrained_decoding": ("constrained",),
    "src_audio_base64": ("ctx_audio_base64",),
    "reference_audio_base64": ("ref_audio_base64",),
}
# Fields of upstream's request that this worker does not act on: accepted, reported in ``warnings``.
UNSUPPORTED = frozenset({
    "global_caption", "analysis_only", "full_analysis_only", "extract_codes_only", "infer_method",
    "use_adg", "guidance_variant", "guidance_params", "sampler_mode",
    "velocity_norm_threshold", "velocity_ema_factor", "eta", "momentum", "latent_shift", "latent_rescale",
    "use_tiled_decode",
    "cover_noise_strength", "lm_model_path", "lm_backend", "constrained_decoding_debug",
    "is_format_caption", "allow_lm_batch",
    "parallel_thinking", "src_audio_path", "ctx_audio_path", "reference_audio_path", "ref_audio_path",
})
METADATA_CONTAINERS = ("metas", "meta", "metadata", "user_metadata", "userMetadata")
# Keys that are not generation fields but belong to the request envelope.
ENVELOPE_KEYS = frozenset({"action", "s3Config", "ai_token", "param_obj", *METADATA_CONTAINERS})
UNSET_STRINGS = frozenset({"", "n/a", "none", "null", "auto"})
_WORD_BREAK = re.compile(r"_([a-z0-9])")


def is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in UNSET_STRINGS)


def camel_case(name: str) -> str:
    return _WORD_BREAK.sub(lambda m: m.group(1).upper(), name)


@functools.lru_cache(maxsize=8)
def alias_map(field_names: frozenset[str]) -> dict[str, str]:
    """Every accepted name → its canonical field, for the fields of one request model."""
    names: dict[str, str] = {}
    for field in sorted(field_names | UNSUPPORTED):
        for form in (camel_case(field), field.replace("_", "-")):
            names.setdefault(form, field)
    for field, aliases in ALIASES.items():
        for alias in aliases:
            for form in (alias, camel_case(alias), alias.replace("_", "-")):
                names.setdefault(form, field)
    for field in field_names | UNSUPPORTED:
        names[field] = field
    return names


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


def _canonical(source: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """Fold aliases into canonical names; the canonical name wins over an alias in the same source; null is
    not a value."""
    out: dict[str, Any] = {}
    for key, value in source.items():
        if value is None:
            continue
        name = names.get(key, key)
        if name not in out or key == name:
            out[name] = value
    return out


def sources_of(data: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The top level, ``param_obj``, and the first non-empty metadata container, in that order."""
    sources = [("input", {k: v for k, v in data.items() if k not in ENVELOPE_KEYS})]
    sources.append(("param_obj", _source_dict(data.get("param_obj"), "param_obj")))
    for name in METADATA_CONTAINERS:
        container = _source_dict(data.get(name), name)
        if container:
            sources.append((name, container))
            break
    return sources


def merge_sources(data: Mapping[str, Any], field_names: frozenset[str]
                  ) -> tuple[dict[str, Any], list[str], list[str]]:
    """Returns (fields, unknown keys, keys of unsupported upstream features)."""
    names = alias_map(field_names)
    merged: dict[str, Any] = {}
    unknown: list[str] = []
    unsupported: list[str] = []
    for source_name, source in sources_of(data):
        for key, value in _canonical(source, names).items():
            where = key if source_name == "input" else f"{source_name}.{key}"
            if key in field_names:
                merged.setdefault(key, value)
            elif key in UNSUPPORTED:
                unsupported.append(where)
            elif key not in ENVELOPE_KEYS:
                unknown.append(where)
    return merged, unknown, unsupported


def without_fields(data: Mapping[str, Any], drop: frozenset[str], field_names: frozenset[str]) -> dict[str, Any]:
    """``data`` with every key that names one of the canonical fields ``drop`` (in any accepted form) removed,
    from the top level, ``param_obj`` and every metadata container (a JSON-string container comes back as a
    dict; one that is not JSON, which the parser never reads when an earlier container has values, stays as
    it is)."""
    names = alias_map(field_names)

    def strip(source: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in source.items() if names.get(k, k) not in drop}

    out = strip({k: v for k, v in data.items() if k not in ("param_obj", *METADATA_CONTAINERS)})
    for name in ("param_obj", *METADATA_CONTAINERS):
        if name in data:
            try:
                out[name] = strip(_source_dict(data[name], name))
            except InputError:
                out[name] = data[name]
    return out
