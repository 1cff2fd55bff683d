"""Generation on the tiny real checkpoint: seeds, batch independence, progress, duration."""

import numpy as np
import pytest

from inference import run
from inference.errors import UnsupportedError
from inference.contract import parse_generate_request

SONG = {"prompt": "ambient drone", "lyrics": "[Verse]\nslow waves", "audio_duration": 10, "inference_steps": 4}


def songs(loaded, **fields):
    [generation] = run.generate(loaded, [parse_generate_request({**SONG, **fields}, loaded.limits)])
    return generation


def test_same_seed_same_audio_and_seeds_come_back(loaded):
    a = songs(loaded, seed=1234, batch_size=2)
    b = songs(loaded, seed=1234, batch_size=2)
    assert [s.seed for s in a.songs] == [1234, 1235]
    for x, y in zip(a.songs, b.songs):
        assert np.array_equal(x.samples, y.samples)


def test_different_seeds_different_audio(loaded):
    a, b = songs(loaded, seed="1,2", batch_size=2).songs
    assert a.seed == 1 and b.seed == 2
    assert not np.allclose(a.samples, b.samples)


def test_a_song_does_not_depend_on_its_batch(loaded):
    alone = songs(loaded, seed=77, batch_size=1).songs[0]
    in_batch = songs(loaded, seed="5,77", batch_size=2).songs[1]
    assert in_batch.seed == 77
    np.testing.assert_allclose(alone.samples, in_batch.samples, atol=1e-5)


def test_random_seeds_are_reported_and_reproduce(loaded):
    first = songs(loaded, batch_size=2)
    seeds = [s.seed for s in first.songs]
    assert len(set(seeds)) == 2
    again = songs(loaded, seed=",".join(map(str, seeds)), batch_size=2)
    for x, y in zip(first.songs, again.songs):
        assert np.array_equal(x.samples, y.samples)


def test_output_shape_rate_and_exact_duration(loaded):
    generation = songs(loaded, audio_duration=10.5, batch_size=1, seed=3)
    [song] = generation.songs
    assert song.sample_rate == 48_000
    assert song.samples.shape == (2, 504_000)
    assert song.samples.dtype == np.float32 and np.isfinite(song.samples).all()
    assert np.abs(song.samples).max() <= 1.0
    assert generation.metas.duration == pytest.approx(10.5)


def test_progress_is_reported_for_every_denoising_step(loaded):
    seen = []
    run.generate(loaded, [parse_generate_request({**SONG, "inference_steps": 5, "batch_size": 1}, loaded.limits)],
                 progress=lambda fraction, stage: seen.append((round(fraction, 3), stage)))
    # the DiT's five steps take the job to 0.9; the VAE decode follows, then encoding and delivery
    assert [f for f, s in seen if s == "generating"] == [0.18, 0.36, 0.54, 0.72, 0.9]
    assert seen[-2:] == [(0.9, "decoding"), (0.95, "generated")]


def test_two_compatible_requests_share_one_batch(loaded):
    a = parse_generate_request({**SONG, "seed": 10, "batch_size": 1}, loaded.limits)
    b = parse_generate_request({**SONG, "prompt": "punk", "seed": "20,21", "batch_size": 2}, loaded.limits)
    first, second = run.generate(loaded, [a, b])
    assert [s.seed for s in first.songs] == [10] and [s.seed for s in second.songs] == [20, 21]
    assert second.prompt == "punk"
    alone = songs(loaded, prompt="punk", seed="20,21", batch_size=2)
    # a batch mate with a longer prompt pads this one's text: the same song up to float rounding,
    # far closer than a song with another seed
    batching = np.abs(second.songs[1].samples - alone.songs[1].samples).max()
    other_seed = np.abs(second.songs[1].samples - second.songs[0].samples).max()
    assert batching < 5e-3 and other_seed > 10 * batching


def test_incompatible_requests_are_refused(loaded):
    a = parse_generate_request({**SONG, "audio_duration": 10}, loaded.limits)
    b = parse_generate_request({**SONG, "audio_duration": 20}, loaded.limits)
    with pytest.raises(ValueError):
        run.generate(loaded, [a, b])


