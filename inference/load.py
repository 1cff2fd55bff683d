"""Cold start: the DiT checkpoint folder (diffusers layout) to a ready ``AceStepPipeline``.

Checks the folder before loading (so a missing or unconverted checkpoint gives one clear message, not a
stack trace), loads with local files only on the chosen device and dtype, refuses weights that diffusers
would only warn about (missing or unused keys, an all-zero silence latent), runs a short warm-up
generation (two, batch 1 and 2, when torch.compile is on) and reports what it loaded and how long each part took.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from inference.attention import apply_backend, choose_backend
from inference.compile import CompileReport, after_warm_up, compile_pipeline
from inference.errors import CheckpointError
from inference.manifest import check_manifest
from inference.hardware import allow_tf32, effective_limits, pick_device, pick_dtype, tier_for
from inference.contract import Limits
from inference.settings import Settings
from inference.vae_decode import ChunkPlan, chunk_plan_for, decode_latents, fold_weight_norm

log = logging.getLogger("acestep.load")

# The marker the tiny-checkpoint maker leaves in a folder of random weights.
RANDOM_WEIGHTS_MARKER = "RANDOM_WEIGHTS.txt"
REQUIRED_COMPONENTS = ("transformer", "condition_encoder", "vae", "text_encoder", "tokenizer", "scheduler")
HOW_TO_GET = (
    "bake checkpoints into the image with builder/ (python -m builder.fetch_checkpoints, then "
    "python -m builder.convert for the original ACE-Step layout), or run `make demo` for a tiny random one"
)


@dataclass
class LoadReport:
    dit_model: str
    device: str
    dtype: str
    tier: str
    parameters_m: float
    load_s: float
    warmup_s: float
    random_weights: bool
    components: list[str] = field(default_factory=list)
    vae_dtype: str = "float32"
    attention: str = "native"
    compiled: CompileReport = field(default_factory=lambda: CompileReport(enabled=False))

    def summary(self) -> str:
        weights = "RANDOM WEIGHTS (demo only)" if self.random_weights else f"{self.parameters_m:.1f}M parameters"
        compiled = "off"
        if self.compiled.enabled:
            cache = "cache loaded" if self.compiled.cache_loaded else (
                "cache written" if self.compiled.cache_saved else "no cache")
            compiled = f"on ({cache})"
        return (f"loaded {self.dit_model} on {self.device} ({self.dtype}, VAE {self.vae_dtype}, tier {self.tier}, "
                f"attention {self.attention}, compile {compiled}): {weights}; "
                f"load {self.load_s:.2f} s, warm-up {self.warmup_s:.2f} s")


@dataclass
class LoadedPipeline:
    """Everything a request needs from the cold start."""

    pipe: object  # diffusers.AceStepPipeline
    device: torch.device
    dtype: torch.dtype
    dit_model: str
    is_turbo: bool
    supports_audio_codes: bool
    random_weights: bool
    limits: Limits
    report: LoadReport
    vae_plan: ChunkPlan = field(default_factory=ChunkPlan)

    @property
    def sample_rate(self) -> int:
        return int(self.pipe.sample_rate)

    @property
    def task_types(self) -> list[str]:
        from inference.model_catalog import task_types

        return task_types(self.is_turbo)


def check_checkpoint_folder(path: Path) -> None:
    """Fail with one clear message unless ``path`` holds an AceStepPipeline in diffusers layout."""
    if not path.is_dir():
        raise CheckpointError(f"no DiT checkpoint folder at {path} (ACESTEP_CHECKPOINT_DIR/ACESTEP_DIT_MODEL or "
                              f"ACESTEP_CONFIG_PATH); {HOW_TO_GET}")
    index = path / "model_index.json"
    if not index.is_file():
        if (path / "model.safetensors").is_file() or (path / "model.safetensors.index.json").is_file():
            raise CheckpointError(f"{path} is in the original ACE-Step layout, not the diffusers layout this worker "
                                  f"loads; convert it with python -m builder.convert")
        raise CheckpointError(f"{path} has no model_index.json, so it is not a diffusers pipeline; {HOW_TO_GET}")
    try:
        class_name = json.loads(index.read_text()).get("_class_name")
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{index} is not readable JSON ({err}); rebuild the checkpoint: {HOW_TO_GET}") from None
    if class_name != "AceStepPipeline":
        raise CheckpointError(f"{index} describes a {class_name}, not an AceStepPipeline")
    missing = [name for name in REQUIRED_COMPONENTS if not (path / name).is_dir()]
    if missing:
        raise CheckpointError(f"{path} lacks the component folder(s) {', '.join(missing)}; rebuild it: {HOW_TO_GET}")


class _LoadWarnings(logging.Handler):
    """Collects diffusers' 'weights not initialized / not used' warnings, which should be errors here."""

    PATTERNS = ("were not initialized from the model checkpoint", "were not used when initializing")

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if any(p in message for p in self.PATTERNS):
            self.problems.append(message.splitlines()[0])


@contextmanager
def _strict_weights():
    from diffusers.utils import logging as diffusers_logging

    handler = _LoadWarnings()
    logger = diffusers_logging.get_logger("diffusers")
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:  # someone silenced diffusers: these warnings still count
        logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _quiet_progress_bars() -> None:
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()


