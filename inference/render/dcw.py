"""DCW, upstream's wavelet correction of every sampler step (on by default for turbo models since April 2026).

After each Euler step, with ``x`` the new latent, ``y = x_before - v * t`` the clean latent the model predicted
and ``t`` the timestep it was evaluated at (1 down to 0), the difference ``x - y`` is split by a one-level Haar
transform along the latent's time axis into a low band L and a high band H, and ``x`` moves further from ``y``
in each band (upstream's ``DCWCorrector``):

- ``low``: ``x += s_L * L`` with ``s_L = t * dcw_scaler``
- ``high``: ``x += s_H * H`` with ``s_H = (1 - t) * dcw_scaler``
- ``double`` (the default): both, ``s_L = t * dcw_scaler`` and ``s_H = (1 - t) * dcw_high_scaler``
- ``pix``: ``x += dcw_scaler * (x - y)``, no transform, no ``t``

computed in float32. The orthonormal Haar pair of frames ``(d0, d1)`` has ``L = (d0 + d1) / √2`` and
``H = (d0 - d1) / √2``, so the inverse adds ``(s_L (d0 + d1) ± s_H (d0 - d1)) / 2`` to the two frames; an odd
last frame pairs with zero, as upstream's zero-mode transform pads it. On the last step ``x == y``: no change.
Only the Haar wavelet is offered (upstream's default; others would need a wavelet library).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

DCW_MODES = ("low", "high", "double", "pix")


@dataclass(frozen=True)
class DcwSettings:
    mode: str = "double"
    scaler: float = 0.05
    high_scaler: float = 0.02

    @property
    def active(self) -> bool:
        return self.scaler != 0 or (self.mode == "double" and self.high_scaler != 0)


def dcw_correct(x: torch.Tensor, denoised: torch.Tensor, t: float, dcw: DcwSettings) -> torch.Tensor:
    """``x`` [batch, frames, channels] after one step, corrected against ``denoised`` at timestep ``t``."""
    if dcw.mode == "pix":
        return x + dcw.scaler * (x - denoised)
    low = t * dcw.scaler if dcw.mode in ("low", "double") else 0.0
    high = (1.0 - t) * (dcw.high_scaler if dcw.mode == "double" else dcw.scaler) if dcw.mode != "low" else 0.0
    d = (x.float() - denoised.float())
    frames = d.shape[1]
    if frames % 2:
        d = torch.nn.functional.pad(d, (0, 0, 0, 1))
    even, odd = d[:, 0::2], d[:, 1::2]
    shared, split = low * (even + odd) / 2, high * (even - odd) / 2
    correction = torch.stack([shared + split, shared - split], dim=2).flatten(1, 2)[:, :frames]
    out = x.float() + correction
    return (out.clamp(-65000.0, 65000.0) if x.dtype == torch.float16 else out).to(x.dtype)  # upstream's fp16 guard
