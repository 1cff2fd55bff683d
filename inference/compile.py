"""``torch.compile`` of the DiT (``ACESTEP_COMPILE=dit``) and the VAE decoder (``all``), with a cache of the
compiled kernels that can be baked into the image.

The DiT is compiled region by region: its transformer blocks share one compiled graph (parameters are graph
inputs), so compiling costs one block, not 24. The VAE decoder is compiled whole (its Snake activations fuse
with their neighbours). Shapes are dynamic, so a new duration does not recompile; batch 1 and larger batches
get one graph each, both made during the warm-up.

The compiled kernels are kept with ``torch.compiler.save_cache_artifacts`` in one file
(``ACESTEP_COMPILE_CACHE``, by default next to the checkpoints, named by torch version and device so a
mismatched file is never used): with that file in the image a cold start loads kernels instead of compiling
them. ``python -m builder.bake_compile_cache`` writes it on a machine with the target GPU. With
``ACESTEP_COMPILE=auto`` a worker compiles only when that file is there, so a cold start never pays for a
compile from scratch; ``all`` or ``dit`` compile regardless (and write the file when the folder is writable).
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.settings import Settings

log = logging.getLogger("acestep.compile")


@dataclass
class CompileReport:
    enabled: bool
    cache_file: Path | None = None
    cache_loaded: bool = False
    cache_saved: bool = False
    regions: int = 0


def compile_scope(settings: Settings, device: torch.device) -> str:
    """'off', 'dit' (the DiT blocks) or 'all' (and the VAE decoder). auto = 'all' on CUDA when this GPU's kernel
    cache is there (a cold start of seconds), else 'off': compiling from scratch costs every new worker minutes
    before its first job, which a serverless endpoint pays on each scale-up."""
    if settings.compile == "auto":
        return "all" if device.type == "cuda" and cache_file_for(settings, device).is_file() else "off"
    return settings.compile


def device_tag(device: torch.device) -> str:
    """What a compile cache depends on: torch's version and the device (GPU model), safe as a file name."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    version = torch.__version__.split("+")[0] + (f"-cu{torch.version.cuda}" if torch.version.cuda else "")
    return re.sub(r"[^A-Za-z0-9.]+", "-", f"torch-{version}-{name}").strip("-").lower()


def cache_file_for(settings: Settings, device: torch.device) -> Path:
    folder = settings.compile_cache_dir or settings.checkpoint_dir / "compile-cache"
    return folder / f"{device_tag(device)}.bin"


def load_cache(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        torch.compiler.load_cache_artifacts(path.read_bytes())
    except Exception as err:  # noqa: BLE001 - a stale or foreign cache only costs compile time
        log.warning("compile cache %s not used (%s): kernels will be compiled", path.name, err)
        return False
    return True


def save_cache(path: Path) -> bool:
    """Write the kernels compiled so far, atomically; False when there is nothing to save or no write access."""
    artifacts = torch.compiler.save_cache_artifacts()
    if not artifacts:
        return False
    data, _info = artifacts
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
    except OSError as err:
        log.info("compile cache not saved (%s); the next cold start compiles again", err.strerror or err)
        return False
    return True


def compile_pipeline(pipe, settings: Settings, device: torch.device) -> CompileReport:
    """Compile the DiT's blocks and the VAE decoder in place (lazily: kernels are made on the first calls)."""
    scope = compile_scope(settings, device)
    if scope == "off":
        return CompileReport(enabled=False)
    path = cache_file_for(settings, device)
    report = CompileReport(enabled=True, cache_file=path, cache_loaded=load_cache(path))
    for block in pipe.transformer.layers:
        block.compile(dynamic=True)
        report.regions += 1
    if scope == "all":
        pipe.vae.decoder.compile(dynamic=True)
        report.regions += 1
    return report


def after_warm_up(report: CompileReport) -> None:
    """Once the warm-up has made every graph: keep the kernels for the next cold start if there was no cache."""
    if report.enabled and not report.cache_loaded and report.cache_file is not None:
        started = time.perf_counter()
        report.cache_saved = save_cache(report.cache_file)
        if report.cache_saved:
            log.info("compile cache written to %s in %.1f s", report.cache_file.name, time.perf_counter() - started)
