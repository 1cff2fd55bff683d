"""One job, start to finish: validate, generate, encode, deliver, report. Shared by every adapter.

``handler.py`` (RunPod) and the HTTP shim call ``GenerationService``; neither touches tensors, and this
module never sees a RunPod job dict or an HTTP request.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inference import run
from inference.accelerator_faults import LM_OUT_OF_MEMORY, out_of_memory
from inference.audio import encode_all, expected_bytes
from inference.audio_fetch import fetch_audio_inputs
from inference.audio_input import decode_audio_inputs
from inference.errors import (
    CachedModelError,
    CancelledJob,
    CheckpointError,
    GenerationError,
    UnsupportedError,
    one_line,
)
from inference.hardware import free_accelerator_memory
from inference.lm.load import load_lm, wanted_lm
from inference.model_cache import with_cached_models
from inference.lm.planner import LmPlanner
from inference.lm.sampling import Sampling
from inference.lm.stage import Prepared, prepare, user_metas
from inference.lora.library import Active, LoraLibrary, batch_part
from inference.load import LoadedPipeline, load_pipeline
from inference.model_catalog import describe_models
from inference.contract import (
    AudioOut,
    FormatInputRequest,
    FormatInputResponse,
    GenerateRequest,
    GenerateResponse,
    LoraInfo,
    ModelsResponse,
    Timings,
    parse_format_input_request,
    parse_generate_request,
)
from inference.settings import Settings
from inference.delivery import Target, choose_target

if TYPE_CHECKING:
    import torch

log = logging.getLogger("acestep.service")


@dataclass
class Staged:
    """A validated job with its audio inputs decoded (``admit``), then planned by the LM (``plan``), waiting
    for the DiT."""

    job_id: str
    request: GenerateRequest
    target: Target
    started: float
    progress: run.ProgressFn | None = None
    audio_inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    prepared: Prepared | None = None
    adapters: tuple[Active, ...] = ()  # its LoRA adapters, checked at admission
    cancelled: threading.Event = field(default_factory=threading.Event)  # its caller stopped waiting


@dataclass
class Rendered:
    """A job whose songs are made but not yet encoded or delivered."""

    job_id: str
    request: GenerateRequest
    target: Target
    generation: run.Generation
    lm_tokens: int
    started: float
    lm_codes: str | None = None  # the audio codes the 5 Hz LM wrote, returned so they can be rendered again


class GenerationService:
    def __init__(self, loaded: LoadedPipeline, settings: Settings, planner: LmPlanner | None = None):
        self.loaded = loaded
        self.settings = settings
        self.planner = planner
        self.lora = LoraLibrary(settings, loaded.pipe.transformer)

    @classmethod
    def start(cls, settings: Settings) -> "GenerationService":
        """The cold start: load (and warm up) the checkpoint and the 5 Hz LM once; with no checkpoint baked in,
        from the host's model cache."""
        cached = with_cached_models(settings, wanted_lm(settings))
        from_cache = cached.settings is not settings or cached.build is not None
        settings = cached.settings
        try:
            loaded = load_pipeline(settings, cached.build)
            lm = load_lm(settings, loaded.device, loaded.dtype)
        except (CheckpointError, OSError) as err:
            if not from_cache or isinstance(err, CachedModelError):
                raise
            # what the host's cache holds may be whole for a later worker: never a crash loop
            raise CachedModelError(f"the cached checkpoint could not be loaded: {one_line(str(err), 300)}") from err
        return cls(loaded, settings, LmPlanner(lm, loaded.limits.max_duration_s) if lm else None)

    @property
    def lm_model(self) -> str | None:
        return self.planner.name if self.planner else None

    def models(self) -> ModelsResponse:
        described = describe_models(self.loaded.dit_model, self.planner.name if self.planner else None,
                                    self.loaded.is_turbo, self.loaded.supports_audio_codes)
        return described.model_copy(update={"lora_adapters": [LoraInfo(**a) for a in self.lora.available()]})

    def format_input(self, job_input: Any) -> FormatInputResponse:
        """The LM rewrites caption and lyrics and fills in the metadata the caller did not give."""
        request = job_input if isinstance(job_input, FormatInputRequest) else parse_format_input_request(job_input)
        if self.planner is None:
            raise UnsupportedError("format_input needs the 5 Hz LM, which this worker has not loaded "
                                   "(ACESTEP_LM_MODEL)")
        user = user_metas(request)
        run = _lm_call(self.planner.format, request.prompt, request.lyrics, user,
                       Sampling(temperature=request.temperature), random.randrange(2**32))
        out = run.output
        return FormatInputResponse(
            caption=out.caption or request.prompt, lyrics=out.lyrics or request.lyrics,
            bpm=user.get("bpm", out.bpm), key_scale=user.get("keyscale", out.keyscale or ""),
            time_signature=user.get("timesignature", out.timesignature or ""),
            duration=float(user.get("duration", out.duration)) if user.get("duration", out.duration) else None,
            vocal_language=user.get("language", out.language or "unknown"))

    def parse(self, job_input: Any) -> GenerateRequest:
        """Validate a job's input against this deployment's limits (tier, turbo or base)."""
        return parse_generate_request(job_input, self.loaded.limits)

    def generate(self, job_input: Any, job_id: str, s3_config: Any = None,
                 progress: run.ProgressFn | None = None, target: Target | None = None) -> GenerateResponse:
        """One job end to end, synchronously (``GpuWorker`` runs the same steps with batching and overlap).
        ``job_input`` is a raw input or an already validated request; ``target``
        overrides where the audio goes (the shim's pod mode always writes to its output folder)."""
        [rendered] = self.render_batch([self.stage(job_input, job_id, s3_config, progress, target)])
        return self.deliver(rendered, progress)

    def stage(self, job_input: Any, job_id: str, s3_config: Any = None, progress: run.ProgressFn | None = None,
              target: Target | None = None) -> Staged:
        """All a job needs before the DiT: ``admit``, then ``plan``."""
        return self.plan(self.admit(job_input, job_id, s3_config, progress, target))

    def admit(self, job_input: Any, job_id: str, s3_config: Any = None, progress: run.ProgressFn | None = None,
              target: Target | None = None) -> Staged:
        """Validate, choose where the audio goes, decode the audio inputs: the host's part of staging (``GpuWorker``
        runs it on its admission thread, so the GPU thread never decodes a file)."""
        started = time.perf_counter()
        request = job_input if isinstance(job_input, GenerateRequest) else self.parse(job_input)
        if target is None:
            target = choose_target(self.settings, s3_config)  # a bad s3Config fails before any GPU time is spent
        fetch_audio_inputs(request, self.settings, s3_config)  # inputs given by URL, with their guards
        audio_inputs = decode_audio_inputs(request, self.loaded.sample_rate)
        if request.audio_duration is not None or self.planner is None:  # else the LM chooses it: checked in plan
            self._check_deliverable(request, target, audio_inputs)
        adapters = self.lora.resolve(request.lora, s3_config)  # found, fetched and checked off the GPU thread
        return Staged(job_id, request, target, started, progress, audio_inputs, adapters=adapters)

    def plan(self, staged: Staged) -> Staged:
        """The 5 Hz LM's part of staging (on the GPU thread): plan, rewrite, audio codes, as the request asks."""
        request = staged.request
        if staged.progress and self.planner and (request.thinking or request.use_format or request.sample_query):
            staged.progress(0.0, "planning")
        staged.prepared = _lm_call(prepare, self.planner, request, self.loaded.supports_audio_codes)
        self._check_deliverable(staged.prepared.request, staged.target, staged.audio_inputs)
        return staged

    def _check_deliverable(self, request: GenerateRequest, target: Target, audio_inputs: dict) -> None:
        """Refuse, before the DiT runs, songs the target could not take (inline delivery's size limit)."""
        source = audio_inputs.get("src_audio_base64")
        duration = run.planned_duration(self.loaded, request,
                                        source.shape[-1] / self.loaded.sample_rate if source is not None else None)
        target.check_fits(expected_bytes(request.audio_format, request.mp3_bitrate, duration, request.batch_size,
                                         self.loaded.sample_rate))

    @staticmethod
    def batch_key(staged: Staged) -> tuple:
        """Staged jobs with equal keys can be rendered in one pipeline call."""
        return run.batch_key(staged.prepared.request), staged.prepared.codes is None, batch_part(staged.adapters)

    @staticmethod
    def batch_size(staged: Staged) -> int:
        return staged.prepared.request.batch_size

    def render_batch(self, staged: list[Staged]) -> list[Rendered]:
        """The DiT and the VAE for staged jobs that share a ``batch_key``: one pipeline call for all of them.
        Nothing is encoded yet, so the next batch can render while these are encoded and uploaded."""
        listeners = [s.progress for s in staged if s.progress is not None]

        def progress(fraction: float, stage: str) -> None:
            if all(s.cancelled.is_set() for s in staged):
                raise CancelledJob(f"cancelled while generating ({', '.join(s.job_id for s in staged)})")
            for listener in listeners:
                listener(fraction, stage)

        self.lora.activate(self.loaded.pipe, staged[0].adapters)  # the batch's adapters, or none at all
        generations = run.generate(self.loaded, [s.prepared.request for s in staged], progress,
                                   [s.prepared.codes for s in staged], staged[0].audio_inputs)
        if len(staged) > 1:
            log.info("rendered %d jobs in one batch (%s)", len(staged), ", ".join(s.job_id for s in staged))
        rendered = []
        for one, generation in zip(staged, generations, strict=True):
            generation.warnings.extend(one.prepared.warnings)
            generation.lm_s = one.prepared.lm_s
            written = None if one.request.audio_code_string else one.prepared.codes
            rendered.append(Rendered(one.job_id, one.request, one.target, generation, one.prepared.lm_tokens,
                                     one.started, written))
        return rendered

    def deliver(self, rendered: Rendered, progress: run.ProgressFn | None = None) -> GenerateResponse:
        """The host's part of a job: encode, upload or write, and report. Uses no accelerator."""
        request, target, generation = rendered.request, rendered.target, rendered.generation
        encode_started = time.perf_counter()
        if progress:
            progress(0.95, "encoding")
        encoded = encode_all([song.samples for song in generation.songs], self.loaded.sample_rate,
                             request.audio_format, request.mp3_bitrate, self.settings.mp3_encoder,
                             self.settings.encode_threads)
        encode_s = time.perf_counter() - encode_started

        upload_started = time.perf_counter()
        if progress:
            progress(0.98, "uploading" if target.kind == "s3" else "delivering")
        delivered = target.deliver(encoded, rendered.job_id)
        upload_s = time.perf_counter() - upload_started

        audios = [AudioOut(url=d.url, base64=d.base64, path=d.path, key=d.key, format=e.format,
                           content_type=e.content_type, bytes=len(e.data), duration=round(e.duration_s, 3),
                           sample_rate=e.sample_rate, seed=song.seed)
                  for song, e, d in zip(generation.songs, encoded, delivered, strict=True)]
        total_s = time.perf_counter() - rendered.started
        log.info("job %s: %d song(s) × %.0f s, generate %.2f s, encode %.2f s, %s %.2f s, total %.2f s",
                 rendered.job_id, len(audios), generation.metas.duration, generation.generate_s, encode_s,
                 target.kind, upload_s, total_s)
        return GenerateResponse(
            audios=audios, prompt=generation.prompt, lyrics=generation.lyrics, metas=generation.metas,
            dit_model=self.loaded.dit_model, lm_model=self.lm_model, warnings=generation.warnings,
            timings=Timings(lm_s=round(generation.lm_s, 4), lm_tokens=rendered.lm_tokens,
                            generate_s=round(generation.generate_s, 4), encode_s=round(encode_s, 4),
                            upload_s=round(upload_s, 4), total_s=round(total_s, 4)),
            limits=self.loaded.limits, audio_codes=rendered.lm_codes)


def _lm_call(fn, *args):
    """``fn(*args)``, an LM out of memory turned into a friendly error. The memory is given back after the
    ``except`` block: inside it, the traceback still holds the LM's activations."""
    try:
        return fn(*args)
    except RuntimeError as err:
        if not out_of_memory(err):
            raise
    free_accelerator_memory()
    raise GenerationError(LM_OUT_OF_MEMORY)
