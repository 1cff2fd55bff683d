"""The contract every adapter speaks, declared once: the RunPod handler's job input and the HTTP shim's bodies.

- ``normalise``: any form a client sends (aliases, metadata containers) to canonical field names;
- ``request``: the canonical, strict request models and their rules (``parse_generate_request``);
- ``audio_header``: audio inputs decoded from base64 and checked from their header;
- ``messages``: one-line refusals naming the field and what is allowed;
- ``responses``: what the worker answers;
- ``vocabulary``: the allowed values and the limits every deployment shares.
"""

from inference.contract.audio_header import check_audio_header, decode_base64, unreadable_audio
from inference.contract.messages import describe_validation_error
from inference.contract.normalise import ALIASES, ENVELOPE_KEYS, merge_sources
from inference.contract.request import (
    ANY_DEPLOYMENT,
    FormatInputRequest,
    GenerateRequest,
    Limits,
    SongFields,
    parse_format_input_request,
    parse_generate_request,
)
from inference.contract.responses import (
    AudioOut,
    ErrorResponse,
    FormatInputResponse,
    GenerateResponse,
    LmModelInfo,
    LoraInfo,
    Metas,
    ModelInfo,
    ModelsResponse,
    Timings,
)
from inference.contract.vocabulary import (
    AUDIO_FORMATS,
    AUDIO_INPUT_FIELDS,
    BASE_MODEL_TASKS,
    CONTENT_TYPES,
    DEFAULT_DURATION_S,
    MAX_DURATION_S,
    SEED_MAX,
    SOURCE_AUDIO_TASKS,
    TASK_TYPES,
    VALID_KEYSCALES,
    VALID_LANGUAGES,
    VALID_TIME_SIGNATURES,
)

__all__ = [
    "ANY_DEPLOYMENT", "ALIASES", "AUDIO_FORMATS", "AUDIO_INPUT_FIELDS", "BASE_MODEL_TASKS", "CONTENT_TYPES", "DEFAULT_DURATION_S",
    "ENVELOPE_KEYS", "MAX_DURATION_S", "SEED_MAX", "SOURCE_AUDIO_TASKS", "TASK_TYPES", "VALID_KEYSCALES",
    "VALID_LANGUAGES", "VALID_TIME_SIGNATURES", "AudioOut", "ErrorResponse", "FormatInputRequest",
    "FormatInputResponse", "GenerateRequest", "GenerateResponse", "Limits", "LmModelInfo", "LoraInfo", "Metas", "ModelInfo",
    "ModelsResponse", "SongFields", "Timings", "check_audio_header", "decode_base64", "describe_validation_error",
    "merge_sources", "parse_format_input_request", "parse_generate_request", "unreadable_audio",
]
