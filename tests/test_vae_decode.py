"""The VAE decode in chunks: the same audio as one whole decode, no seam at a join, the pipeline's levels."""

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from inference import run
from inference.contract import parse_generate_request
from inference.vae_decode import ChunkPlan, decode_latents, fold_weight_norm, normalise_levels


@pytest.fixture(scope="module")
def vae():
    from inference.demo_checkpoint import build_pipeline

    return build_pipeline().vae.eval()


def test_chunked_decode_is_the_whole_decode(vae):
    latents = torch.randn(2, 12 * 25, 8, generator=torch.Generator().manual_seed(0))  # 12 s, batch 2
    with torch.inference_mode():
        whole = decode_latents(vae, latents, ChunkPlan(chunk_latents=10_000))
        chunked = decode_latents(vae, latents, ChunkPlan(chunk_latents=50, context_latents=16, fade_latents=4))
    assert len(ChunkPlan(chunk_latents=50).cores(300)) == 6
    assert chunked.shape == whole.shape == (2, 2, 12 * 48_000)
    assert float((chunked - whole).abs().max()) < 1e-5 * float(whole.abs().max())


def test_without_context_the_joins_differ(vae):
    """The context frames are what makes a chunk's core exact: without them the joins are wrong."""
    latents = torch.randn(1, 8 * 25, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = decode_latents(vae, latents, ChunkPlan(chunk_latents=10_000))
        blind = decode_latents(vae, latents, ChunkPlan(chunk_latents=50, context_latents=0, fade_latents=0))
    assert float((blind - whole).abs().max()) > 1e-3 * float(whole.abs().max())


class _ConstantDecoder:
    """Decodes every latent frame to `hop` samples of 1.0: any dip or bump at a join shows up."""

    dtype = torch.float32

    def __init__(self, hop: int):
        self.hop = hop

    def decode(self, z):
        return SimpleNamespace(sample=torch.ones(z.shape[0], 2, z.shape[-1] * self.hop))


@pytest.mark.parametrize("frames", [1, 99, 100, 101, 257, 1000])
def test_overlap_add_weights_sum_to_one(frames):
    audio = decode_latents(_ConstantDecoder(hop=7), torch.zeros(1, frames, 8),
                           ChunkPlan(chunk_latents=40, context_latents=6, fade_latents=5))
    assert audio.shape == (1, 2, frames * 7)
    torch.testing.assert_close(audio, torch.ones_like(audio), rtol=0, atol=1e-6)


def test_folding_weight_norm_keeps_the_audio(vae):
    from inference.demo_checkpoint import build_pipeline

    folded = build_pipeline().vae.eval()
    assert fold_weight_norm(folded) > 0
    assert fold_weight_norm(folded) == 0  # already folded
    latents = torch.randn(1, 50, 8, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        torch.testing.assert_close(decode_latents(folded, latents), decode_latents(vae, latents),
                                   rtol=1e-4, atol=1e-5)


def test_levels_follow_the_pipeline():
    loud = torch.tensor([[[0.5, -3.0, 1.0]]])
    quiet = torch.tensor([[[0.01, -0.02, 0.0]]])
    for audio in (loud, quiet):
        out = normalise_levels(audio)
        assert float(out.abs().max()) == pytest.approx(10 ** (-1 / 20), rel=1e-6)
        torch.testing.assert_close(out / out.abs().max(), audio / audio.abs().max())


def test_a_near_silent_song_is_not_amplified():
    """Upstream's normalize_audio returns a song whose peak is under 1e-6 unchanged (it would be lifted to -1 dBFS,
    noise floor and all)."""
    hush = torch.tensor([[[5e-7, -2e-7, 0.0]]])
    silent = torch.zeros(1, 2, 4)
    torch.testing.assert_close(normalise_levels(hush), hush, rtol=0, atol=0)
    torch.testing.assert_close(normalise_levels(silent), silent, rtol=0, atol=0)
    both = normalise_levels(torch.cat([hush, torch.tensor([[[0.5, -0.1, 0.0]]])]))
    assert torch.equal(both[0], hush[0]) and float(both[1].abs().max()) == pytest.approx(10 ** (-1 / 20))


def test_bad_chunk_plans_are_refused():
    with pytest.raises(ValueError, match="chunk_latents"):
        ChunkPlan(chunk_latents=0)
    with pytest.raises(ValueError, match="fade_latents"):
        ChunkPlan(chunk_latents=12, context_latents=8, fade_latents=4)


def test_a_song_longer_than_a_chunk_sounds_the_same(loaded):
    request = parse_generate_request({"prompt": "ambient", "lyrics": "[inst]", "audio_duration": 10,
                                      "inference_steps": 2, "seed": 5}, loaded.limits)
    [whole] = run.generate(loaded, [request])
    chunked = replace(loaded, vae_plan=ChunkPlan(chunk_latents=75))  # 3 s chunks: 4 of them
    [joined] = run.generate(chunked, [request])
    a, b = whole.songs[0].samples, joined.songs[0].samples
    assert a.shape == b.shape == (2, 480_000)
    np.testing.assert_allclose(a, b, atol=1e-5)
