"""One job, start to finish: validate, generate, encode, deliver, report. Shared by every adapter.

``handler.py`` (RunPod) and the HTTP shim call ``GenerationService``; neither touches tensors, and this
module never sees a RunPod job dict or an HTTP request.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from inference import run
from inference.audio import encode_all
from inference.load import LoadedPipeline, load_pipeline
from inference.schema import (
    AudioOut,
    GenerateRequest,
    GenerateResponse,
    LmModelInfo,
    ModelInfo,
    ModelsResponse,
    Timings,
    parse_generate_request,
)
from inference.settings import Settings
from inference.storage import Target, choose_target

log = logging.getLogger("acestep.service")


class GenerationService:
    def __init__(self, loaded: LoadedPipeline, settings: Settings):
        self.loaded = loaded
        self.settings = settings

    @classmethod
    def start(cls, settings: Settings) -> "GenerationService":
        """The cold start: load (and warm up) the checkpoint once."""
        return cls(load_pipeline(settings), settings)

    def models(self) -> ModelsResponse:
        name = self.loaded.dit_model
        return ModelsResponse(
            models=[ModelInfo(name=name, is_default=True, is_loaded=True, task_types=self.loaded.task_types)],
            default_model=name,
            lm_models=[LmModelInfo(name=self.settings.lm_model, is_loaded=False)]
            if self.settings.lm_model and self.settings.lm_model.lower() != "none" else [])

    def parse(self, job_input: Any) -> GenerateRequest:
        """Validate a job's input against this deployment's limits (tier, turbo or base)."""
        return parse_generate_request(job_input, self.loaded.limits)

    def generate(self, job_input: Any, job_id: str, s3_config: Any = None,
                 progress: run.ProgressFn | None = None, target: Target | None = None) -> GenerateResponse:
        """One job end to end. ``job_input`` is a raw input or an already validated request; ``target``
        overrides where the audio goes (the shim's pod mode always writes to its output folder)."""
        started = time.perf_counter()
        request = job_input if isinstance(job_input, GenerateRequest) else self.parse(job_input)
        if target is None:
            target = choose_target(self.settings, s3_config)  # a bad s3Config fails before any GPU time is spent
        [generation] = run.generate(self.loaded, [request], progress)

        encode_started = time.perf_counter()
        if progress:
            progress(1.0, "encoding")
        encoded = encode_all([song.samples for song in generation.songs], self.loaded.sample_rate,
                             request.audio_format, request.mp3_bitrate)
        encode_s = time.perf_counter() - encode_started

        upload_started = time.perf_counter()
        if progress:
            progress(1.0, "uploading" if target.kind == "s3" else "delivering")
        delivered = target.deliver(encoded, job_id)
        upload_s = time.perf_counter() - upload_started

        audios = [AudioOut(url=d.url, base64=d.base64, path=d.path, key=d.key, format=e.format,
                           content_type=e.content_type, bytes=len(e.data), duration=round(e.duration_s, 3),
                           sample_rate=e.sample_rate, seed=song.seed)
                  for song, e, d in zip(generation.songs, encoded, delivered, strict=True)]
        total_s = time.perf_counter() - started
        log.info("job %s: %d song(s) × %.0f s, generate %.2f s, encode %.2f s, %s %.2f s, total %.2f s", job_id,
                 len(audios), generation.metas.duration, generation.generate_s, encode_s, target.kind, upload_s,
                 total_s)
        return GenerateResponse(
            audios=audios, prompt=generation.prompt, lyrics=generation.lyrics, metas=generation.metas,
            dit_model=self.loaded.dit_model, lm_model=None, warnings=generation.warnings,
            timings=Timings(lm_s=round(generation.lm_s, 4), generate_s=round(generation.generate_s, 4),
                            encode_s=round(encode_s, 4), upload_s=round(upload_s, 4), total_s=round(total_s, 4)))
