"""What upstream's sampler does at every step, against references the tests compute from upstream's published
rules: DCW (checked against PyWavelets' own Haar transform, an independent implementation) and the CFG
interval, on the tiny turbo checkpoint and a tiny base checkpoint converted from the original layout."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from inference import run
from inference.contract import parse_generate_request
from inference.render.dcw import DcwSettings, dcw_correct
from inference.errors import InputError

SONG = {"prompt": "ambient drone", "lyrics": "[inst]", "audio_duration": 10, "inference_steps": 4, "seed": 3,
        "use_random_seed": False, "batch_size": 1}


def upstream_dcw(x: np.ndarray, y: np.ndarray, t: float, mode: str, scaler: float, high: float) -> np.ndarray:
    """Upstream's DCWCorrector, written out with PyWavelets: a one-level Haar DWT of x and y along time (zero
    mode), each band moved away from y's, the inverse trimmed to the original length."""
    if mode == "pix":
        return x + scaler * (x - y)
    low_s = t * scaler if mode in ("low", "double") else 0.0
    high_s = 0.0 if mode == "low" else (1 - t) * (high if mode == "double" else scaler)
    xl, xh = pywt.dwt(x, "haar", mode="zero", axis=1)
    yl, yh = pywt.dwt(y, "haar", mode="zero", axis=1)
    xl, xh = xl + low_s * (xl - yl), xh + high_s * (xh - yh)
    return pywt.idwt(xl, xh, "haar", mode="zero", axis=1)[:, : x.shape[1]]


@pytest.mark.parametrize("mode", ["low", "high", "double", "pix"])
@pytest.mark.parametrize("frames", [250, 251])
def test_dcw_is_upstreams_wavelet_correction(mode, frames):
    rng = np.random.default_rng(frames)
    x, y = rng.standard_normal((2, frames, 8)), rng.standard_normal((2, frames, 8))
    for t in (1.0, 0.7, 0.25):
        ours = dcw_correct(torch.from_numpy(x).float(), torch.from_numpy(y).float(), t, DcwSettings(mode, 0.3, 0.2))
        np.testing.assert_allclose(ours.numpy(), upstream_dcw(x, y, t, mode, 0.3, 0.2), rtol=1e-5, atol=1e-5)


def song(loaded, **fields):
    [generation] = run.generate(loaded, [parse_generate_request({**SONG, **fields}, loaded.limits)])
    return generation.songs[0].samples


def test_dcw_is_on_by_default_on_turbo_and_switched_by_its_fields(loaded):
    default, off = song(loaded), song(loaded, dcw_enabled=False)
    assert not np.allclose(default, off)  # upstream's default for turbo: on
    assert np.array_equal(default, song(loaded, dcw_enabled=True, dcw_mode="double", dcw_scaler=0.05,
                                        dcw_high_scaler=0.02))
    assert np.array_equal(song(loaded, dcw_scaler=0, dcw_high_scaler=0), off)  # no strength: no change
    assert not np.allclose(song(loaded, dcw_mode="pix"), default)
    # one step is the last step, where the prediction is the step's own result: nothing to correct
    assert np.array_equal(song(loaded, inference_steps=1), song(loaded, inference_steps=1, dcw_enabled=False))


def test_dcw_fields_are_checked():
    with pytest.raises(InputError, match="dcw_wavelet must be 'haar'"):
        parse_generate_request({**SONG, "dcw_wavelet": "db4"})
    with pytest.raises(InputError, match="dcw_mode must be one of 'low', 'high', 'double' or 'pix'"):
        parse_generate_request({**SONG, "dcwMode": "wide"})
    assert parse_generate_request({**SONG, "dcw_mode": "low"}).warnings == []  # a field, not unsupported


def test_dcw_is_off_by_default_on_base_models(base):
    assert np.array_equal(song(base, guidance_scale=3), song(base, guidance_scale=3, dcw_enabled=False))
    assert not np.allclose(song(base, guidance_scale=3, dcw_enabled=True), song(base, guidance_scale=3))


def test_jobs_that_differ_in_dcw_or_repaint_fields_never_share_a_batch():
    one = parse_generate_request(SONG)
    for change in ({"dcw_enabled": False}, {"dcw_mode": "pix"}, {"dcw_scaler": 0.1}, {"dcw_high_scaler": 0.1},
                   {"repaint_mode": "aggressive"}, {"repaint_strength": 0.2},
                   {"repaint_latent_crossfade_frames": 3}, {"repaint_wav_crossfade_sec": 0.2}):
        assert run.batch_key(parse_generate_request({**SONG, **change})) != run.batch_key(one), change
    from tests.test_source_tasks import REPAINT

    repaint = parse_generate_request(REPAINT)
    assert run.batch_key(parse_generate_request({**REPAINT, "chunk_mask_mode": "explicit"})) != run.batch_key(repaint)
    # a text2music has no span: its chunk mask is the same either way, so it batches either way
    assert run.batch_key(parse_generate_request({**SONG, "chunk_mask_mode": "explicit"})) == run.batch_key(one)


def guided_steps(loaded, **fields) -> list[float]:
    """The timesteps at which the DiT ran with guidance (the pipeline runs the conditional and the unconditional
    branch as one batch of twice the size)."""
    seen: list[tuple[int, float]] = []
    hook = loaded.pipe.transformer.register_forward_hook(
        lambda module, args, kwargs, out: seen.append((kwargs["hidden_states"].shape[0], float(kwargs["timestep"][0]))),
        with_kwargs=True)
    try:
        song(loaded, **fields)
    finally:
        hook.remove()
    return [t for batch, t in seen if batch == 2]


def test_the_cfg_interval_is_upstreams_start_le_t_le_end(base):
    # shift 1 and 4 steps: t = 1, 0.75, 0.5, 0.25; upstream guides where cfg_interval_start <= t <= cfg_interval_end
    fields = {"guidance_scale": 3, "shift": 1, "inference_steps": 4}
    assert guided_steps(base, **fields, cfg_interval_start=0.6, cfg_interval_end=1.0) == [1.0, 0.75]
    assert guided_steps(base, **fields, cfg_interval_start=0.0, cfg_interval_end=0.5) == [0.5, 0.25]
    assert guided_steps(base, **fields) == [1.0, 0.75, 0.5, 0.25]
