"""Everything one pipeline call is wrapped in to render what upstream renders, chosen from the batch's request:
torch's global generator seeded from the audio inputs, the noise trimmed to whole frames, the per-step
corrections (DCW, the repaint's injection and crossfade), the cover's condition switch and the DiT's chunk
mask, each put back when the call ends."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from inference.contract import GenerateRequest
from inference.load import LoadedPipeline
from inference.render.cover import CoverSwitch
from inference.render.dcw import DcwSettings
from inference.render.pipeline_fixes import whole_frames
from inference.render.repaint import RepaintMode, RepaintSteps, repaint_mode, whole_song_mask
from inference.render.sampler_steps import Dcw, corrected_steps
from inference.render.source_task import SPANNED_TASKS, SourceLayout, audio_inputs_seed, seeded_global_rng


@dataclass
class UpstreamCall:
    """What the call is wrapped in (``context``), and what the pipeline itself is then told."""

    context: contextlib.ExitStack
    repaint: RepaintMode | None  # the repaint's mode, for the splice after decoding
    cover_strength: float  # the pipeline's own audio_cover_strength (1 when the switch is done here)


def dcw_for(loaded: LoadedPipeline, request: GenerateRequest) -> DcwSettings | None:
    """The request's DCW, or None when it is off (unset: on for turbo models, off for base/sft, as upstream)."""
    enabled = request.dcw_enabled if request.dcw_enabled is not None else loaded.is_turbo
    return DcwSettings(request.dcw_mode, request.dcw_scaler, request.dcw_high_scaler) if enabled else None


def upstream_call(loaded: LoadedPipeline, request: GenerateRequest, layout: SourceLayout | None,
                  has_audio_inputs: bool, has_codes: bool) -> UpstreamCall:
    pipe = loaded.pipe
    stack = contextlib.ExitStack()
    if has_audio_inputs:
        stack.enter_context(seeded_global_rng(loaded.device, audio_inputs_seed(request)))
    stack.enter_context(whole_frames(pipe))
    mode = repaint_mode(request) if layout is not None else None
    repaint = RepaintSteps(mode, loaded.is_turbo) if mode else None
    dcw = dcw_for(loaded, request)
    corrections = [c for c in (Dcw(dcw) if dcw and dcw.active else None, repaint) if c is not None]
    stack.enter_context(corrected_steps(pipe.scheduler, corrections))
    if repaint:
        stack.enter_context(repaint.observe(pipe))
    covering = request.task_type == "cover" or has_codes
    strength = request.audio_cover_strength
    if covering and strength < 1.0:
        stack.enter_context(CoverSwitch(strength).observe(pipe))
        strength = 1.0
    if layout is not None and request.task_type in SPANNED_TASKS and request.chunk_mask_mode == "auto":
        stack.enter_context(whole_song_mask(pipe))
    return UpstreamCall(stack, mode, strength)

