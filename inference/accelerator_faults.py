"""Telling the accelerator failures a worker cannot recover from apart from those it can.

After a device-side assert, an illegal memory access or a failed launch, the CUDA context is broken: every
later kernel fails, so the worker must stop taking jobs (RunPod's ``refresh_worker``) rather than fail each
of them. Out of memory is not such a failure: the memory is given back and the next job runs.
"""

from __future__ import annotations

import torch

from inference.errors import GenerationError
from inference.hardware import free_accelerator_memory

_FATAL_MARKERS = ("device-side assert", "illegal memory access", "unspecified launch failure",
                  "illegal instruction", "misaligned address", "cuda error", "cublas_status_execution_failed",
                  "cudnn_status_execution_failed", "cudnn_status_internal_error", "nccl error", "ecc error",
                  "uncorrectable", "hip error")


class AcceleratorFault(GenerationError):
    """The GPU hit an error it does not recover from; this worker takes no further jobs."""


def is_fatal(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return False
    if isinstance(err, torch.AcceleratorError):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and "out of memory" not in text and any(m in text for m in _FATAL_MARKERS)


def fault_message(err: BaseException) -> str:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return (f"the GPU hit an unrecoverable error ({first}); this worker takes no more jobs and is being replaced, "
            f"submit the job again")


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower() and not isinstance(err, AcceleratorFault))


def lm_out_of_memory_error() -> GenerationError:
    free_accelerator_memory()
    return GenerationError("out of GPU memory while the 5 Hz LM planned the song; try thinking=false, a shorter "
                           "audio_duration or a smaller batch_size")
