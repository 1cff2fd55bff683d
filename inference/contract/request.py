"""The canonical request models, their rules, and the entry points that validate a job's input.

The RunPod handler validates a job's ``input`` with ``parse_generate_request``; the HTTP shim uses the same
function and models, so both speak exactly the same contract. Rules that depend on the deployment (longest
song, largest batch, steps on turbo, tasks that need a base model) come in through ``Limits`` as validation
context. Unknown keys are ignored and reported in ``GenerateRequest.warnings``. No torch import here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from inference.contract.audio_codes import (
    CODES_PER_SECOND,
    MAX_CODE_STRING_CHARS,
    NO_AUDIO_TOKENIZER,
    codes_duration,
    parse_audio_codes,
)
from inference.contract.audio_header import check_audio_header, decode_base64
from inference.contract.lora import LORA_MAX_ADAPTERS, LoraRef, as_list
from inference.contract.messages import clip, describe_validation_error
from inference.contract.normalise import is_unset, merge_sources
from inference.contract.vocabulary import (
    AUDIO_FORMATS,
    AUDIO_INPUT_FIELDS,
    AUDIO_URL_FIELDS,
    BASE_MODEL_TASKS,
    CONTENT_TYPES,
    INSTRUMENTAL_LYRICS,
    MAX_AUDIO_INPUT_BYTES,
    MAX_BATCH_SIZE,
    MAX_DURATION_S,
    MAX_INSTRUCTION_CHARS,
    MAX_LYRICS_CHARS,
    MAX_PROMPT_CHARS,
    MAX_STEPS,
    MAX_STEPS_TURBO,
    MAX_URL_CHARS,
    MIN_DURATION_S,
    NOT_PRODUCED_FORMATS,
    SAMPLE_FROM_NOTHING,
    SEED_MAX,
    SOURCE_AUDIO_TASKS,
    TRACK_NAMES,
    TIME_SIGNATURE_FORMS,
    VALID_KEYSCALES,
    VALID_LANGUAGES,
    VALID_TIME_SIGNATURES,
)
from inference.errors import InputError, UnsupportedError


# "C major", "F# minor", "Am", "C#m", "Bb", "Ebmaj", "g minor": a note, an accidental, the mode (major if none)
_KEY_FORM = re.compile(r"^([A-Ga-g])([#b♯♭]?)\s*(major|minor|maj|min|M|m)?$", re.IGNORECASE)


class Limits(BaseModel):
    """What the loaded deployment allows; passed to validation as context. ``ANY_DEPLOYMENT`` is what some
    deployment allows (the shim's rule before it has heard from its endpoint's workers)."""

    model_config = ConfigDict(frozen=True)

    max_duration_s: float = MAX_DURATION_S
    max_batch_size: int = MAX_BATCH_SIZE
    is_turbo: bool = True
    dit_model: str | None = Field("acestep-v15-turbo", description="The DiT served; None = not known here.")
    supports_audio_codes: bool = Field(True, description="The checkpoint has the audio tokenizer codes need.")

    @property
    def max_steps(self) -> int:
        return MAX_STEPS_TURBO if self.is_turbo else MAX_STEPS


class SongFields(BaseModel):
    """The fields that describe a song, shared by generation and ``format_input``, with their rules."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)

    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="Style caption (alias: caption).")
    lyrics: str = Field("", max_length=MAX_LYRICS_CHARS,
                        description='Lyrics with [Verse]/[Chorus] tags; "", [inst] or [instrumental] = instrumental.')
    audio_duration: float | None = Field(
        None, ge=MIN_DURATION_S, le=MAX_DURATION_S, json_schema_extra={"unit": "seconds"},
        description="Seconds of audio (aliases: duration, target_duration); unset = the LM's plan, else 60. A "
                    "repaint, cover, extract, lego or complete is as long as its source.")
    bpm: int | None = Field(None, ge=30, le=300, description="Beats per minute; unset = model's choice.")
    key_scale: str = Field("", description='Key, e.g. "C major", "F# minor" (aliases: keyscale, key).')
    time_signature: str = Field("", description='"2", "3", "4" or "6" (also "4/4" etc.; alias: timesignature).')
    vocal_language: str = Field("en", description="ISO code of the lyrics' language or 'unknown' (alias: language).")

    @field_validator("bpm", "audio_duration", mode="before")
    @classmethod
    def _unset_numbers(cls, value):
        if is_unset(value):
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            return None  # upstream's "auto": -1 or 0
        return value

    @field_validator("key_scale", mode="before")
    @classmethod
    def _key_scale(cls, value):
        if is_unset(value):
            return ""
        if not isinstance(value, str):
            raise ValueError(f"must be a key such as 'C major' or 'F# minor' (got {clip(value)})")
        match = _KEY_FORM.match(value.strip())
        if match:
            note, accidental, mode = match.groups()
            minor = mode is not None and (mode == "m" or mode.lower().startswith("min"))
            candidate = f"{note.upper()}{accidental} {'minor' if minor else 'major'}"
            if candidate in VALID_KEYSCALES:
                return candidate
        raise ValueError(f"must be a note A-G with an optional # or b and major or minor, e.g. 'F# minor', 'Am' or "
                         f"'Bb' (got {clip(value)})")

    @field_validator("time_signature", mode="before")
    @classmethod
    def _time_signature(cls, value):
        if is_unset(value):
            return ""
        if isinstance(value, str):
            text = value.strip()
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**6:
            text = str(value)
        else:
            text = None
        text = TIME_SIGNATURE_FORMS.get(text, text)
        if text in VALID_TIME_SIGNATURES:
            return text
        raise ValueError(f"must be one of 2, 3, 4, 6 (or 2/4, 3/4, 4/4, 6/8) (got {clip(value)})")

    @field_validator("vocal_language", mode="before")
    @classmethod
    def _language(cls, value):
        if is_unset(value):
            return "unknown"
        if isinstance(value, str) and value.strip().lower() in VALID_LANGUAGES:
            return value.strip().lower()
        raise ValueError(f"must be one of {', '.join(VALID_LANGUAGES)} (got {clip(value)})")


