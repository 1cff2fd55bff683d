"""Latents to audio: the VAE decode in chunks with overlap-add, in its own dtype, then the pipeline's levels.

The Oobleck decoder is convolutional, so its memory and time grow with the song: decoding a 600 s × 8 batch in
one call needs tens of GiB of activations at 48 kHz. Here the latent sequence is cut into chunks of
``chunk_latents`` frames; each chunk is decoded with ``context_latents`` extra frames on both sides (more than
the decoder's receptive field, so a chunk's core is what a whole decode would give) and the chunks are joined
by overlap-add: complementary linear ramps ``fade_latents`` wide that sum to exactly one, so nothing at a
join is louder, quieter or discontinuous. A song no longer than one chunk is decoded in one call, as before.

Levels follow ``AceStepPipeline``: a song peaking above 1 is divided by its peak, then every song is scaled
to a peak of -1 dBFS.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TARGET_PEAK = 10.0 ** (-1.0 / 20.0)  # -1 dBFS, as the pipeline
SILENT_PEAK = 1e-6  # upstream's normalize_audio leaves a song this quiet alone


@dataclass(frozen=True)
class ChunkPlan:
    """How a latent sequence is cut: chunk cores, context on each side, crossfade width (all in latent frames)."""

    chunk_latents: int = 750  # 30 s at 25 latent frames a second
    context_latents: int = 16  # the decoder's receptive field is about ±8 latent frames
    fade_latents: int = 4

    def __post_init__(self) -> None:
        if self.chunk_latents < 1 or self.context_latents < 0 or self.fade_latents < 0:
            raise ValueError("chunk_latents must be positive; context_latents and fade_latents non-negative")
        if self.fade_latents > self.context_latents or 4 * self.fade_latents > self.chunk_latents:
            raise ValueError("fade_latents must be at most context_latents and a quarter of chunk_latents")

    def cores(self, length: int) -> list[tuple[int, int]]:
        """Equal cores of at most ``chunk_latents`` frames (so none is too short to crossfade)."""
        count = max(1, -(-length // self.chunk_latents))
        bounds = [round(i * length / count) for i in range(count + 1)]
        return list(zip(bounds[:-1], bounds[1:]))


def _ramp(n: int, device: torch.device) -> torch.Tensor:
    """n weights rising from just above 0 to just below 1; a ramp plus its reverse is exactly 1 everywhere."""
    return (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n


def decode_latents(vae, latents: torch.Tensor, plan: ChunkPlan = ChunkPlan()) -> torch.Tensor:
    """[batch, frames, channels] latents (the pipeline's layout) to float32 audio [batch, channels, samples]."""
    z = latents.transpose(1, 2).to(dtype=vae.dtype)
    length = z.shape[-1]
    cores = plan.cores(length)
    if len(cores) == 1:
        return vae.decode(z).sample.float()
    out = None
    hop = None
    for index, (start, end) in enumerate(cores):
        first, last = index == 0, index == len(cores) - 1
        win_start, win_end = max(0, start - plan.context_latents), min(length, end + plan.context_latents)
        audio = vae.decode(z[:, :, win_start:win_end]).sample.float()
        if hop is None:
            hop = audio.shape[-1] // (win_end - win_start)  # samples per latent frame
            out = torch.zeros(audio.shape[0], audio.shape[1], length * hop, device=audio.device)
        # keep [start - fade, end + fade) of this window (less at the song's ends), ramped at inner joins
        keep_start = start if first else start - plan.fade_latents
        keep_end = end if last else end + plan.fade_latents
        piece = audio[:, :, (keep_start - win_start) * hop:(keep_end - win_start) * hop]
        fade = plan.fade_latents * hop * 2
        if fade:
            if not first:
                piece[:, :, :fade] *= _ramp(fade, piece.device)
            if not last:
                piece[:, :, -fade:] *= _ramp(fade, piece.device).flip(0)
        out[:, :, keep_start * hop:keep_end * hop] += piece
    return out


def normalise_levels(audio: torch.Tensor) -> torch.Tensor:
    """Upstream's two-stage levels: ``anti_clip``, then ``to_target_peak`` (a repaint splices its source back in
    between the two)."""
    return to_target_peak(anti_clip(audio))


def anti_clip(audio: torch.Tensor) -> torch.Tensor:
    """A song [batch, channels, samples] whose peak is above 1 divided by that peak (upstream's decode step)."""
    return audio / audio.abs().amax(dim=[1, 2], keepdim=True).clamp(min=1.0)


def to_target_peak(audio: torch.Tensor) -> torch.Tensor:
    """Each song's peak to -1 dBFS, except a near-silent song (peak below ``SILENT_PEAK``, about -120 dBFS),
    which is left as it is (upstream's ``normalize_audio``)."""
    peak = audio.abs().amax(dim=[1, 2], keepdim=True)
    gain = torch.where(peak < SILENT_PEAK, torch.ones_like(peak), TARGET_PEAK / peak.clamp(min=SILENT_PEAK))
    return audio * gain


def fold_weight_norm(vae) -> int:
    """Fold each weight-normalised convolution's (g, v) into one weight, once at load instead of on every
    forward: the same weights, fewer kernels per chunk. Returns how many convolutions were folded."""
    from torch.nn.utils import remove_weight_norm

    folded = 0
    for module in vae.modules():
        if hasattr(module, "weight_g") and hasattr(module, "weight_v"):
            remove_weight_norm(module)
            folded += 1
    return folded


def chunk_plan_for(chunk_seconds: float, latents_per_second: float) -> ChunkPlan:
    return ChunkPlan(chunk_latents=max(ChunkPlan.fade_latents * 4, round(chunk_seconds * latents_per_second)))
