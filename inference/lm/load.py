"""Loading the 5 Hz LM: ``ACESTEP_LM_MODEL_PATH``, else ``ACESTEP_CHECKPOINT_DIR/<ACESTEP_LM_MODEL>``, else the
GPU tier's default; ``none`` turns it off. Local files only, on the DiT's device and dtype.

A model the operator named explicitly must load (a clear error otherwise); the tier's default is optional:
when its folder is absent the worker serves without an LM and says so once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.errors import CheckpointError, one_line
from inference.hardware import pick_device, tier_for
from inference.lm.constraints import Vocabulary
from inference.lm.tokens import LmTokens, resolve_tokens
from inference.manifest import check_manifest
from inference.settings import Settings

log = logging.getLogger("acestep.lm")


@dataclass
class LoadedLM:
    model: object
    tokenizer: object
    tokens: LmTokens
    vocab: Vocabulary
    name: str
    device: torch.device
    random_weights: bool
    load_s: float


def lm_location(settings: Settings, device: torch.device) -> tuple[Path | None, bool]:
    """(folder, named explicitly by the operator); folder None = the LM is off."""
    if settings.lm_model_path:
        path = settings.lm_model_path
        return (path if path.is_absolute() else settings.checkpoint_dir / path), True
    if settings.lm_model and settings.lm_model.strip().lower() == "none":
        return None, True
    if settings.lm_model:
        return settings.checkpoint_dir / settings.lm_model, True
    return settings.checkpoint_dir / tier_for(device).lm_model, False


def wanted_lm(settings: Settings) -> str | None:
    """The LM's folder name the settings ask for (by name, or the GPU tier's), None when it is off."""
    if settings.lm_model and settings.lm_model.strip().lower() == "none":
        return None
    return settings.lm_model or tier_for(pick_device(settings.device)).lm_model


def load_lm(settings: Settings, device: torch.device, dtype: torch.dtype) -> LoadedLM | None:
    """The LM, or None when it is off; the tier's default LM failing to load (any error: a broken file, out of
    memory) leaves the worker serving without it, with one warning, instead of failing its cold start."""
    path, explicit = lm_location(settings, device)
    if explicit or path is None:
        return _load(settings, path, explicit, device, dtype)
    try:
        return _load(settings, path, explicit, device, dtype)
    except Exception as err:  # noqa: BLE001 - optional: the DiT serves on without it
        reason = one_line(str(err) if isinstance(err, CheckpointError) else f"{type(err).__name__}: {err}", 300)
    log.warning("the default 5 Hz LM failed to load, serving without it (thinking, use_format, sample_query and "
                "format_input are off): %s", reason)
    from inference.hardware import free_accelerator_memory

    free_accelerator_memory()  # after the except block, whose traceback held what was loaded
    return None


def _load(settings: Settings, path: Path | None, explicit: bool, device: torch.device,
          dtype: torch.dtype) -> LoadedLM | None:
    if path is None:
        log.info("the 5 Hz LM is off (ACESTEP_LM_MODEL=none)")
        return None
    if not (path / "config.json").is_file():
        if explicit:
            raise CheckpointError(f"no 5 Hz LM at {path} (ACESTEP_LM_MODEL / ACESTEP_LM_MODEL_PATH); bake it into "
                                  f"the image with builder/ (--lm), or set ACESTEP_LM_MODEL=none to serve without it")
        log.warning("no 5 Hz LM at %s (the default for this GPU): thinking, use_format, sample_query and "
                    "format_input are off", path)
        return None
    if settings.lm_backend == "vllm":
        log.warning("ACESTEP_LM_BACKEND=vllm is not available in this image; using transformers (pt)")
    check_manifest(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True).to(device).eval()
        tokens = resolve_tokens(tokenizer)
    except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: out of memory, a broken tensor file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"could not load the 5 Hz LM at {path}: {first}") from None
    if not tokens.code_ids:
        raise CheckpointError(f"the LM at {path} has no <|audio_code_N|> tokens: it is not a 5 Hz ACE-Step LM")
    size = model.get_output_embeddings().weight.shape[0]
    vocab = Vocabulary(tokenizer, tokens, size)
    load_s = time.perf_counter() - started
    from inference.load import RANDOM_WEIGHTS_MARKER

    loaded = LoadedLM(model=model, tokenizer=tokenizer, tokens=tokens, vocab=vocab, name=path.name, device=device,
                      random_weights=(path / RANDOM_WEIGHTS_MARKER).is_file(), load_s=load_s)
    log.info("5 Hz LM %s loaded in %.1f s (%d audio code tokens)%s", path.name, load_s, len(tokens.code_ids),
             " - RANDOM WEIGHTS" if loaded.random_weights else "")
    return loaded
