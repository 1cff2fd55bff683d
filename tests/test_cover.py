"""A cover below full strength as upstream renders it (the cover's condition for int(steps * strength) steps,
then text2music's), seen in what the DiT is given at each step, on the tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inference import run
from inference.contract import parse_generate_request
from inference.render.patching import replaced
from tests.test_source_tasks import SOURCE

COVER = {"prompt": "lofi", "lyrics": "[inst]", "task_type": "cover", "src_audio_base64": SOURCE, "seed": 2,
         "inference_steps": 4, "batch_size": 1, "use_random_seed": False}


def dit_inputs(loaded, **job) -> list[dict]:
    """What the DiT was called with, call by call (one call per step)."""
    calls: list[dict] = []
    forward = loaded.pipe.transformer.forward

    def record(*args, **kwargs):
        calls.append({"states": kwargs["encoder_hidden_states"].clone(), "context": kwargs["context_latents"].clone()})
        return forward(*args, **kwargs)

    with replaced(loaded.pipe.transformer, forward=record):
        run.generate(loaded, [parse_generate_request(job, loaded.limits)])
    return calls


def silence(loaded, context: torch.Tensor) -> torch.Tensor:
    tiled, _ = loaded.pipe.prepare_src_latents(device=context.device, dtype=context.dtype, batch_size=1,
                                               latent_length=context.shape[1])
    return tiled


@pytest.mark.parametrize("strength, cover_steps", [(0.5, 2), (0.3, 1), (0.0, 0), (1.0, 4)])
def test_the_condition_switches_to_text2music_after_the_covers_share_of_steps(loaded, strength, cover_steps):
    calls = dit_inputs(loaded, **COVER, audio_cover_strength=strength)
    assert len(calls) == 4  # one DiT call a step: no blend of two conditions at every step
    text2music = dit_inputs(loaded, **{**COVER, "task_type": "text2music", "src_audio_base64": None,
                                       "audio_duration": 12})[0]["states"]
    channels = calls[0]["context"].shape[-1] // 2
    for index, call in enumerate(calls):
        source = call["context"][..., :channels]
        if index < cover_steps:  # the cover's own condition and source
            assert not torch.equal(call["states"], text2music)
            assert not torch.equal(source, silence(loaded, call["context"]).expand_as(source))
        else:  # upstream's text2music condition: the default instruction, silence for the source
            torch.testing.assert_close(call["states"], text2music)
            assert torch.equal(source, silence(loaded, call["context"]).expand_as(source))


def test_a_guided_base_model_cover_switches_both_halves_of_its_batch(base):
    """A base model guides: the DiT sees [condition, null condition]; after the switch the condition half is
    text2music's and the null half its own null embedding."""
    calls = dit_inputs(base, **COVER, audio_cover_strength=0.5, guidance_scale=3.0)
    assert len(calls) == 4 and all(call["states"].shape[0] == 2 for call in calls)
    null = base.pipe.condition_encoder.null_condition_emb
    for call in calls[2:]:
        torch.testing.assert_close(call["states"][1:], null.to(call["states"].dtype).expand_as(call["states"][1:]))
        channels = call["context"].shape[-1] // 2
        source = call["context"][..., :channels]
        assert torch.equal(source, silence(base, call["context"]).expand_as(source))
    assert not torch.equal(calls[1]["states"][:1], calls[2]["states"][:1])


def test_a_weaker_cover_sounds_different_and_a_seed_still_reproduces_it(loaded):
    def song(**fields):
        [generation] = run.generate(loaded, [parse_generate_request({**COVER, **fields}, loaded.limits)])
        return generation.songs[0].samples

    half = song(audio_cover_strength=0.5)
    assert np.array_equal(half, song(audio_cover_strength=0.5))
    assert not np.allclose(half, song())