class GenerateRequest(SongFields):
    """One generation request, in canonical names (aliases in ``ALIASES``)."""

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
                              description="The LM writes caption, lyrics and metas from this (aliases: description, "
                                          "desc).")
    sample_mode: bool = Field(False, description="The LM writes the whole song; with no sample_query, from nothing.")
    model: str | None = Field(None, description="The DiT to use by name (aliases: model_name, dit_model); this "
                                                "worker serves one, and any other name is refused.")
    lm_temperature: float = Field(0.85, ge=0.0, le=2.0, description="Sampling temperature of the 5 Hz LM.")
    lm_cfg_scale: float = Field(2.5, ge=1.0, le=10.0, description="Classifier-free guidance of the LM; 1 = off.")
    lm_top_p: float = Field(0.9, gt=0.0, le=1.0, description="Nucleus sampling of the LM; 1 = off.")
    lm_top_k: int | None = Field(None, ge=1, le=1000, description="Top-k sampling of the LM; unset or 0 = off.")
    lm_negative_prompt: str = Field("NO USER INPUT", max_length=MAX_PROMPT_CHARS,
                                    description="The caption of the LM's unconditional branch (with lm_cfg_scale).")
    lm_repetition_penalty: float = Field(1.0, ge=0.5, le=2.0,
                                         description="The LM's penalty on tokens it already wrote (HF's rule: "
                                                     "positive logits divided, negative multiplied); 1 = off.")
    use_cot_caption: bool = Field(True, description="With thinking, the LM writes a caption and the DiT renders it "
                                                    "(alias: cot_caption); false = the caller's caption as given.")
    use_cot_language: bool = Field(True, description="The LM plans the vocal language when none is given (alias: "
                                                     "cot_language); false = the caller's (default en).")
    constrained_decoding: bool = Field(True, description="The LM's plan is held to valid values and its codes to "
                                                         "the song's length (alias: constrained); false = free "
                                                         "decoding, its values checked afterwards.")
    audio_code_string: str | None = Field(
        None, max_length=MAX_CODE_STRING_CHARS,
        description="Audio codes to render ('<|audio_code_N|>' tokens, 5 a second, as a thinking run writes them; "
                    "alias: audio_codes): the song is as long as the codes and the LM writes none. text2music and "
                    "cover (in place of a source audio).")
    task_type: Literal["text2music", "repaint", "cover", "extract", "lego", "complete"] = Field(
        "text2music", description="What to make; all but text2music need src_audio; extract, lego and complete need a "
                                  "base or sft model.")
    src_audio_url: str | None = Field(None, description="Source audio by URL: http(s) on a public address, or "
                                                        "s3://bucket/key with the job's bucket credentials.")
    src_audio_base64: str | None = Field(None, description="Source audio file (wav/flac/mp3/ogg) as base64; or upload "
                                                           "it as src_audio / ctx_audio.")
    reference_audio_url: str | None = Field(None, description="Reference audio by URL, as src_audio_url.")
    reference_audio_base64: str | None = Field(None, description="Timbre reference audio file as base64; or upload "
                                                                 "it as ref_audio / reference_audio.")
    repainting_start: float = Field(0.0, ge=-MAX_DURATION_S, le=MAX_DURATION_S, json_schema_extra={"unit": "seconds"},
                                    description="Start of the repainted span (task_type repaint); below 0 extends "
                                                "the song at its front (outpainting).")
    repainting_end: float = Field(-1.0, ge=-1.0, le=MAX_DURATION_S, json_schema_extra={"unit": "seconds"},
                                  description="End of the repainted span in seconds; -1 = the end; past the "
                                              "source's end extends the song (outpainting).")
    instruction: str | None = Field(None, max_length=MAX_INSTRUCTION_CHARS,
                                    description="The DiT's task instruction; unset = the task's own (the pipeline's "
                                                "templates, with track_name / track_classes).")
    track_name: str | None = Field(None, description=f"The stem for extract and lego: one of {', '.join(TRACK_NAMES)}.")
    track_classes: list[str] | None = Field(None, max_length=len(TRACK_NAMES),
                                            description="The stems complete adds (alias: instruments); a string is "
                                                        "one stem.")
    cfg_interval_start: float = Field(0.0, ge=0.0, le=1.0, description="Guidance applies while the timestep t "
                                                                       "(1 at the first step, towards 0) is at "
                                                                       "least this, as upstream (base models).")
    cfg_interval_end: float = Field(1.0, ge=0.0, le=1.0, description="Guidance applies while t is at most this "
                                                                     "(see cfg_interval_start).")
    timesteps: list[float] | None = Field(None, description="A custom schedule in [0, 1], from high to low (a list "
                                                            "or \"0.97,0.76,...\"); overrides inference_steps and "
                                                            "shift.")
    audio_cover_strength: float = Field(1.0, ge=0.0, le=1.0, description="The share of a cover's steps that follow "
                                                                         "its source; the rest follow the caption "
                                                                         "alone, as upstream (alias: cover_strength).")
    repaint_mode: Literal["conservative", "balanced", "aggressive"] = Field(
        "balanced", description="How much of the source a repaint keeps outside its span: conservative (all of "
                                "it), balanced (by repaint_strength) or aggressive (only what the model keeps).")
    repaint_strength: float = Field(0.5, ge=0.0, le=1.0, description="Balanced repaint: 0 keeps the source like "
                                                                     "conservative, 1 like aggressive but spliced.")
    chunk_mask_mode: Literal["auto", "explicit"] = Field(
        "auto", description="What a repaint or lego tells the DiT of its span: auto (upstream's default: the whole "
                            "song may change, the span still decides what is kept) or explicit (the span's mask).")
    repaint_latent_crossfade_frames: int | None = Field(
        None, ge=0, le=250, description="Latent frames (25 a second) of crossfade at the span's edges; unset = the "
                                        "mode's (upstream accepts this and ignores it).")
    repaint_wav_crossfade_sec: float | None = Field(
        None, ge=0.0, le=10.0, json_schema_extra={"unit": "seconds"},
        description="Crossfade of the source spliced back after decoding; unset = the mode's (upstream accepts "
                    "this and ignores it).")
    dcw_enabled: bool | None = Field(None, description="Upstream's wavelet correction of every sampler step; unset = "
                                                       "on for turbo models, off for base/sft, as upstream.")
    dcw_mode: Literal["low", "high", "double", "pix"] = Field(
        "double", description="Which band DCW corrects: low, high, double (both) or pix (no wavelet).")
    dcw_scaler: float = Field(0.05, ge=0.0, le=1.0, description="DCW's strength in the low band (or the only one).")
    dcw_high_scaler: float = Field(0.02, ge=0.0, le=1.0, description="DCW's strength in the high band (double).")
    dcw_wavelet: Literal["haar"] = Field("haar", description="DCW's wavelet: haar, upstream's default, is the one "
                                                             "this worker has.")
    lora: list[LoraRef] = Field(
        default_factory=list, max_length=LORA_MAX_ADAPTERS,
        description="LoRA adapters to render with: one or a list of {name | path | url, scale (0-2, default 1)}; "
                    "a bare string is a name under ACESTEP_LORA_DIR. Safetensors files only.")
    audio_format: Literal["mp3", "wav", "wav32", "flac", "ogg", "opus"] = Field(
        "mp3", description="mp3, wav (16-bit), wav32 (32-bit float), flac, ogg (Vorbis) or opus.")
    mp3_bitrate: int = Field(192, ge=32, le=320, json_schema_extra={"unit": "kbps"},
                             description="Constant bitrate of mp3 output.")

    _warnings: list[str] = PrivateAttr(default_factory=list)
    _audio_bytes: dict[str, bytes] = PrivateAttr(default_factory=dict)

    # --- field rules ---------------------------------------------------------------------------
    @field_validator("lora", mode="before")
    @classmethod
    def _lora_list(cls, value):
        return as_list(value)

    @field_validator("lm_top_k", mode="before")
    @classmethod
    def _unset_top_k(cls, value):
        if is_unset(value) or (isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0):
            return None  # upstream: 0 or less = off
        return value

    @field_validator("repainting_end", mode="before")
    @classmethod
    def _repaint_to_the_end(cls, value):
        return -1.0 if value is None or (isinstance(value, (int, float)) and value == 0) else value  # upstream: 0 = end

    @field_validator("audio_code_string", mode="after")
    @classmethod
    def _codes(cls, value):
        if value is None or not value.strip():
            return None
        parse_audio_codes(value)
        return value.strip()

    @field_validator("instruction", "track_name", "model", mode="before")
    @classmethod
    def _unset_text(cls, value):
        return None if is_unset(value) else value

    @field_validator("track_name", mode="after")
    @classmethod
    def _track_name(cls, value):
        if value is None:
            return None
        name = value.strip().lower().replace(" ", "_")
        if name not in TRACK_NAMES:
            raise ValueError(f"must be one of {', '.join(TRACK_NAMES)} (got {clip(value)})")
        return name

    @field_validator("track_classes", mode="before")
    @classmethod
    def _one_class(cls, value):
        if is_unset(value):
            return None
        return [value] if isinstance(value, str) else value  # upstream: a string is one class

    @field_validator("track_classes", mode="after")
    @classmethod
    def _classes(cls, value):
        if value is not None and any(not name.strip() or len(name) > 64 for name in value):
            raise ValueError("must be stem names of 1 to 64 characters")
        return value

    @field_validator("timesteps", mode="before")
    @classmethod
    def _schedule(cls, value):
        if is_unset(value):
            return None
        if isinstance(value, str):
            try:
                value = [float(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise ValueError(f"must be numbers in [0, 1] like '0.97,0.76,0.4' (got {clip(value)})") from None
        return value

    @field_validator("timesteps", mode="after")
    @classmethod
    def _schedule_rules(cls, value):
        if value is None:
            return None
        if not 1 <= len(value) <= MAX_STEPS or any(not 0.0 <= t <= 1.0 for t in value):
            raise ValueError(f"must be 1 to {MAX_STEPS} numbers in [0, 1]")
        if any(later >= earlier for earlier, later in zip(value, value[1:])):
            raise ValueError("must go from high to low, each step below the one before")
        return value

    @field_validator("task_type", mode="before")
    @classmethod
    def _task_alias(cls, value):
        return "cover" if isinstance(value, str) and value.strip().lower() == "cover-nofsq" else value

    @field_validator("audio_format", mode="before")
    @classmethod
    def _lower_format(cls, value):
        if not isinstance(value, str):
            return value
        text = value.strip().lower().lstrip(".")
        if text in NOT_PRODUCED_FORMATS:
            raise ValueError(f"'{text}' is not produced by this worker; choose one of {', '.join(AUDIO_FORMATS)}")
        return text

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
                    f"must be an integer or comma-separated integers like '12,34' (got {clip(value)})") from None
        elif isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            items = list(value)
        else:
            raise ValueError(f"must be an integer, a list of integers or a string like '12,34' (got {clip(value)})")
        if len(items) > 1 and -1 in items:
            raise ValueError("-1 (random) cannot be mixed with explicit seeds")
        for item in items:
            if not (item == -1 or 0 <= item <= SEED_MAX):
                raise ValueError(f"must be -1 (random) or between 0 and {SEED_MAX} (got {clip(item)})")
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
        if value is None or not value.strip():
            return None
        value = value.strip()
        if len(value) > MAX_URL_CHARS:
            raise ValueError(f"must be at most {MAX_URL_CHARS} characters")
        if value.split("://", 1)[0].lower() not in ("http", "https", "s3") or "://" not in value:
            raise ValueError(f"must be an http://, https:// or s3:// URL (got {clip(value)})")
        return value

    # --- cross-field rules: the one place for them ---------------------------------------------
    @model_validator(mode="after")
    def _cross_fields(self, info: ValidationInfo):
        for name in AUDIO_INPUT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                try:
                    self._audio_bytes[name] = decode_base64(value)
                except ValueError as err:
                    raise ValueError(f"{name} {err}") from None
        if self.sample_mode and not self.sample_query.strip():
            self.sample_query = SAMPLE_FROM_NOTHING  # upstream's query when the LM writes a song unprompted
        if not (self.prompt.strip() or self.lyrics.strip() or self.sample_query.strip()):
            raise ValueError("the request is empty: give a prompt (caption), lyrics or a sample_query")
        if self.cfg_interval_start > self.cfg_interval_end:
            raise ValueError(f"cfg_interval_start must be at most cfg_interval_end ({self.cfg_interval_end:g}) (got "
                             f"{self.cfg_interval_start:g})")
        for url_field, file_field in AUDIO_URL_FIELDS.items():
            if getattr(self, url_field) and getattr(self, file_field):
                raise ValueError(f"give {file_field} or {url_field}, not both")
        if self.audio_code_string is not None:
            self._take_codes()
        if self.task_type in SOURCE_AUDIO_TASKS and not (self.src_audio_base64 or self.src_audio_url) and \
                not (self.task_type == "cover" and self.audio_code_string):
            raise ValueError(f"task_type '{self.task_type}' needs source audio: give src_audio_base64 (or upload "
                             f"src_audio) or src_audio_url")
        if self.task_type == "repaint" and self.repainting_end != -1 and self.repainting_end <= self.repainting_start:
            raise ValueError(f"repainting_end must be -1 (the end) or greater than repainting_start "
                             f"({self.repainting_start}) (got {self.repainting_end})")
        limits = info.context.get("limits") if isinstance(info.context, dict) else None
        if isinstance(limits, Limits):
            self._check_limits(limits)
        for name, data in self._audio_bytes.items():  # last: it reads the files' headers
            check_audio_header(data, name)
        return self

    def _take_codes(self) -> None:
        """Given codes decide the song's length (five a second), as upstream reads them."""
        if self.task_type not in ("text2music", "cover"):
            raise ValueError(f"audio_code_string works with task_type text2music or cover (got '{self.task_type}')")
        if self.src_audio_base64 or self.src_audio_url:
            raise ValueError("give audio_code_string or a source audio for a cover, not both")
        seconds = codes_duration(parse_audio_codes(self.audio_code_string))
        if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
            raise ValueError(_codes_range(MAX_DURATION_S, seconds))
        if self.audio_duration is not None and abs(self.audio_duration - seconds) > 0.2:
            self._warnings.append(f"audio_duration {self.audio_duration:g} was replaced by the length of the "
                                  f"audio codes ({seconds:g} s)")
        self.audio_duration = seconds

    def _check_limits(self, limits: Limits) -> None:
        if self.audio_code_string is not None and not limits.supports_audio_codes:
            raise UnsupportedError(NO_AUDIO_TOKENIZER)
        if self.audio_code_string is not None and self.audio_duration > limits.max_duration_s:
            raise UnsupportedError(_codes_range(limits.max_duration_s, self.audio_duration, " on this GPU"))
        replaced_by_source = self.task_type in SOURCE_AUDIO_TASKS and self.audio_code_string is None
        if self.audio_duration is not None and self.audio_duration > limits.max_duration_s and not replaced_by_source:
            raise UnsupportedError(
                f"audio_duration must be between {MIN_DURATION_S:g} and {limits.max_duration_s:g} seconds on this "
                f"GPU (got {self.audio_duration:g})")
        if self.batch_size > limits.max_batch_size:
            raise UnsupportedError(f"batch_size must be between 1 and {limits.max_batch_size} on this GPU "
                                   f"(got {self.batch_size})")
        if self.timesteps is not None and len(self.timesteps) > limits.max_steps:
            raise UnsupportedError(f"timesteps must have 1 to {limits.max_steps} steps on "
                                   f"{'turbo' if limits.is_turbo else 'base/sft'} models (got {len(self.timesteps)})")
        if self.inference_steps > limits.max_steps:
            raise UnsupportedError(f"inference_steps must be between 1 and {limits.max_steps} on "
                                   f"{'turbo' if limits.is_turbo else 'base/sft'} models (got {self.inference_steps})")
        if self.model is not None and limits.dit_model is not None and self.model != limits.dit_model:
            raise UnsupportedError(f"model must be '{limits.dit_model}', the DiT this worker serves (got "
                                   f"{clip(self.model)})")
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

    def set_audio_input(self, field: Literal["src_audio_base64", "reference_audio_base64"], data: bytes) -> None:
        """An audio input fetched from its URL (``inference.audio_fetch``), held like an uploaded one."""
        self._audio_bytes[field] = data

    @property
    def audio_input_bytes(self) -> int:
        """Bytes of the audio files this request brings (decoded from base64)."""
        return sum(len(data) for data in self._audio_bytes.values())


def _codes_range(longest_s: float, seconds: float, where: str = "") -> str:
    return (f"audio_code_string must hold {MIN_DURATION_S * CODES_PER_SECOND:g} to "
            f"{longest_s * CODES_PER_SECOND:g} codes{where} ({MIN_DURATION_S:g}-{longest_s:g} s, {CODES_PER_SECOND} a "
            f"second) (got {seconds * CODES_PER_SECOND:g})")


_FIELD_NAMES = frozenset(GenerateRequest.model_fields)


def parse_generate_request(data: Any, limits: Limits | None = None) -> GenerateRequest:
    """Validate a job input; raises ``InputError``/``UnsupportedError`` with one line naming the field."""
    if data is None or (isinstance(data, Mapping) and not data):
        raise InputError("input is empty: give a prompt (caption), lyrics or a sample_query")
    if not isinstance(data, Mapping):
        raise InputError(f"input must be a JSON object, got {type(data).__name__}")
    fields, unknown, unsupported = merge_sources(data, _FIELD_NAMES)
    try:
        request = GenerateRequest.model_validate(fields, context={"limits": limits})
    except ValidationError as err:
        raise InputError(describe_validation_error(err, GenerateRequest)) from None
    if unsupported:
        request._warnings.append(f"not supported by this worker, ignored: {', '.join(sorted(set(unsupported)))}")
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
    fields, _, _ = merge_sources(data, frozenset(FormatInputRequest.model_fields))
    try:
        return FormatInputRequest.model_validate(fields)
    except ValidationError as err:
        raise InputError(describe_validation_error(err, FormatInputRequest)) from None


ANY_DEPLOYMENT = Limits(is_turbo=False, dit_model=None)  # the widest rules: a base model, the contract's limits
