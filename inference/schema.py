"""The request and response models of API.md sections 3 and 4, declared once.

The RunPod handler validates a job's ``input`` with ``parse_generate_request``; the HTTP shim uses the
same function and models, so both speak exactly the same contract. No torch import here.

Parameters are read from the top-level body, then from ``param_obj``, then from ``metas``/``metadata``
(a dict or a JSON string). Aliases are folded into canonical names per source before merging, so a
top-level ``caption`` beats a ``param_obj.prompt``. Unknown keys are ignored and reported in
``GenerateRequest.warnings``. Rules that depend on the deployment (longest song, largest batch, steps
on turbo, tasks that need a base model) come in through ``Limits`` as validation context.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Mapping
from typing import Any, Literal

import soundfile as sf
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from inference.errors import InputError, UnsupportedError

# --- allowed values ------------------------------------------------------------------------------
AUDIO_FORMATS = ("mp3", "wav", "flac", "ogg", "opus")
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
}
TASK_TYPES = ("text2music", "repaint", "cover", "extract", "lego", "complete")
BASE_MODEL_TASKS = ("extract", "lego", "complete")
SOURCE_AUDIO_TASKS = ("repaint", "cover", "extract", "lego", "complete")
VALID_TIME_SIGNATURES = ("2", "3", "4", "6")
_TIME_SIGNATURE_FORMS = {"2/4": "2", "3/4": "3", "4/4": "4", "6/8": "6"}
_KEY_NOTES = ("A", "B", "C", "D", "E", "F", "G")
_KEY_ACCIDENTALS = ("", "#", "b", "♯", "♭")
VALID_KEYSCALES = tuple(f"{n}{a} {m}" for n in _KEY_NOTES for a in _KEY_ACCIDENTALS for m in ("major", "minor"))
VALID_LANGUAGES = (
    "ar", "az", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "fa", "fi", "fr", "he", "hi", "hr",
    "ht", "hu", "id", "is", "it", "ja", "ko", "la", "lt", "ms", "ne", "nl", "no", "pa", "pl", "pt", "ro",
    "ru", "sa", "sk", "sr", "sv", "sw", "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "yue", "zh",
    "unknown",
)
INSTRUMENTAL_LYRICS = ("", "[inst]", "[instrumental]")

MIN_DURATION_S, MAX_DURATION_S, DEFAULT_DURATION_S = 10.0, 600.0, 60.0
MAX_BATCH_SIZE = 8
MAX_STEPS_TURBO, MAX_STEPS = 20, 200
SEED_MAX = 2**32 - 1
MAX_PROMPT_CHARS = 4_000
MAX_LYRICS_CHARS = 12_000
MAX_AUDIO_INPUT_BYTES = 30 * 1024 * 1024
MIN_AUDIO_INPUT_RATE, MAX_AUDIO_INPUT_RATE = 8_000, 192_000  # Hz
MAX_AUDIO_INPUT_CHANNELS = 8
AUDIO_INPUT_FIELDS = ("src_audio_base64", "reference_audio_base64")
_UNKNOWN_FRAMES = 2**63 - 1  # libsndfile's length when the header does not say (a streamed FLAC)
MAX_MESSAGE_CHARS = 500  # an error message, all problems together

# Keys that select a field by another name (API.md section 3), per canonical field.
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
_UNSET_STRINGS = frozenset({"", "n/a", "none", "null", "auto"})


class Limits(BaseModel):
    """What the loaded deployment allows; passed to validation as context."""

    model_config = ConfigDict(frozen=True)

    max_duration_s: float = MAX_DURATION_S
    max_batch_size: int = MAX_BATCH_SIZE
    is_turbo: bool = True
    dit_model: str = "acestep-v15-turbo"

    @property
    def max_steps(self) -> int:
        return MAX_STEPS_TURBO if self.is_turbo else MAX_STEPS


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _UNSET_STRINGS)


def _clip(value: Any, limit: int = 40) -> str:
    """A short repr of a caller's value for a message (an int too long to print is described instead)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's limit on digits printed, or something holding one
        text = (f"an integer of about {int(value.bit_length() * 0.30103)} digits" if isinstance(value, int)
                else f"a {type(value).__name__} with a huge integer")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class SongFields(BaseModel):
    """The fields that describe a song, shared by generation and ``format_input``, with their rules."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Style caption (alias: caption).")
    lyrics: str = Field("", max_length=MAX_LYRICS_CHARS,
                        description='Lyrics with [Verse]/[Chorus] tags; "", [inst] or [instrumental] = instrumental.')
    audio_duration: float | None = Field(
        None, ge=MIN_DURATION_S, le=MAX_DURATION_S, json_schema_extra={"unit": "seconds"},
        description="Seconds of audio (aliases: duration, target_duration); unset = the LM's plan, else 60.")
    bpm: int | None = Field(None, ge=30, le=300, description="Beats per minute; unset = model's choice.")
    key_scale: str = Field("", description='Key, e.g. "C major", "F# minor" (aliases: keyscale, key).')
    time_signature: str = Field("", description='"2", "3", "4" or "6" (also "4/4" etc.; alias: timesignature).')
    vocal_language: str = Field("en", description="ISO code of the lyrics' language or 'unknown' (alias: language).")

    @field_validator("bpm", "audio_duration", mode="before")
    @classmethod
    def _unset_numbers(cls, value):
        return None if _is_unset(value) else value

    @field_validator("key_scale", mode="before")
    @classmethod
    def _key_scale(cls, value):
        if _is_unset(value):
            return ""
        if not isinstance(value, str):
            raise ValueError(f"must be a key such as 'C major' or 'F# minor' (got {_clip(value)})")
        parts = value.split()
        if len(parts) == 2 and parts[0][:1].upper() in _KEY_NOTES:
            candidate = f"{parts[0][:1].upper()}{parts[0][1:]} {parts[1].lower()}"
            if candidate in VALID_KEYSCALES:
                return candidate
        raise ValueError(f"must be a note A-G with an optional # or b and 'major' or 'minor', e.g. 'F# minor' "
                         f"(got {_clip(value)})")

    @field_validator("time_signature", mode="before")
    @classmethod
    def _time_signature(cls, value):
        if _is_unset(value):
            return ""
        if isinstance(value, str):
            text = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**6:
            text = str(value)
        else:
            text = None
        text = _TIME_SIGNATURE_FORMS.get(text, text)
        if text in VALID_TIME_SIGNATURES:
            return text
        raise ValueError(f"must be one of 2, 3, 4, 6 (or 2/4, 3/4, 4/4, 6/8) (got {_clip(value)})")

    @field_validator("vocal_language", mode="before")
    @classmethod
    def _language(cls, value):
        if _is_unset(value):
            return "unknown"
        if isinstance(value, str) and value.strip().lower() in VALID_LANGUAGES:
            return value.strip().lower()
        raise ValueError(f"must be one of {', '.join(VALID_LANGUAGES)} (got {_clip(value)})")


class GenerateRequest(SongFields):
    """One generation request: API.md section 3, canonical names (aliases in ``ALIASES``)."""

    batch_size: int = Field(2, ge=1, le=MAX_BATCH_SIZE, description="Songs per request.")
    seed: int | str | list[int] = Field(
        -1, description='A seed, "s1,s2" or a list, one per song; -1 = random. The seeds used come back.')
    use_random_seed: bool | None = Field(None, description="Random seeds even if a seed is given; default: "
                                                           "true unless a seed is given.")
    inference_steps: int = Field(8, ge=1, le=MAX_STEPS, description="Denoising steps (turbo 1-20, base/sft 1-200).")
    guidance_scale: float = Field(7.0, ge=0.0, le=30.0, description="CFG scale; ignored (1.0) on turbo models.")
    shift: float = Field(3.0, ge=1.0, le=5.0, description="Timestep shift of the flow schedule.")
    thinking: bool = Field(False, description="The 5 Hz LM plans metadata and audio codes first.")
    use_format: bool = Field(False, description="The LM rewrites caption and lyrics first (alias: format).")
    sample_query: str = Field("", max_length=MAX_PROMPT_CHARS,
                              description="The LM writes caption, lyrics and metas from this (alias: description).")
    lm_temperature: float = Field(0.85, ge=0.0, le=2.0)
    lm_cfg_scale: float = Field(2.5, ge=1.0, le=10.0)
    lm_top_p: float = Field(0.9, gt=0.0, le=1.0)
    lm_top_k: int | None = Field(None, ge=1, le=1000)
    lm_negative_prompt: str = Field("NO USER INPUT", max_length=MAX_PROMPT_CHARS)
    task_type: Literal["text2music", "repaint", "cover", "extract", "lego", "complete"] = "text2music"
    src_audio_url: str | None = Field(None, description="Source audio by URL (not served by this worker yet).")
    src_audio_base64: str | None = Field(None, description="Source audio file (wav/flac/mp3/ogg) as base64.")
    reference_audio_url: str | None = Field(None, description="Reference audio by URL (not served by this worker yet).")
    reference_audio_base64: str | None = Field(None, description="Timbre reference audio file as base64.")
    repainting_start: float = Field(0.0, ge=0.0, le=MAX_DURATION_S, json_schema_extra={"unit": "seconds"})
    repainting_end: float = Field(-1.0, ge=-1.0, le=MAX_DURATION_S, json_schema_extra={"unit": "seconds"},
                                  description="End of the repainted span in seconds; -1 = the end.")
    audio_cover_strength: float = Field(1.0, ge=0.0, le=1.0)
    audio_format: Literal["mp3", "wav", "flac", "ogg", "opus"] = "mp3"
    mp3_bitrate: int = Field(192, ge=32, le=320, json_schema_extra={"unit": "kbps"})

    _warnings: list[str] = PrivateAttr(default_factory=list)
    _audio_bytes: dict[str, bytes] = PrivateAttr(default_factory=dict)

    # --- field rules ---------------------------------------------------------------------------
    @field_validator("lm_top_k", mode="before")
    @classmethod
    def _unset_top_k(cls, value):
        return None if _is_unset(value) else value

    @field_validator("audio_format", mode="before")
    @classmethod
    def _lower_format(cls, value):
        return value.strip().lower().lstrip(".") if isinstance(value, str) else value

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value):
        if value is None or (isinstance(value, str) and value.strip() == ""):
            return -1
        if isinstance(value, bool):
            raise ValueError(f"must be an integer, a list of integers or a string like '12,34' (got {value!r})")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int):
            items = [value]
        elif isinstance(value, str):
            try:
                items = [int(part) for part in value.split(",")]
            except ValueError:
                raise ValueError(
                    f"must be an integer or comma-separated integers like '12,34' (got {_clip(value)})") from None
        elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            items = list(value)
        else:
            raise ValueError(f"must be an integer, a list of integers or a string like '12,34' (got {_clip(value)})")
        if len(items) > 1 and -1 in items:
            raise ValueError("-1 (random) cannot be mixed with explicit seeds")
        for item in items:
            if not (item == -1 or 0 <= item <= SEED_MAX):
                raise ValueError(f"must be -1 (random) or between 0 and {SEED_MAX} (got {_clip(item)})")
        return items[0] if len(items) == 1 else items

    @field_validator("src_audio_base64", "reference_audio_base64", mode="after")
    @classmethod
    def _audio_base64(cls, value):
        if value is None:
            return None
        if len(value) > MAX_AUDIO_INPUT_BYTES * 4 // 3 + 4:
            raise ValueError(f"must be at most {MAX_AUDIO_INPUT_BYTES // (1024 * 1024)} MiB of audio")
        return value  # decoded once, in _cross_fields, and kept

    @field_validator("src_audio_url", "reference_audio_url", mode="after")
    @classmethod
    def _audio_url(cls, value):
        if value is None:
            return None
        raise ValueError("audio inputs by URL are not served by this worker yet; send the file as *_base64")

    # --- cross-field rules: the one place for them ---------------------------------------------
    @model_validator(mode="after")
    def _cross_fields(self, info: ValidationInfo):
        for name in AUDIO_INPUT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                try:
                    self._audio_bytes[name] = _decode_base64(value)
                except ValueError as err:
                    raise ValueError(f"{name} {err}") from None
        if not (self.prompt.strip() or self.lyrics.strip() or self.sample_query.strip()):
            raise ValueError("the request is empty: give a prompt (caption), lyrics or a sample_query")
        if self.task_type in SOURCE_AUDIO_TASKS and not self.src_audio_base64:
            raise ValueError(f"task_type '{self.task_type}' needs source audio: give src_audio_base64")
        if self.task_type == "repaint" and self.repainting_end != -1 and self.repainting_end <= self.repainting_start:
            raise ValueError(f"repainting_end must be -1 (the end) or greater than repainting_start "
                             f"({self.repainting_start}) (got {self.repainting_end})")
        limits = info.context.get("limits") if isinstance(info.context, dict) else None
        if isinstance(limits, Limits):
            self._check_limits(limits)
        for name, data in self._audio_bytes.items():  # last: it reads the files' headers
            _check_audio_header(data, name)
        return self

    def _check_limits(self, limits: Limits) -> None:
        if self.audio_duration is not None and self.audio_duration > limits.max_duration_s:
            raise UnsupportedError(
                f"audio_duration must be between {MIN_DURATION_S:g} and {limits.max_duration_s:g} seconds on this "
                f"GPU (got {self.audio_duration:g})")
        if self.batch_size > limits.max_batch_size:
            raise UnsupportedError(f"batch_size must be between 1 and {limits.max_batch_size} on this GPU "
                                   f"(got {self.batch_size})")
        if self.inference_steps > limits.max_steps:
            raise UnsupportedError(f"inference_steps must be between 1 and {limits.max_steps} on "
                                   f"{'turbo' if limits.is_turbo else 'base/sft'} models (got {self.inference_steps})")
        if self.task_type in BASE_MODEL_TASKS and limits.is_turbo:
            raise UnsupportedError(f"task_type '{self.task_type}' needs a base or sft model; this worker serves "
                                   f"{limits.dit_model}")

    # --- derived values ------------------------------------------------------------------------
    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @property
    def explicit_seeds(self) -> list[int]:
        """The seeds the caller asked for (empty = random), honouring ``use_random_seed``."""
        seeds = self.seed if isinstance(self.seed, list) else [int(self.seed)]
        if self.use_random_seed or seeds == [-1]:
            return []
        return seeds

    @property
    def is_instrumental(self) -> bool:
        return self.lyrics.strip().lower() in INSTRUMENTAL_LYRICS

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.audio_format]

    def audio_input(self, field: Literal["src_audio_base64", "reference_audio_base64"]) -> bytes | None:
        return self._audio_bytes.get(field)

    @property
    def audio_input_bytes(self) -> int:
        """Bytes of the audio files this request brings (decoded from base64)."""
        return sum(len(data) for data in self._audio_bytes.values())


def unreadable_audio(field: str, err: Exception) -> InputError:
    # libsndfile's own words without soundfile's "Error opening <_io.BytesIO object at 0x...>: " before them
    reason = getattr(err, "error_string", None) or str(err) or type(err).__name__
    first_line = _clip_text(reason.splitlines()[0] if reason.strip() else type(err).__name__, 200)
    return InputError(f"{field} is not an audio file libsndfile can read (wav, flac, ogg, opus, mp3): {first_line}")


def _clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_audio_header(data: bytes, field: str) -> None:
    """Length, rate and channels from the file's header, before anything is decoded (a few KB of FLAC can
    claim hours). A header that does not give the length is let through: decoding stops at the limit."""
    try:
        info = sf.info(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(field, err) from None
    if not MIN_AUDIO_INPUT_RATE <= info.samplerate <= MAX_AUDIO_INPUT_RATE:
        raise InputError(f"{field} must have a sample rate between {MIN_AUDIO_INPUT_RATE} and "
                         f"{MAX_AUDIO_INPUT_RATE} Hz (got {info.samplerate})")
    if not 1 <= info.channels <= MAX_AUDIO_INPUT_CHANNELS:
        raise InputError(f"{field} must have between 1 and {MAX_AUDIO_INPUT_CHANNELS} channels (got {info.channels})")
    if info.frames == 0:
        raise InputError(f"{field} holds no audio samples")
    if info.frames != _UNKNOWN_FRAMES and info.frames / info.samplerate > MAX_DURATION_S:
        raise InputError(f"{field} must be at most {MAX_DURATION_S:g} seconds long "
                         f"(got {info.frames / info.samplerate:.0f})")


def _decode_base64(value: str) -> bytes:
    data = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not valid base64") from None
    if not raw:
        raise ValueError("is empty")
    return raw


# --- parsing entry point -------------------------------------------------------------------------
_CANONICAL = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
_FIELD_NAMES = frozenset(GenerateRequest.model_fields)


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


def merge_sources(data: Mapping[str, Any], field_names: frozenset[str] = _FIELD_NAMES
                  ) -> tuple[dict[str, Any], list[str]]:
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


def parse_generate_request(data: Any, limits: Limits | None = None) -> GenerateRequest:
    """Validate a job input; raises ``InputError``/``UnsupportedError`` with one line naming the field."""
    if data is None or (isinstance(data, Mapping) and not data):
        raise InputError("input is empty: give a prompt (caption), lyrics or a sample_query")
    if not isinstance(data, Mapping):
        raise InputError(f"input must be a JSON object, got {type(data).__name__}")
    fields, unknown = merge_sources(data)
    try:
        request = GenerateRequest.model_validate(fields, context={"limits": limits})
    except ValidationError as err:
        raise InputError(describe_validation_error(err)) from None
    if unknown:
        request._warnings.append(f"ignored unknown field(s): {', '.join(sorted(set(unknown)))}")
    return request


class FormatInputRequest(SongFields):
    """``format_input``: the 5 Hz LM rewrites caption and lyrics and fills in the metadata it is not given.

    Read like a generation request: top level, then ``param_obj`` (duration, bpm, key/key_scale,
    time_signature, language), then ``metas``/``metadata``. A value the caller gives always wins.
    """

    vocal_language: str = Field("unknown", description="Lyrics' language; 'unknown' = the LM decides.")
    temperature: float = Field(0.85, ge=0.0, le=2.0, description="LM sampling temperature.")

    @model_validator(mode="after")
    def _not_empty(self):
        if not (self.prompt.strip() or self.lyrics.strip()):
            raise ValueError("the request is empty: give a prompt (caption) or lyrics to format")
        return self


def parse_format_input_request(data: Any) -> FormatInputRequest:
    """Validate a ``format_input`` body; raises ``InputError`` with one line naming the field."""
    if not isinstance(data, Mapping) or not data:
        raise InputError("input must be a JSON object with a prompt (caption) and/or lyrics")
    fields, _ = merge_sources(data, frozenset(FormatInputRequest.model_fields))
    try:
        return FormatInputRequest.model_validate(fields)
    except ValidationError as err:
        raise InputError(describe_validation_error(err, FormatInputRequest)) from None


def _range_text(name: str, model: type[BaseModel] | None = None) -> str:
    field = (model or GenerateRequest).model_fields.get(name)
    if field is None:
        return ""
    lo = hi = None
    for rule in field.metadata:
        lo = getattr(rule, "ge", None) if getattr(rule, "ge", None) is not None else lo
        lo = getattr(rule, "gt", None) if getattr(rule, "gt", None) is not None else lo
        hi = getattr(rule, "le", None) if getattr(rule, "le", None) is not None else hi
    unit = (field.json_schema_extra or {}).get("unit", "") if isinstance(field.json_schema_extra, dict) else ""
    if lo is None or hi is None:
        return ""
    return f"between {lo:g} and {hi:g}{' ' + unit if unit else ''}"


def describe_validation_error(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line per problem, joined by '; ', each naming the field and what is allowed."""
    parts = []
    for item in err.errors(include_url=False):
        name = ".".join(str(p) for p in item["loc"] if not isinstance(p, int)) or "input"
        # a union (seed) reports one error per member type: keep the first
        if any(p.startswith(f"{name} ") for p in parts):
            continue
        kind, given = item["type"], item.get("input")
        if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
            parts.append(f"{name} must be {_range_text(name, model)} (got {_clip(given)})")
        elif kind == "string_too_long":
            limit = item.get("ctx", {}).get("max_length")
            parts.append(f"{name} must be at most {limit} characters (got {len(given)})")
        elif kind == "literal_error":
            parts.append(f"{name} must be one of {item['ctx']['expected']} (got {_clip(given)})")
        elif kind == "value_error":
            message = str(item.get("ctx", {}).get("error", item["msg"]))
            parts.append(message if name == "input" else f"{name} {message}")
        elif kind in {"int_parsing", "int_parsing_size", "int_from_float", "int_type", "finite_number"}:
            extra = f" {_range_text(name, model)}" if _range_text(name, model) else ""
            parts.append(f"{name} must be an integer{extra} (got {_clip(given)})")
        elif kind in {"float_parsing", "float_type"}:
            extra = f" {_range_text(name, model)}" if _range_text(name, model) else ""
            parts.append(f"{name} must be a number{extra} (got {_clip(given)})")
        elif kind in {"bool_parsing", "bool_type"}:
            parts.append(f"{name} must be true or false (got {_clip(given)})")
        elif kind == "string_type":
            parts.append(f"{name} must be a string (got {type(given).__name__})")
        else:
            parts.append(f"{name}: {item['msg']} (got {_clip(given)})")
    return _join_problems(parts)


