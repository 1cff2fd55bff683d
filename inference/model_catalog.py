"""What ``/v1/models`` and the ``models`` action say about a deployment, from the names of its models."""

from __future__ import annotations

from inference.contract import BASE_MODEL_TASKS, TASK_TYPES, LmModelInfo, ModelInfo, ModelsResponse


def is_turbo_name(dit_model: str) -> bool:
    """ACE-Step 1.5's checkpoint names say their kind: ``acestep-v15-turbo``, ``-base``, ``-sft``."""
    return "turbo" in dit_model.lower()


def task_types(is_turbo: bool) -> list[str]:
    return [t for t in TASK_TYPES if not (is_turbo and t in BASE_MODEL_TASKS)]


def describe_models(dit_model: str, lm_model: str | None, is_turbo: bool | None = None,
                    supports_audio_codes: bool = True) -> ModelsResponse:
    """The one DiT a worker serves (its default and loaded), and its 5 Hz LM when it has one. ``is_turbo``
    unknown (the shim, which has no checkpoint) = judged from the name."""
    turbo = is_turbo_name(dit_model) if is_turbo is None else is_turbo
    tasks = task_types(turbo)
    return ModelsResponse(
        models=[ModelInfo(name=dit_model, is_default=True, is_loaded=True, task_types=tasks,
                          supported_task_types=tasks, supports_audio_codes=supports_audio_codes)],
        default_model=dit_model, lm_models=[LmModelInfo(name=lm_model, is_loaded=True)] if lm_model else [],
        loaded_lm_model=lm_model, llm_initialized=lm_model is not None)