def _from_pretrained(path: Path, dtype: torch.dtype):
    from diffusers import AceStepPipeline

    with _strict_weights() as weights:
        try:
            pipe = AceStepPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError, json.JSONDecodeError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"could not load the checkpoint at {path}: {first}; {HOW_TO_GET}") from err
    if weights.problems:
        raise CheckpointError(f"the checkpoint at {path} does not match the model: {weights.problems[0]}; "
                              f"rebuild it with builder/")
    _check_silence(pipe, f"the checkpoint at {path}")
    return pipe


def _built(build: Callable[[torch.dtype], Any], dtype: torch.dtype):
    """A pipeline made by ``build`` (the original layout converted in memory, ``inference.model_cache``)."""
    pipe = build(dtype)
    _check_silence(pipe, "the cached checkpoint")
    return pipe


def _check_silence(pipe, what: str) -> None:
    silence = getattr(pipe.condition_encoder, "silence_latent", None)
    if silence is None or not bool(torch.count_nonzero(silence)):
        raise CheckpointError(f"{what} has an all-zero condition_encoder.silence_latent "
                              f"(converted without silence_latent.pt), which makes drone audio; reconvert it")


def warm_up(loaded: LoadedPipeline, durations: tuple[float, ...] = (10.0,)) -> float:
    """Short generations so the first job does not pay for lazy initialisation; with torch.compile, each
    duration at batch 1 and at batch 2, as each batch gets its own graph."""
    started = time.perf_counter()
    batches = (1, 2) if loaded.report.compiled.enabled else (1,)
    with torch.inference_mode():
        for duration, batch in ((d, b) for d in durations for b in batches):
            latents = loaded.pipe(prompt=["warm-up"] * batch, lyrics=["[inst]"] * batch,
                                  audio_duration=min(duration, loaded.limits.max_duration_s),
                                  num_inference_steps=2, guidance_scale=1.0, output_type="latent",
                                  generator=[torch.Generator(device="cpu").manual_seed(i) for i in range(batch)]
                                  ).audios
            decode_latents(loaded.pipe.vae, latents, loaded.vae_plan)
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def load_pipeline(settings: Settings, build: Callable[[torch.dtype], Any] | None = None) -> LoadedPipeline:
    """Checkpoint folder (or, with ``build``, a pipeline it makes for a dtype) to a ready pipeline; raises
    ``CheckpointError`` with one clear line."""
    path = settings.dit_path
    if build is None:
        check_checkpoint_folder(path)
        checked = check_manifest(path)  # sizes only: a second, not minutes of hashing
        if checked:
            log.info("%d checkpoint files match the build manifest", checked)
    device = pick_device(settings.device)
    dtype = pick_dtype(settings.dtype, device)
    allow_tf32(device)
    import diffusers  # noqa: F401  (imported before the clock starts: load_s measures loading, not imports)

    _quiet_progress_bars()
    started = time.perf_counter()
    pipe = _from_pretrained(path, dtype) if build is None else _built(build, dtype)
    pipe.to(device)
    vae_dtype = pick_dtype(settings.vae_dtype, device) if settings.vae_dtype != "auto" else dtype
    if pipe.vae.dtype != vae_dtype:
        pipe.vae.to(dtype=vae_dtype)
    fold_weight_norm(pipe.vae)
    pipe.set_progress_bar_config(disable=True)
    attention = apply_backend(pipe.transformer, choose_backend(settings.attention_backend, device))
    compiled = compile_pipeline(pipe, settings, device)
    load_s = time.perf_counter() - started

    is_turbo = bool(pipe.is_turbo)
    max_duration, max_batch = effective_limits(settings, device)
    random_weights = (path / RANDOM_WEIGHTS_MARKER).is_file()
    parameters = sum(p.numel() for name in ("transformer", "condition_encoder", "text_encoder", "vae")
                     for p in getattr(pipe, name).parameters())
    supports_codes = pipe.audio_tokenizer is not None and pipe.audio_token_detokenizer is not None
    loaded = LoadedPipeline(
        pipe=pipe, device=device, dtype=dtype, dit_model=settings.dit_name, is_turbo=is_turbo,
        supports_audio_codes=supports_codes, random_weights=random_weights,
        limits=Limits(max_duration_s=max_duration, max_batch_size=max_batch, is_turbo=is_turbo,
                      dit_model=settings.dit_name, supports_audio_codes=supports_codes),
        report=LoadReport(dit_model=settings.dit_name, device=str(device), dtype=str(dtype).removeprefix("torch."),
                          tier=tier_for(device).name, parameters_m=parameters / 1e6, load_s=load_s, warmup_s=0.0,
                          random_weights=random_weights,
                          components=[k for k, v in pipe.components.items() if v is not None],
                          vae_dtype=str(vae_dtype).removeprefix("torch."), attention=attention, compiled=compiled),
        vae_plan=chunk_plan_for(settings.vae_chunk_s, float(pipe.latents_per_second)),
    )
    if settings.warmup:
        loaded.report.warmup_s = warm_up(loaded)
        after_warm_up(compiled)
    if random_weights:
        log.warning("!" * 78)
        log.warning("THE CHECKPOINT AT %s HAS RANDOM WEIGHTS: it exercises the real code path, "
                    "but its audio is noise. Bake real checkpoints with builder/.", path)
        log.warning("!" * 78)
    log.info(loaded.report.summary())
    return loaded
