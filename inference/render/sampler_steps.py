"""Upstream's corrections of each sampler step, added to diffusers' pipeline without forking it: for one pipeline
call, the scheduler's ``step`` is wrapped so that what it returns is corrected before the pipeline goes on, in
upstream's order: DCW (``inference.render.dcw``), then the repaint's source injection and, after the last step, its
crossfade (``inference.render.repaint``). The wrapper sees what the pipeline's step callback does not: the velocity
and the latent before the step, so the model's clean prediction ``x_before - v * t`` is exact, as upstream
computes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import torch

from inference.render.dcw import DcwSettings, dcw_correct
from inference.render.patching import replaced


@dataclass(frozen=True)
class Step:
    """One sampler step as the corrections see it."""

    before: torch.Tensor  # the latent the model was evaluated at
    velocity: torch.Tensor
    t: float  # the timestep it was evaluated at (1 down to 0)
    t_next: float  # the timestep the step went to (0 at the last)
    index: int
    count: int

    @property
    def last(self) -> bool:
        return self.index == self.count - 1


class StepCorrection(Protocol):
    def __call__(self, latent: torch.Tensor, step: Step) -> torch.Tensor: ...


class Dcw:
    def __init__(self, settings: DcwSettings):
        self.settings = settings

    def __call__(self, latent: torch.Tensor, step: Step) -> torch.Tensor:
        denoised = step.before.float() - step.velocity.float() * step.t  # float32, as upstream's correction runs
        return dcw_correct(latent, denoised, step.t, self.settings)


@contextmanager
def corrected_steps(scheduler, corrections: list[StepCorrection]) -> Iterator[None]:
    """Within the block, every ``scheduler.step`` is followed by ``corrections``, in order."""
    if not corrections:
        yield
        return
    original = scheduler.step
    calls = 0

    def step(model_output, timestep, sample, *args, **kwargs):
        nonlocal calls
        result = original(model_output, timestep, sample, *args, **kwargs)
        after = result[0] if isinstance(result, tuple) else result.prev_sample
        sigmas = scheduler.sigmas
        t_next = float(sigmas[calls + 1]) if calls + 1 < len(sigmas) else 0.0
        seen = Step(sample, model_output, float(timestep), t_next, calls, len(scheduler.timesteps))
        calls += 1
        for correct in corrections:
            after = correct(after, seen)
        if isinstance(result, tuple):
            return (after, *result[1:])
        result.prev_sample = after
        return result

    with replaced(scheduler, step=step):  # this instance, for this call (one call at a time runs on a pipeline)
        yield
