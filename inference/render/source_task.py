"""How a source-audio task's song follows from its source, as upstream reads it.

- **Length.** A repaint, cover, extract, lego or complete renders exactly as long as its source: upstream locks
  the duration to it, so the model is told the length it makes (a caller's ``audio_duration`` is replaced, with
  a warning, and never trims the source).
- **Outpainting.** A repaint or lego whose span starts before 0 or ends past the source's end extends the song:
  the source is padded with silence (zeros in the waveform, as upstream pads it) on that side, and the span
  moves with the front pad. The longer song must still fit the deployment's longest, and the span must not be
  empty.
- **Reproducible.** The pipeline draws the source's and reference's VAE posterior sample from torch's global
  generator (as upstream does); ``seeded_global_rng`` seeds it from the audio inputs' own bytes for the call,
  so one request run twice gives the same repaint or cover, whichever batch it runs in.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from inference.contract import GenerateRequest
from inference.contract.vocabulary import AUDIO_INPUT_FIELDS, SOURCE_AUDIO_TASKS
from inference.errors import InputError

SPANNED_TASKS = ("repaint", "lego")  # tasks whose repainting_start/end mark a span of the source


@dataclass(frozen=True)
class SourceLayout:
    source_s: float
    front_pad_s: float = 0.0
    back_pad_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.source_s + self.front_pad_s + self.back_pad_s

    def repaint_span(self, request: GenerateRequest) -> tuple[float, float]:
        """The repainted span in the padded song's time."""
        end = self.source_s if request.repainting_end == -1 else request.repainting_end
        return request.repainting_start + self.front_pad_s, end + self.front_pad_s


def source_layout(request: GenerateRequest, source_s: float, max_duration_s: float) -> SourceLayout | None:
    """The layout of a source-audio task with ``source_s`` seconds of source; None for a song made from text or
    from audio codes."""
    if request.task_type not in SOURCE_AUDIO_TASKS or request.audio_code_string:
        return None
    layout = SourceLayout(source_s)
    if request.task_type in SPANNED_TASKS:
        end = source_s if request.repainting_end == -1 else request.repainting_end
        if end <= request.repainting_start:
            where = "the source's end" if request.repainting_end == -1 else "repainting_end"
            raise InputError(f"repainting_start must be before {where} ({end:g} s) (got "
                             f"{request.repainting_start:g})")
        layout = SourceLayout(source_s, max(0.0, -request.repainting_start), max(0.0, end - source_s))
    if layout.duration_s > max_duration_s + 1e-6:
        what = "the source audio" if layout.duration_s == source_s else \
            "repainting_start/repainting_end extend the source to"
        raise InputError(f"{what} {layout.duration_s:g} s, longer than this GPU's longest song "
                         f"({max_duration_s:g} s, ACESTEP_MAX_DURATION)")
    return layout


def pad_source(audio: torch.Tensor, layout: SourceLayout, sample_rate: int) -> torch.Tensor:
    """The source [channels, samples] with silence before and after, as the layout says."""
    front, back = int(layout.front_pad_s * sample_rate), int(layout.back_pad_s * sample_rate)
    return torch.nn.functional.pad(audio, (front, back)) if front or back else audio


def duration_warning(request: GenerateRequest, layout: SourceLayout) -> str | None:
    if request.audio_duration is not None and abs(request.audio_duration - layout.duration_s) > 0.05:
        return (f"audio_duration {request.audio_duration:g} was replaced by the length of the source audio "
                f"({layout.duration_s:g} s): a {request.task_type} is as long as its source")
    return None


def audio_inputs_seed(request: GenerateRequest) -> int:
    """A seed from the bytes of the request's audio inputs (the same for every job of a batch)."""
    digest = hashlib.sha256()
    for name in AUDIO_INPUT_FIELDS:
        data = request.audio_input(name)
        digest.update(len(data or b"").to_bytes(8, "little"))
        digest.update(data or b"")
    return int.from_bytes(digest.digest()[:8], "little")


@contextmanager
def seeded_global_rng(device: torch.device, seed: int):
    """torch's global generators (the CPU's and the device's) seeded for the block and restored after it."""
    accelerated = device.type not in ("cpu", "meta")
    with torch.random.fork_rng(devices=[device] if accelerated else [],
                               device_type=device.type if accelerated else "cuda"):
        torch.manual_seed(seed)
        yield