def _join_problems(parts: list[str], limit: int = MAX_MESSAGE_CHARS) -> str:
    """``parts`` joined by '; ', as many whole ones as fit in ``limit`` characters, then how many more there are."""
    text = ""
    for count, part in enumerate(parts):
        rest = len(parts) - count - 1
        tail = f"; and {rest} more problem(s)" if rest else ""
        candidate = f"{text}; {part}" if text else part
        if len(candidate) + len(tail) > limit:
            if not text:  # one problem longer than a whole message: its start
                return _clip_text(part, limit - len(tail)) + tail
            return f"{text}; and {rest + 1} more problem(s)"  # fits: it did when the last part was added
        text = candidate
    return text


# --- responses (API.md section 4) ----------------------------------------------------------------
class AudioOut(BaseModel):
    """One finished audio: exactly one of url, base64 or path is present."""

    url: str | None = None
    base64: str | None = None
    path: str | None = None
    key: str | None = None
    format: str
    content_type: str
    bytes: int
    duration: float
    sample_rate: int
    seed: int

    @model_serializer(mode="wrap")
    def _only_the_delivery_used(self, handler):
        data = handler(self)
        for name in ("url", "base64", "path"):
            if data.get(name) is None:
                data.pop(name, None)
        return data


class Metas(BaseModel):
    bpm: int | None = None
    duration: float
    keyscale: str = ""
    timesignature: str = ""
    vocal_language: str = "en"


