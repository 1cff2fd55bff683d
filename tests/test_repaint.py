"""Upstream's repaint modes on the tiny checkpoint, against references computed from upstream's published rules:
outside the span and its crossfade a balanced or conservative repaint returns the source itself (up to the one
gain of the level step), an aggressive one does not, and balanced at strength 0 is conservative exactly."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import soundfile as sf
import torch

from inference import run
from inference.contract import parse_generate_request
from inference.render.repaint import ramp, soft_mask, splice
from tests.test_source_tasks import REPAINT, RATE, SOURCE

SPAN = (2.0, 6.0)


def repaint(loaded, **fields) -> np.ndarray:
    job = {**REPAINT, "repainting_start": SPAN[0], "repainting_end": SPAN[1], **fields}
    [generation] = run.generate(loaded, [parse_generate_request(job, loaded.limits)])
    return generation.songs[0].samples


def source() -> np.ndarray:
    """The source as the worker reads it: the 16-bit file decoded, [channels, samples]."""
    return sf.read(io.BytesIO(base64.b64decode(SOURCE)), dtype="float32", always_2d=True)[0].T


def kept(song: np.ndarray, crossfade_s: float) -> np.ndarray:
    """Where upstream's splice weight is 0: before the span's left ramp and after its right ramp."""
    n = int(crossfade_s * RATE)
    where = np.ones(song.shape[-1], dtype=bool)
    where[int(SPAN[0] * RATE) - n:int(SPAN[1] * RATE) + n] = False
    return where


def is_gained_source(song: np.ndarray, where: np.ndarray) -> bool:
    src = np.clip(source()[:, : song.shape[-1]], -1, 1)[:, where]
    gain = float((song[:, where] * src).sum() / (src * src).sum())  # the level step's one gain per song
    return gain > 0 and np.allclose(song[:, where], gain * src, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fields, crossfade_s", [({}, 0.025), ({"repaint_mode": "conservative"}, 0.05),
                                                 ({"repaint_strength": 0.8}, 0.05 * 0.2),
                                                 ({"repaint_wav_crossfade_sec": 0.1}, 0.1)])
def test_outside_its_span_a_spliced_repaint_is_the_source(loaded, fields, crossfade_s):
    song = repaint(loaded, **fields)
    assert is_gained_source(song, kept(song, crossfade_s))
    inside = np.zeros(song.shape[-1], dtype=bool)
    inside[int(SPAN[0] * RATE):int(SPAN[1] * RATE)] = True
    assert not is_gained_source(song, inside)  # the span itself is new


def test_an_aggressive_repaint_keeps_only_what_the_model_keeps(loaded):
    song = repaint(loaded, repaint_mode="aggressive")
    assert not is_gained_source(song, kept(song, 0.05))


def test_balanced_at_strength_zero_is_conservative_and_modes_differ(loaded):
    conservative = repaint(loaded, repaint_mode="conservative")
    assert np.array_equal(repaint(loaded, repaint_strength=0.0), conservative)
    assert not np.array_equal(repaint(loaded), conservative)


def test_the_crossfade_ramps_are_upstreams():
    assert ramp(3, True).tolist() == pytest.approx([0.25, 0.5, 0.75])  # linspace(0, 1, n + 2)[1:-1]
    inside = torch.zeros(12, dtype=torch.bool)
    inside[5:8] = True
    assert soft_mask(inside, 2).tolist() == pytest.approx([0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1, 2 / 3, 1 / 3, 0, 0])
    generated, src = torch.ones(1, 1, 10), torch.zeros(1, 10)
    spliced = splice(generated, src, 4 / 10, 6 / 10, 10, 2 / 10)  # 10 "samples a second": span 4-6, ramps of 2
    assert spliced[0, 0].tolist() == pytest.approx([0, 0, 1 / 3, 2 / 3, 1, 1, 2 / 3, 1 / 3, 0, 0])


@pytest.mark.parametrize("turbo", [True, False])
def test_the_source_is_injected_outside_the_span_for_the_first_steps_as_upstream(turbo):
    """Upstream's rule, step by step: after step i < round((1 - s) * N), outside the span the latent is
    t_next * noise + (1 - t_next) * source with the run's own noise (a turbo model's last step never); after
    the last step the latent crossfade."""
    from inference.render.repaint import RepaintMode, RepaintSteps
    from inference.render.sampler_steps import Step

    frames, steps = 40, 4
    gen = torch.Generator().manual_seed(0)
    source, noise = torch.randn(2, frames, 3, generator=gen), torch.randn(2, frames, 3, generator=gen)
    inside = torch.zeros(frames, dtype=torch.bool)
    inside[10:20] = True
    fix = RepaintSteps(RepaintMode(1.0, 0, 0.0, True), is_turbo=turbo)  # conservative's injection, no crossfade
    fix.source, fix.noise, fix.inside = source, noise, inside
    schedule = [1.0, 0.75, 0.5, 0.25, 0.0]
    for index in range(steps):
        latent = torch.full((2, frames, 3), 7.0)
        out = fix(latent, Step(latent, latent, schedule[index], schedule[index + 1], index, steps))
        t_next = schedule[index + 1]
        expected_outside = t_next * noise + (1 - t_next) * source
        injected = not (turbo and index == steps - 1)
        assert torch.equal(out[:, 10:20], latent[:, 10:20])  # the span is never touched
        outside = torch.cat([out[:, :10], out[:, 20:]], dim=1)
        wanted = torch.cat([expected_outside[:, :10], expected_outside[:, 20:]], dim=1)
        assert torch.allclose(outside, wanted) == injected
    half = RepaintSteps(RepaintMode(0.5, 0, 0.0, True), is_turbo=True)  # balanced: round(0.5 * 4) = 2 steps
    half.source, half.noise, half.inside = source, noise, inside
    latent = torch.full((2, frames, 3), 7.0)
    assert not torch.equal(half(latent, Step(latent, latent, 0.75, 0.5, 1, steps)), latent)
    assert torch.equal(half(latent, Step(latent, latent, 0.5, 0.25, 2, steps)), latent)


def test_chunk_mask_mode_says_what_the_dit_is_told_of_the_span(loaded):
    """auto (upstream's default) tells the DiT the whole song may change (upstream's sentinel, stored into a boolean
    mask, reaches its DiT as 1); explicit gives it the span's own mask, 1 inside and 0 outside. Either way the
    source is silenced in the span only."""
    from tests.test_cover import dit_inputs

    job = {**REPAINT, "repainting_start": SPAN[0], "repainting_end": SPAN[1]}
    auto, explicit = dit_inputs(loaded, **job), dit_inputs(loaded, **job, chunk_mask_mode="explicit")
    channels = auto[0]["context"].shape[-1] // 2
    start, end = int(SPAN[0] * 25), int(SPAN[1] * 25)
    for call in auto:
        assert torch.equal(call["context"][..., channels:], torch.ones_like(call["context"][..., channels:]))
    for call in explicit:
        mask = call["context"][0, :, channels]
        assert mask[start:end].eq(1).all() and mask[:start].eq(0).all() and mask[end:].eq(0).all()
    torch.testing.assert_close(auto[0]["context"][..., :channels], explicit[0]["context"][..., :channels])
