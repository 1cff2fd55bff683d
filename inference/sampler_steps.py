"""Upstream's corrections of each sampler step, added to diffusers' pipeline without forking it: for one pipeline
call, the scheduler's ``step`` is wrapped so that what it returns is corrected before the pipeline goes on
(DCW, ``inference.dcw``). The wrapper sees what the pipeline's step callback does not: the velocity and the
latent before the step, so the model's clean prediction ``x_before - v * t`` is exact, as upstream computes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inference.dcw import DcwSettings, dcw_correct


@contextmanager
def corrected_steps(scheduler, dcw: DcwSettings | None) -> Iterator[None]:
    """Within the block, every ``scheduler.step`` is followed by DCW when ``dcw`` is active."""
    if dcw is None or not dcw.active:
        yield
        return
    original = scheduler.step

    def step(model_output, timestep, sample, *args, **kwargs):
        result = original(model_output, timestep, sample, *args, **kwargs)
        after = result[0] if isinstance(result, tuple) else result.prev_sample
        t = float(timestep)
        corrected = dcw_correct(after, sample - model_output * t, t, dcw)
        if isinstance(result, tuple):
            return (corrected, *result[1:])
        result.prev_sample = corrected
        return result

    scheduler.step = step  # this instance only, for this call (one call at a time runs on a pipeline)
    try:
        yield
    finally:
        del scheduler.step
