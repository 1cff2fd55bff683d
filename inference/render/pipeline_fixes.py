"""Where diffusers' ``AceStepPipeline`` needs a hand, for one call, without forking it.

- **Whole latent frames.** The pipeline knows its song's latent frames L, then sizes the initial noise as
  ``ceil((L / 25) * 25)``, which float rounding makes L + 1 for about 6 % of lengths (7, 14, 411 frames: a
  16.44 s source, or 16.43 s asked for), and the DiT then refuses the mismatch with its context. The noise is
  trimmed back to L frames: the same values, since a generator fills a tensor in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from inference.render.patching import replaced


@contextmanager
def whole_frames(pipe) -> Iterator[None]:
    prepare = pipe.prepare_latents

    def trimmed(*args, **kwargs):
        latents = prepare(*args, **kwargs)
        frames = round(kwargs["audio_duration"] * pipe.latents_per_second)
        return latents[:, :frames]

    with replaced(pipe, prepare_latents=trimmed):
        yield