class Timings(BaseModel):
    lm_s: float = 0.0
    lm_tokens: int = Field(0, description="Tokens the 5 Hz LM generated for this job")
    generate_s: float = 0.0
    encode_s: float = 0.0
    upload_s: float = 0.0
    total_s: float = 0.0


class GenerateResponse(BaseModel):
    audios: list[AudioOut]
    prompt: str
    lyrics: str
    metas: Metas
    dit_model: str
    lm_model: str | None = None
    warnings: list[str] = Field(default_factory=list)
    timings: Timings


class ModelInfo(BaseModel):
    name: str
    is_default: bool
    is_loaded: bool
    task_types: list[str]
    supports_audio_codes: bool = Field(True, description="False for checkpoints without an audio tokenizer: "
                                                         "thinking then plans metadata only")


class LmModelInfo(BaseModel):
    name: str
    is_loaded: bool


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    default_model: str
    lm_models: list[LmModelInfo] = Field(default_factory=list)


class FormatInputResponse(BaseModel):
    """What ``format_input`` returns: the rewritten caption and lyrics and the completed metadata."""

    caption: str
    lyrics: str
    bpm: int | None = None
    key_scale: str = ""
    time_signature: str = ""
    duration: float | None = None
    vocal_language: str = "unknown"


class ErrorResponse(BaseModel):
    error: str
