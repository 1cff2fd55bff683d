"""Telling the accelerator failures a worker cannot recover from apart from those it can.

After a device-side assert, an illegal memory access or a failed launch, the CUDA context is broken: every
later kernel fails, so the worker must stop taking jobs (RunPod's ``refresh_worker``) rather than fail each
of them. Other CUDA errors (an invalid launch configuration, an invalid argument) and out of memory leave the
context usable: the job fails, its memory is given back, and the next job runs; treating them as fatal would
let one caller recycle workers at will.
"""

from __future__ import annotations

import torch

from inference.errors import GenerationError, one_line, redact

# what the CUDA runtime says when the context is lost (cudaErrorAssert, IllegalAddress, LaunchFailure, ...)
_FATAL_MARKERS = ("device-side assert", "illegal memory access", "an illegal address", "unspecified launch failure",
                  "illegal instruction", "misaligned address", "uncorrectable ecc", "launch timed out",
                  "cublas_status_execution_failed", "hardware stop", "context is destroyed")
_ACCELERATOR_ERROR = getattr(torch, "AcceleratorError", RuntimeError)  # torch >= 2.8 raises this one for CUDA


class AcceleratorFault(GenerationError):
    """The GPU hit an error it does not recover from; this worker takes no further jobs."""


def is_fatal(err: BaseException) -> bool:
    if not isinstance(err, (RuntimeError, _ACCELERATOR_ERROR)) or out_of_memory(err):
        return False
    text = str(err).lower()
    return any(marker in text for marker in _FATAL_MARKERS)


def fault_message(err: BaseException) -> str:
    """One line for callers, the same in every mode (each adds what its users should do)."""
    return one_line(f"the GPU hit an unrecoverable error ({redact(str(err).strip()[:200]) or type(err).__name__}); "
                    f"this worker takes no more jobs")


def out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.OutOfMemoryError) or (isinstance(err, RuntimeError) and
                                                        "out of memory" in str(err).lower())


LM_OUT_OF_MEMORY = ("out of GPU memory while the 5 Hz LM planned the song; try thinking=false, a shorter "
                    "audio_duration or a smaller batch_size")
