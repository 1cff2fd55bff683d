"""What the worker answers: a generation's audios and report, the models it serves, ``format_input``'s result."""

from __future__ import annotations

from pydantic import BaseModel, Field, model_serializer

from inference.contract.request import Limits


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
    limits: Limits | None = Field(None, description="What this worker allows (its GPU tier, turbo or base), so a "
                                                     "shim in front of it can check requests before they cost a job")
    audio_codes: str | None = Field(None, description="The audio codes the 5 Hz LM wrote (thinking), shared by the "
                                                      "job's songs: send them back as audio_code_string to render "
                                                      "them again without the LM")


class ModelInfo(BaseModel):
    name: str
    is_default: bool
    is_loaded: bool
    task_types: list[str]
    supported_task_types: list[str] = Field(default_factory=list, description="Upstream's name for task_types.")
    supports_audio_codes: bool = Field(True, description="False for checkpoints without an audio tokenizer: "
                                                         "thinking then plans metadata only")


class LmModelInfo(BaseModel):
    name: str
    is_loaded: bool


class LoraInfo(BaseModel):
    """A LoRA adapter a request can name (``lora``: its ``name``), from the worker's ACESTEP_LORA_DIR."""

    name: str
    layout: str = Field(description="file (<name>.safetensors), diffusers (save_lora_weights' folder) or ace-step "
                                    "(the trainer's adapter folder)")
    bytes: int


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    default_model: str
    lm_models: list[LmModelInfo] = Field(default_factory=list)
    loaded_lm_model: str | None = None
    llm_initialized: bool = False
    lora_adapters: list[LoraInfo] = Field(default_factory=list, description="Adapters under ACESTEP_LORA_DIR.")


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
