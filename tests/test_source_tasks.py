"""Source-audio tasks as upstream renders them, on the tiny checkpoint: the song is as long as its source (and the
model is told so), a seed reproduces a repaint, and a span past either end of the source extends the song."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from inference import run
from inference.audio import encode
from inference.contract import parse_generate_request
from inference.errors import InputError

RATE = 48_000


def source_wav(seconds: float, seed: int = 0) -> str:
    audio = (0.3 * np.random.default_rng(seed).standard_normal((2, int(seconds * RATE)))).astype(np.float32)
    return base64.b64encode(encode(audio, RATE, "wav").data).decode()


SOURCE = source_wav(12)
REPAINT = {"prompt": "lofi", "lyrics": "[inst]", "task_type": "repaint", "src_audio_base64": SOURCE,
           "repainting_start": 2, "repainting_end": 6, "inference_steps": 2, "batch_size": 1, "seed": 4,
           "use_random_seed": False}


def render(loaded, *jobs):
    return run.generate(loaded, [parse_generate_request(job, loaded.limits) for job in jobs])


def test_a_seed_reproduces_a_repaint_and_a_cover(loaded):
    for job in (REPAINT, {**REPAINT, "task_type": "cover"}):
        [a], [b] = render(loaded, job), render(loaded, job)
        assert np.array_equal(a.songs[0].samples, b.songs[0].samples)


def test_a_repaint_does_not_depend_on_its_batch(loaded):
    [alone] = render(loaded, REPAINT)
    _, together = render(loaded, {**REPAINT, "seed": 9}, REPAINT)
    np.testing.assert_allclose(together.songs[0].samples, alone.songs[0].samples, atol=1e-5)


def test_a_generation_leaves_torchs_global_generator_as_it_was(loaded):
    before = torch.random.get_rng_state()
    render(loaded, REPAINT)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_the_model_is_told_the_sources_length_whatever_duration_was_asked(loaded):
    """Upstream locks a source task's duration to its source: no duration, the source's own, or another one all
    render the same song, 12 s long (before, no duration told the model 60 s while it made 12)."""
    [told] = render(loaded, {**REPAINT, "audio_duration": 12})
    [unset] = render(loaded, REPAINT)
    [other] = render(loaded, {**REPAINT, "audio_duration": 30})
    for generation in (unset, other):
        assert np.array_equal(generation.songs[0].samples, told.songs[0].samples)
    assert told.songs[0].samples.shape[-1] == 12 * RATE and unset.metas.duration == 12.0
    assert "audio_duration 30 was replaced by the length of the source audio (12 s)" in " ".join(other.warnings)


def test_a_span_past_the_sources_end_extends_the_song(loaded):
    [longer] = render(loaded, {**REPAINT, "repainting_start": 10, "repainting_end": 17})
    assert longer.songs[0].samples.shape[-1] == 17 * RATE and longer.metas.duration == 17.0


def test_a_span_before_the_sources_start_extends_the_song_at_its_front(loaded):
    [longer] = render(loaded, {**REPAINT, "repainting_start": -3.5, "repainting_end": 2})
    # 3.5 s of silence before the 12 s source, in whole latent frames of 1920 samples, as upstream encodes it
    assert longer.songs[0].samples.shape[-1] == int(15.5 * RATE) // 1920 * 1920


def test_a_span_that_would_outgrow_the_tier_is_a_clear_error(loaded):
    from dataclasses import replace

    small = replace(loaded, limits=loaded.limits.model_copy(update={"max_duration_s": 15.0}))  # a 15 s tier
    with pytest.raises(InputError, match=r"repainting_start/repainting_end extend the source to 17 s, longer than "
                                         r"this GPU's longest song \(15 s"):
        render(small, {**REPAINT, "repainting_start": 10, "repainting_end": 17})


@pytest.mark.parametrize("seconds", [16.44, 4.44])  # 411 and 111 latent frames: the pipeline's noise came out one longer
def test_a_source_of_any_length_renders(loaded, seconds):
    for task in ("repaint", "cover"):
        [song] = render(loaded, {**REPAINT, "task_type": task, "src_audio_base64": source_wav(seconds),
                                 "repainting_start": 1, "repainting_end": 3})
        assert song.songs[0].samples.shape[-1] == int(seconds * RATE) // 1920 * 1920


def test_a_length_asked_for_that_rounds_badly_renders(loaded):
    [song] = render(loaded, {"prompt": "x", "lyrics": "[inst]", "audio_duration": 16.43, "inference_steps": 1,
                             "batch_size": 1})  # ceil(16.43 * 25) = 411 frames
    assert abs(song.songs[0].duration_s - 16.43) < 0.04


def test_a_span_that_starts_at_or_past_the_sources_end_is_a_clear_error(loaded):
    with pytest.raises(InputError, match=r"repainting_start must be before the source's end \(12 s\) \(got 12\)"):
        render(loaded, {**REPAINT, "repainting_start": 12, "repainting_end": -1})


def test_a_lego_span_past_the_source_extends_it_too(base):
    [song] = render(base, {**REPAINT, "task_type": "lego", "track_name": "drums", "repainting_start": 8,
                           "repainting_end": 15})
    assert song.songs[0].samples.shape[-1] == 15 * RATE
