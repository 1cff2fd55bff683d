"""Upstream's repaint modes: how much of the source survives outside the repainted span.

``repaint_mode`` and ``repaint_strength`` s (upstream's ``_resolve_repaint_config``):

| mode | source injected for the first | latent crossfade | waveform splice |
|---|---|---|---|
| conservative | every step | 25 frames | 0.05 s |
| balanced (default, s = 0.5) | round((1 - s) · steps) steps | round(25 (1 - s)) frames | 0.05 (1 - s) s |
| aggressive | no step | none | none |

- **Injection** (after a step, and after DCW): outside the span the latent becomes the source noised to the
  step's next timestep with the run's own initial noise, ``t_next · noise + (1 - t_next) · source``. A turbo
  model's last step is never injected (upstream's turbo loop ends before it).
- **Latent crossfade** (after the last step): outside the span, ramps of that many frames (linear, ends
  excluded) lead from the generated latent to the source; further out the latent is the source's.
- **Waveform splice** (after decoding, before the level step): ``m · generated + (1 - m) · source`` with ``m``
  1 inside the span and linear ramps of that length outside it; a balanced or conservative repaint therefore
  returns the source itself outside the span and its crossfades.

``repaint_latent_crossfade_frames`` / ``repaint_wav_crossfade_sec``, which upstream accepts but never reads,
override the mode's values here when given. The source and the noise are the pipeline's own: its source
latents (before the span is silenced), its initial noise and its span mask are observed during the call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from inference.contract import GenerateRequest
from inference.render.patching import replaced
from inference.render.sampler_steps import Step

FULL_CROSSFADE_FRAMES, FULL_CROSSFADE_S = 25, 0.05


@dataclass(frozen=True)
class RepaintMode:
    injection_ratio: float
    crossfade_frames: int
    wav_crossfade_s: float
    splice: bool


def repaint_mode(request: GenerateRequest) -> RepaintMode | None:
    """What the request's repaint keeps of its source; None when it is not a repaint."""
    if request.task_type != "repaint":
        return None
    if request.repaint_mode == "aggressive":
        mode = RepaintMode(0.0, 0, 0.0, False)
    elif request.repaint_mode == "conservative":
        mode = RepaintMode(1.0, FULL_CROSSFADE_FRAMES, FULL_CROSSFADE_S, True)
    else:
        rest = 1.0 - request.repaint_strength
        mode = RepaintMode(rest, round(FULL_CROSSFADE_FRAMES * rest), FULL_CROSSFADE_S * rest, True)
    frames = request.repaint_latent_crossfade_frames
    seconds = request.repaint_wav_crossfade_sec
    return RepaintMode(mode.injection_ratio, mode.crossfade_frames if frames is None else frames,
                       mode.wav_crossfade_s if seconds is None else seconds, mode.splice)


def ramp(length: int, rising: bool, device=None) -> torch.Tensor:
    """``length`` values of a linear ramp between 0 and 1, both ends excluded (upstream's ``linspace[1:-1]``)."""
    values = torch.linspace(0.0, 1.0, length + 2, device=device)[1:-1]
    return values if rising else values.flip(0)


def soft_mask(inside: torch.Tensor, frames: int) -> torch.Tensor:
    """1 inside the span, ramps of ``frames`` outside it, 0 beyond: float, the shape of ``inside`` (1-D)."""
    soft = inside.float().clone()
    where = torch.nonzero(inside).flatten()
    if frames <= 0 or where.numel() == 0 or where.numel() == inside.numel():
        return soft
    left, right = int(where[0]), int(where[-1]) + 1
    start, end = max(left - frames, 0), min(right + frames, inside.numel())
    soft[start:left] = ramp(left - start, True, inside.device)
    soft[right:end] = ramp(end - right, False, inside.device)
    return soft


