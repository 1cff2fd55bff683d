"""Hostile audio inputs through the worker's own request path (``GpuWorker``, as the handler and pod mode run
jobs): refused from the file's header before anything is decoded, and decoding capped whatever the header says,
so the memory a job costs stays bounded. Over HTTP: tests/test_handler_api.py and tests/test_shim_local.py."""

from __future__ import annotations

import asyncio
import base64
import io
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from inference.errors import InputError
from inference.gpu_worker import GpuWorker
from inference.service import GenerationService
from tests.conftest import silent_flac, wav_bytes

RATE = 48_000
HOUR_DECODED = 3600 * RATE * 4  # bytes of float32 a full decode of an hour of mono audio needs
CAP_DECODED = 600 * RATE * 4  # ... and of the 600 s an input may last


@pytest.fixture(scope="module")
def worker(loaded, settings):
    return GpuWorker(GenerationService(loaded, settings))


def job(**fields) -> dict:
    return {"prompt": "x", "lyrics": "[inst]", "batch_size": 1, "inference_steps": 2, "audio_format": "wav",
            "seed": 1, **fields}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def refused(worker: GpuWorker, job_input: dict) -> tuple[str, int]:
    """The error the job gets, and the peak of memory Python allocated (in any thread) while it was served."""
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            asyncio.run(worker.generate(job_input, "hostile"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "\n" not in message
    return message, peak


def test_an_hour_of_flac_is_refused_from_its_header_without_decoding(worker):
    bomb = silent_flac(3600, RATE)
    assert len(bomb) < 1_000_000  # a few hundred KB that decode to 691 MB
    message, peak = refused(worker, job(task_type="cover", src_audio_base64=b64(bomb)))
    assert message == "src_audio_base64 must be at most 600 seconds long (got 3600)"
    assert peak < HOUR_DECODED / 20


@pytest.mark.parametrize("data,message", [
    (wav_bytes(100, rate=1_000_000), "reference_audio_base64 must have a sample rate between 8000 and 192000 Hz "
                                     "(got 1000000)"),
    (wav_bytes(100, rate=1_000), "reference_audio_base64 must have a sample rate between 8000 and 192000 Hz "
                                 "(got 1000)"),
    (wav_bytes(100, channels=12), "reference_audio_base64 must have between 1 and 8 channels (got 12)"),
], ids=["1 MHz", "1 kHz", "12 channels"])
def test_absurd_rates_and_channel_counts_are_refused(worker, data, message):
    assert refused(worker, job(reference_audio_base64=b64(data)))[0] == message


def test_a_header_that_hides_the_length_cannot_make_decoding_unbounded(worker):
    # an hour of FLAC whose header says "length unknown": it passes the header check, and decoding stops
    # one frame past 600 s instead of filling memory with the whole hour
    hidden = silent_flac(3600, RATE, unknown_length=True)
    assert sf.info(io.BytesIO(hidden)).frames > 3600 * RATE
    message, peak = refused(worker, job(task_type="cover", src_audio_base64=b64(hidden)))
    assert message == "src_audio_base64 must be at most 600 seconds long (got more than 600)"
    assert peak < 1.25 * CAP_DECODED < HOUR_DECODED / 4


def test_a_good_source_is_decoded_and_used_after_the_hostile_ones(worker):
    source = (0.3 * np.random.default_rng(0).standard_normal(44_100 * 11)).astype(np.float32)  # mono, 44.1 kHz
    buffer = io.BytesIO()
    sf.write(buffer, source, 44_100, format="FLAC")
    response = asyncio.run(worker.generate(
        job(task_type="repaint", src_audio_base64=b64(buffer.getvalue()), repainting_start=2, repainting_end=6),
        "good"))
    [audio] = response.audios
    assert audio.sample_rate == RATE and audio.duration == pytest.approx(11.0, abs=0.05)