def test_lm_only_request_without_an_lm_is_a_clear_error_and_thinking_is_skipped(loaded, settings):
    from inference.service import GenerationService

    service = GenerationService(loaded, settings)  # no LM
    with pytest.raises(UnsupportedError, match="sample_query needs the 5 Hz LM"):
        service.generate({"sample_query": "a happy birthday song"}, "job")
    response = service.generate({"prompt": "x", "thinking": True, "use_format": True, "batch_size": 1,
                                 "audio_duration": 10, "audio_format": "wav"}, "job")
    assert any("thinking was requested but no 5 Hz LM" in w for w in response.warnings)
    assert any("use_format was requested but no 5 Hz LM" in w for w in response.warnings)
    assert any("random weights" in w for w in response.warnings)
    assert response.lm_model is None and response.timings.lm_s == 0


def test_repaint_with_source_audio_keeps_the_length_of_the_source(loaded):
    import base64

    from inference.audio import encode

    source = (0.3 * np.random.default_rng(0).standard_normal((2, 44_100 * 12))).astype(np.float32)
    wav = base64.b64encode(encode(source, 44_100, "wav").data).decode()
    generation = songs(loaded, task_type="repaint", src_audio_base64=wav, repainting_start=2, repainting_end=6,
                       audio_duration=None, batch_size=1, seed=1)
    assert generation.songs[0].samples.shape[0] == 2
    assert generation.songs[0].duration_s == pytest.approx(12.0, abs=0.05)


def test_out_of_memory_mid_generation_is_a_clear_error_and_the_next_request_works(loaded):
    import torch

    from inference.errors import GenerationError

    def exhaust(fraction, stage):
        if stage == "generating" and fraction >= 0.5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    request = parse_generate_request({**SONG, "batch_size": 2, "audio_duration": 30}, loaded.limits)
    with pytest.raises(GenerationError) as caught:
        run.generate(loaded, [request], progress=exhaust)
    assert str(caught.value) == ("out of GPU memory generating 2 × 30 s of audio; try a shorter audio_duration "
                                 "or a smaller batch_size")
    assert len(songs(loaded, batch_size=1).songs) == 1


def test_a_custom_schedule_is_the_schedule_used(loaded):
    default = songs(loaded, seed=9, batch_size=1).songs[0].samples  # 4 steps, shift 3
    same = songs(loaded, seed=9, batch_size=1, timesteps="1.0,0.9,0.75,0.5").songs[0].samples  # that schedule, given
    other = songs(loaded, seed=9, batch_size=1, timesteps=[0.95, 0.6, 0.3]).songs[0].samples
    assert np.array_equal(default, same)
    assert not np.allclose(default, other)


def test_an_instruction_reaches_the_dit(loaded):
    default = songs(loaded, seed=10, batch_size=1).songs[0].samples
    spelled_out = songs(loaded, seed=10, batch_size=1,
                        instruction="Fill the audio semantic mask based on the given conditions:").songs[0].samples
    other = songs(loaded, seed=10, batch_size=1, instruction="Generate a calm piano piece:").songs[0].samples
    assert np.array_equal(default, spelled_out)  # the pipeline's own default, written out
    assert not np.allclose(default, other)


@pytest.mark.parametrize("fields, words", [
    ({"timesteps": "0.5,0.9"}, "timesteps must go from high to low"),
    ({"timesteps": [1.5]}, "timesteps must be 1 to 200 numbers in [0, 1]"),
    ({"cfg_interval_start": 0.8, "cfg_interval_end": 0.2}, "cfg_interval_start must be at most cfg_interval_end"),
    ({"track_name": "kazoo"}, "track_name must be one of woodwinds, brass"),
])
def test_schedule_and_task_fields_are_checked(fields, words):
    from inference.errors import InputError

    import re

    with pytest.raises(InputError, match=re.escape(words)):
        parse_generate_request({**SONG, **fields})