class RepaintSteps:
    """The injection and the latent crossfade, as a step correction for ``inference.render.sampler_steps``; its source,
    noise and span are filled in by ``observe`` while the pipeline prepares them."""

    def __init__(self, mode: RepaintMode, is_turbo: bool):
        self.mode = mode
        self.is_turbo = is_turbo
        self.source: torch.Tensor | None = None  # [batch, frames, channels], the span not yet silenced
        self.noise: torch.Tensor | None = None
        self.inside: torch.Tensor | None = None  # [frames] bool: the span

    def __call__(self, latent: torch.Tensor, step: Step) -> torch.Tensor:
        if self.source is None or self.noise is None or self.inside is None:  # the pipeline changed under us
            raise RuntimeError("the repaint could not observe the pipeline's source latents, noise and span")
        keep = ~self.inside.to(latent.device)[None, :, None]
        cutoff = round(self.mode.injection_ratio * step.count)
        if step.index < cutoff and not (step.last and self.is_turbo):
            noised = step.t_next * self.noise + (1.0 - step.t_next) * self.source
            latent = torch.where(keep, noised.to(latent.dtype), latent)
        if step.last and self.mode.crossfade_frames > 0:
            soft = soft_mask(self.inside, self.mode.crossfade_frames).to(latent.device)[None, :, None]
            latent = (soft * latent.float() + (1.0 - soft) * self.source.float()).to(latent.dtype)
        return latent

    @contextmanager
    def observe(self, pipe) -> Iterator[None]:
        """Note the pipeline's source latents, initial noise and span mask as it makes them, for one call."""
        originals = {name: getattr(pipe, name) for name in ("prepare_src_latents", "prepare_latents",
                                                            "_build_chunk_mask")}

        def source(*args, **kwargs):
            latents, length = originals["prepare_src_latents"](*args, **kwargs)
            if kwargs.get("src_audio") is not None and self.source is None:
                self.source = latents
            return latents, length

        def noise(*args, **kwargs):
            self.noise = originals["prepare_latents"](*args, **kwargs)
            return self.noise

        def span(*args, **kwargs):
            mask = originals["_build_chunk_mask"](*args, **kwargs)
            self.inside = mask[0, :, 0] > 0.5
            return mask

        with replaced(pipe, prepare_src_latents=source, prepare_latents=noise, _build_chunk_mask=span):
            yield


@contextmanager
def whole_song_mask(pipe) -> Iterator[None]:
    """``chunk_mask_mode: auto`` (upstream's default) for one call: the DiT's chunk-mask channels are 1 over the
    whole song, as upstream's "model decides" sentinel reaches its DiT (stored into a boolean mask, it becomes
    True); the span still decides which source frames are silenced and where the source is kept."""
    forward = pipe.transformer.forward

    def denoise(*args, **kwargs):
        context = kwargs["context_latents"]
        channels = context.shape[-1] // 2
        kwargs = {**kwargs, "context_latents": torch.cat([context[..., :channels],
                                                          torch.ones_like(context[..., channels:])], dim=-1)}
        return forward(*args, **kwargs)

    with replaced(pipe.transformer, forward=denoise):
        yield


def splice(generated: torch.Tensor, source: torch.Tensor, start_s: float, end_s: float, sample_rate: int,
           crossfade_s: float) -> torch.Tensor:
    """``generated`` [batch, channels, samples] with the source [channels, samples] outside the span."""
    length = min(generated.shape[-1], source.shape[-1])
    start = min(max(int(start_s * sample_rate), 0), length)
    end = min(max(int(end_s * sample_rate), 0), length)
    if start == 0 and end >= length:
        return generated
    m = torch.zeros(length, device=generated.device)
    m[start:end] = 1.0
    n = int(crossfade_s * sample_rate)
    if n > 0:
        before, after = max(start - n, 0), min(end + n, length)
        m[before:start] = ramp(start - before, True, generated.device)
        m[end:after] = ramp(after - end, False, generated.device)
    src = source[:, :length].to(generated.device, generated.dtype).clamp(-1.0, 1.0)
    out = generated.clone()
    out[..., :length] = m * generated[..., :length] + (1.0 - m) * src
    return out
