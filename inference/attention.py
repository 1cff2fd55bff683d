"""Which attention kernel the DiT uses, through diffusers' attention dispatcher.

The DiT alternates sliding-window (128) and full self-attention layers. PyTorch's SDPA ('native') takes the
sliding window as a dense mask, which rules out its flash kernel for those layers; flash-attn ('flash') takes
the window natively. ``auto`` picks 'flash' when flash-attn is installed on CUDA, else 'native'. Only the DiT
is switched: the text, lyric and timbre encoders see padded batches, which the non-varlen kernels refuse.
"""

from __future__ import annotations

import importlib.util

import torch

from inference.errors import SetupError


def choose_backend(setting: str, device: torch.device) -> str:
    if setting and setting != "auto":
        return setting
    if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash"
    return "native"


def apply_backend(transformer, name: str) -> str:
    """Switch the DiT's attention to ``name``; a kernel this machine lacks is one clear start-up error."""
    if name == "native":  # diffusers' default: nothing to switch
        return name
    try:
        transformer.set_attention_backend(name)
    except (ValueError, ImportError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SetupError(f"ACESTEP_ATTENTION_BACKEND={name!r} cannot be used on this machine: {reason[:300]}") from None
    return name
