"""Validated requests to audio: one pipeline call for a list of compatible requests.

``generate`` takes a list of requests and returns one ``Generation`` per request, so requests from
several jobs that agree on everything the pipeline takes once per call (duration, steps, metas, task;
see ``batch_key``) can share one batch. Each song has its own seeded generator, so its audio does not
depend on the batch it ran in. Never imports runpod or an HTTP framework.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from inference.audio_input import decode_audio_inputs
from inference.errors import GenerationError
from inference.accelerator_faults import out_of_memory
from inference.hardware import free_accelerator_memory
from inference.load import LoadedPipeline
from inference.contract import DEFAULT_DURATION_S, SOURCE_AUDIO_TASKS, GenerateRequest, Metas
from inference.render.call import upstream_call
from inference.render.repaint import splice
from inference.seeds import generators_for, resolve_seeds
from inference.render.source_task import SPANNED_TASKS, duration_warning, pad_source, source_layout
from inference.vae_decode import anti_clip, decode_latents, normalise_levels, to_target_peak

# progress(fraction 0..1, stage): the DiT's steps take the job to 0.9, the VAE decode and delivery the rest
ProgressFn = Callable[[float, str], None]
DIT_SHARE = 0.9
INSTRUMENTAL_LYRICS_FOR_DIT = "[Instrumental]"
RANDOM_WEIGHTS_WARNING = "this worker's checkpoint has random weights (demo): the audio is noise"


@dataclass
class Song:
    samples: np.ndarray  # float32 [channels, frames], peak at most 1.0
    sample_rate: int
    seed: int

    @property
    def duration_s(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


@dataclass
class Generation:
    """The songs of one request and what was actually sent to the model."""

    songs: list[Song]
    prompt: str
    lyrics: str
    metas: Metas
    warnings: list[str] = field(default_factory=list)
    generate_s: float = 0.0
    lm_s: float = 0.0


@dataclass
class _Plan:
    request: GenerateRequest
    duration_s: float
    seeds: list[int]
    lyrics_for_dit: str
    warnings: list[str]


def _plan(loaded: LoadedPipeline, request: GenerateRequest) -> _Plan:
    warnings = list(request.warnings)
    if loaded.is_turbo and "guidance_scale" in request.model_fields_set and request.guidance_scale != 1.0:
        warnings.append(f"guidance_scale {request.guidance_scale:g} is ignored on turbo models (1.0 is used)")
    if loaded.random_weights:
        warnings.append(RANDOM_WEIGHTS_WARNING)
    seeds, seed_warnings = resolve_seeds(request)
    duration = planned_duration(loaded, request)
    lyrics = INSTRUMENTAL_LYRICS_FOR_DIT if request.is_instrumental else request.lyrics
    return _Plan(request, duration, seeds, lyrics, warnings + seed_warnings)


def planned_duration(loaded: LoadedPipeline, request: GenerateRequest, source_s: float | None = None) -> float:
    """The length of the songs: a source-audio task's source (``source_s`` seconds, with its outpainting,
    ``inference.render.source_task``), else the request's, else the default capped by this deployment's longest."""
    layout = source_layout(request, source_s, loaded.limits.max_duration_s) if source_s is not None else None
    if layout is not None:
        return layout.duration_s
    if request.audio_duration is not None:
        return request.audio_duration
    return min(DEFAULT_DURATION_S, loaded.limits.max_duration_s)


def batch_key(request: GenerateRequest) -> tuple:
    """Requests with equal keys can run in one pipeline call (the pipeline takes these once per call)."""
    from_source = request.task_type in SOURCE_AUDIO_TASKS and not request.audio_code_string  # the source's length
    duration = None if from_source else \
        request.audio_duration if request.audio_duration is not None else DEFAULT_DURATION_S
    return (duration, request.inference_steps, request.guidance_scale, request.shift, request.bpm,
            request.key_scale, request.time_signature, request.task_type, request.src_audio_base64,
            request.reference_audio_base64, request.src_audio_url, request.reference_audio_url,
            request.repainting_start, request.repainting_end, request.audio_cover_strength, request.instruction,
            request.track_name, tuple(request.track_classes or ()), request.cfg_interval_start,
            request.cfg_interval_end, tuple(request.timesteps or ()), request.dcw_enabled, request.dcw_mode,
            request.dcw_scaler, request.dcw_high_scaler, request.repaint_mode, request.repaint_strength,
            request.chunk_mask_mode if request.task_type in SPANNED_TASKS else None,
            request.repaint_latent_crossfade_frames, request.repaint_wav_crossfade_sec)


def generate(loaded: LoadedPipeline, requests: list[GenerateRequest],
             progress: ProgressFn | None = None, codes: list[str | None] | None = None,
             audio_inputs: Mapping[str, torch.Tensor] | None = None) -> list[Generation]:
    """Run compatible requests as one batch; returns one ``Generation`` per request, in order.

    ``codes``: the 5 Hz LM's audio codes per request (its songs share them), or None. ``audio_inputs``: the batch's
    audio inputs already decoded (``GenerationService`` decodes them off the GPU thread; ``batch_key`` makes
    them the same for every request); None = decoded here."""
    if not requests:
        return []
    codes = codes or [None] * len(requests)
    if len({batch_key(r) for r in requests}) != 1 or len({c is None for c in codes}) != 1:
        raise ValueError("generate() needs requests that agree on batch_key() and on having codes; split them")
    plans = [_plan(loaded, r) for r in requests]
    first = plans[0].request
    if audio_inputs is None:
        audio_inputs = decode_audio_inputs(first, loaded.sample_rate)
    source = audio_inputs.get("src_audio_base64")
    layout = source_layout(first, source.shape[-1] / loaded.sample_rate, loaded.limits.max_duration_s) \
        if source is not None else None
    repaint_span = (first.repainting_start, None if first.repainting_end == -1 else first.repainting_end)
    if layout is not None:
        for plan in plans:
            plan.duration_s = layout.duration_s
            if (note := duration_warning(plan.request, layout)) is not None:
                plan.warnings.append(note)
        source = pad_source(source, layout, loaded.sample_rate)
        if first.task_type in SPANNED_TASKS:
            repaint_span = layout.repaint_span(first)
    prompts = [p.request.prompt for p in plans for _ in p.seeds]
    lyrics = [p.lyrics_for_dit for p in plans for _ in p.seeds]
    languages = [p.request.vocal_language for p in plans for _ in p.seeds]
    seeds = [s for p in plans for s in p.seeds]
    song_codes = [c for p, c in zip(plans, codes) for _ in p.seeds] if codes[0] is not None else None
    duration = plans[0].duration_s
    steps = len(first.timesteps) if first.timesteps else first.inference_steps

    def on_step_end(pipe, step_index, timestep, callback_kwargs):
        if progress is not None:
            progress(DIT_SHARE * (step_index + 1) / steps, "generating")
        return callback_kwargs

    started = time.perf_counter()
    audio = None
    call = upstream_call(loaded, first, layout, bool(audio_inputs), song_codes is not None)
    try:
        with torch.inference_mode(), call.context:
            output = loaded.pipe(
                prompt=prompts, lyrics=lyrics, vocal_language=languages, audio_duration=duration,
                num_inference_steps=steps, guidance_scale=1.0 if loaded.is_turbo else first.guidance_scale,
                shift=first.shift, generator=generators_for(seeds), bpm=first.bpm,
                keyscale=first.key_scale or None, timesignature=first.time_signature or None,
                task_type=first.task_type,
                src_audio=source if first.task_type in SOURCE_AUDIO_TASKS else None,  # text2music: ignored, as upstream
                reference_audio=audio_inputs.get("reference_audio_base64"),
                repainting_start=repaint_span[0], repainting_end=repaint_span[1],
                audio_cover_strength=call.cover_strength,
                audio_codes=song_codes, instruction=first.instruction, track_name=first.track_name,
                complete_track_classes=first.track_classes,
                # upstream guides while start <= t <= end; the pipeline compares against 1 - t
                cfg_interval_start=1.0 - first.cfg_interval_end, cfg_interval_end=1.0 - first.cfg_interval_start,
                timesteps=first.timesteps,
                callback_on_step_end=on_step_end, output_type="latent")
            if progress is not None:
                progress(DIT_SHARE, "decoding")
            audio = decode_latents(loaded.pipe.vae, output.audios, loaded.vae_plan)
            if call.repaint is not None and call.repaint.splice:  # between upstream's two level steps
                audio = to_target_peak(splice(anti_clip(audio), source, *repaint_span, loaded.sample_rate,
                                              call.repaint.wav_crossfade_s))
            else:
                audio = normalise_levels(audio)
            audio = audio.cpu().numpy()
    except RuntimeError as err:  # torch.OutOfMemoryError is one
        if not out_of_memory(err):
            raise
    if audio is None:  # out of memory; freed outside the except, whose traceback holds the batch's tensors
        free_accelerator_memory()
        raise GenerationError(_out_of_memory_message(len(seeds), duration))
    generate_s = time.perf_counter() - started

    if audio.shape[0] != len(seeds):
        raise RuntimeError(f"the pipeline returned {audio.shape[0]} songs for {len(seeds)} requested")
    frames = min(audio.shape[-1], int(round(duration * loaded.sample_rate)))
    if not np.isfinite(audio).all():
        raise GenerationError("the model produced non-finite audio (NaN/inf); try another seed or a float32/bfloat16 "
                              "dtype (ACESTEP_DTYPE)")
    results, offset = [], 0
    for plan in plans:
        songs = [Song(samples=audio[offset + i, :, :frames], sample_rate=loaded.sample_rate, seed=seed)
                 for i, seed in enumerate(plan.seeds)]
        offset += len(plan.seeds)
        r = plan.request
        results.append(Generation(
            songs=songs, prompt=r.prompt, lyrics=r.lyrics,
            metas=Metas(bpm=r.bpm, duration=frames / loaded.sample_rate, keyscale=r.key_scale,
                        timesignature=r.time_signature, vocal_language=r.vocal_language),
            warnings=plan.warnings, generate_s=generate_s))
    if progress is not None:
        progress(0.95, "generated")
    return results


def _out_of_memory_message(songs: int, duration: float) -> str:
    return (f"out of GPU memory generating {songs} × {duration:g} s of audio; try a shorter audio_duration or a "
            f"smaller batch_size")

