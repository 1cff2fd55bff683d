"""Device, dtype and GPU tier: what this machine can run."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from inference.settings import Settings

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class Tier:
    """Limits for a class of GPU, by memory: longest song, largest batch, default LM."""

    name: str
    max_duration_s: float
    max_batch_size: int
    lm_model: str


# VRAM (GiB, inclusive upper bound) -> tier. A card between 16 and 24 GiB gets the 16 GiB tier.
_GPU_TIERS = (
    (8.5, Tier("<=8GB", 120.0, 2, "acestep-5Hz-lm-0.6B")),
    (23.5, Tier("<=16GB", 300.0, 4, "acestep-5Hz-lm-1.7B")),
    (float("inf"), Tier(">=24GB", 600.0, 8, "acestep-5Hz-lm-4B")),
)
# Without a GPU nothing is measured: the contract's full range, the smallest LM.
_HOST_TIER = Tier("no GPU", 600.0, 8, "acestep-5Hz-lm-0.6B")


def pick_device(setting: str = "auto") -> torch.device:
    if setting and setting != "auto":
        return torch.device(setting)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(setting: str, device: torch.device) -> torch.dtype:
    if setting and setting != "auto":
        return _DTYPES[setting]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def allow_tf32(device: torch.device) -> None:
    """TF32 tensor cores for what runs in float32 on CUDA (a float32 VAE, the LM's norms): ~10 bits of mantissa
    in the products, float32 accumulation; nothing changes for bf16 work."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def gpu_memory_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.get_device_properties(device).total_memory / 2**30


def tier_for(device: torch.device) -> Tier:
    memory = gpu_memory_gib(device)
    if memory is None:
        return _HOST_TIER
    return next(tier for bound, tier in _GPU_TIERS if memory <= bound)


def effective_limits(settings: Settings, device: torch.device) -> tuple[float, int]:
    """(longest song, largest batch): the tier's unless the operator overrides them (capped at 600 s / 8)."""
    tier = tier_for(device)
    duration = tier.max_duration_s if settings.max_duration_s is None else min(settings.max_duration_s, 600.0)
    batch = tier.max_batch_size if settings.max_batch_size is None else min(settings.max_batch_size, 8)
    return duration, batch


def free_accelerator_memory() -> None:
    """Give cached blocks back after a failure (out of memory), so the next job starts clean."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"  # cgroup v2: "<quota> <period>" or "max <period>"


def usable_cores(cpu_max: str = CGROUP_CPU_MAX) -> int:
    """CPU cores this process may keep busy: its affinity mask, capped by the container's CPU quota (which
    ``os.cpu_count()`` does not see: a RunPod worker on a 128-core host may be allowed 16)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path(cpu_max).read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)
