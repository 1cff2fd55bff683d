"""The worker behind RunPod's own local API server (``--rp_serve_api``), over real HTTP.

One worker process serves every job in this module: bad jobs must not take it down, and the good job
after them must still work.
"""

import base64

import pytest
import requests

from conftest import decode, runsync, s3_client, silent_flac, wav_bytes

GOOD = {"prompt": "lofi hip hop, vinyl crackle", "lyrics": "[Verse]\nrainy window", "audio_duration": 10,
        "batch_size": 2, "seed": 5, "inference_steps": 4}

BAD_INPUTS = [
    ({}, "input is empty"),
    ({"prompt": 42}, "prompt must be a string"),
    ({**GOOD, "audio_duration": "long"}, "audio_duration must be a number between 10 and 600 seconds"),
    ({**GOOD, "audio_duration": 9000}, "audio_duration must be between 10 and 600 seconds (got 9000)"),
    ({**GOOD, "audio_duration": 3}, "audio_duration must be between 10 and 600 seconds (got 3)"),
    ({**GOOD, "batch_size": 64}, "batch_size must be between 1 and 8 (got 64)"),
    ({**GOOD, "batch_size": "many"}, "batch_size must be an integer between 1 and 8"),
    ({**GOOD, "bpm": 1000}, "bpm must be between 30 and 300 (got 1000)"),
    ({**GOOD, "bpm": 99.5}, "bpm must be an integer between 30 and 300"),
    ({**GOOD, "inference_steps": 0}, "inference_steps must be between 1 and 200 (got 0)"),
    ({**GOOD, "inference_steps": 50}, "inference_steps must be between 1 and 20 on turbo models (got 50)"),
    ({**GOOD, "audio_format": "aiff"}, "audio_format must be one of 'mp3', 'wav', 'wav32', 'flac', 'ogg' or 'opus'"),
    ({**GOOD, "lyrics": "la " * 5000}, "lyrics must be at most 12000 characters (got 15000)"),
    ({**GOOD, "seed": "12,twelve"}, "seed must be an integer or comma-separated integers"),
    ({**GOOD, "task_type": "repaint", "src_audio_base64": "%%%not-base64%%%"}, "src_audio_base64 is not valid base64"),
    ({**GOOD, "task_type": "cover", "src_audio_base64": base64.b64encode(b"not audio at all").decode()},
     "src_audio_base64 is not an audio file libsndfile can read"),
    ({**GOOD, "task_type": "cover", "src_audio_base64": base64.b64encode(silent_flac(3600)).decode()},
     "src_audio_base64 must be at most 600 seconds long (got 3600)"),  # a few hundred KB: an hour of silence
    ({**GOOD, "reference_audio_base64": base64.b64encode(wav_bytes(100, rate=1_000_000)).decode()},
     "reference_audio_base64 must have a sample rate between 8000 and 192000 Hz (got 1000000)"),
    ({**GOOD, "thinking": "perhaps"}, "thinking must be true or false"),
    ({**GOOD, "metas": "{not json"}, "metas must be a JSON object"),
    ({**GOOD, "mp3_bitrate": 1000}, "mp3_bitrate must be between 32 and 320 kbps (got 1000)"),
    ({**GOOD, "action": "dance"}, "action must be one of generate, models, format_input (got 'dance')"),
    ({**GOOD, "sample_query": "a song about cats"}, "sample_query needs the 5 Hz LM"),
    # no bucket here: 2 × 120 s of wav (46 MB) could not be returned inline, so it is refused before generating
    ({**GOOD, "audio_format": "wav", "audio_duration": 120},
     "batch_size × audio_duration: the songs would be about 46.1 MB, more than can be returned inline (7.0 MB"),
]


@pytest.mark.parametrize("job_input,needle", BAD_INPUTS, ids=[n[:40] for _, n in BAD_INPUTS])
def test_bad_input_gets_one_line_naming_the_field(worker_api, job_input, needle):
    url, _ = worker_api
    result = runsync(url, job_input)
    assert result["status"] == "FAILED"
    error = result["error"]
    assert isinstance(error, str) and "\n" not in error and "Traceback" not in error
    assert needle in error


def test_the_worker_still_serves_a_good_job_after_the_bad_ones(worker_api):
    url, process = worker_api
    for job_input, _ in BAD_INPUTS[:5]:
        assert runsync(url, job_input)["status"] == "FAILED"
    result = runsync(url, GOOD)
    assert result["status"] == "COMPLETED", result
    output = result["output"]
    assert [a["seed"] for a in output["audios"]] == [5, 6]
    for audio in output["audios"]:
        assert set(audio) >= {"base64", "key", "format", "content_type", "bytes", "duration", "sample_rate", "seed"}
        assert "url" not in audio and "path" not in audio and audio["key"] is None
        data = base64.b64decode(audio["base64"])
        assert len(data) == audio["bytes"] and audio["content_type"] == "audio/mpeg"
        decoded, rate = decode(data)
        assert rate == 48_000 == audio["sample_rate"] and decoded.shape[1] == 2
        assert abs(decoded.shape[0] / rate - 10.0) < 0.05
    assert output["dit_model"] == "acestep-v15-turbo" and output["lm_model"] is None
    assert output["metas"]["duration"] == 10.0
    assert set(output["timings"]) == {"lm_s", "lm_tokens", "generate_s", "encode_s", "upload_s", "total_s"}
    assert output["timings"]["total_s"] >= output["timings"]["generate_s"] > 0
    assert process.poll() is None


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg", "opus"])
def test_other_formats_come_back_decodable(worker_api, fmt):
    url, _ = worker_api
    result = runsync(url, {**GOOD, "batch_size": 1, "audio_format": fmt})
    [audio] = result["output"]["audios"]
    assert audio["format"] == fmt
    decoded, rate = decode(base64.b64decode(audio["base64"]))
    assert rate == 48_000 and decoded.shape[1] == 2


def test_models_action(worker_api):
    url, _ = worker_api
    output = runsync(url, {"action": "models"})["output"]
    assert output["default_model"] == "acestep-v15-turbo"
    tasks = ["text2music", "repaint", "cover"]
    assert output["models"] == [{"name": "acestep-v15-turbo", "is_default": True, "is_loaded": True,
                                 "task_types": tasks, "supported_task_types": tasks, "supports_audio_codes": True}]
    assert output["lm_models"] == []  # no LM next to this checkpoint


def test_unknown_fields_warn_but_do_not_fail(worker_api):
    url, _ = worker_api
    output = runsync(url, {**GOOD, "batch_size": 1, "colour": "blue"})["output"]
    assert "ignored unknown field(s): colour" in output["warnings"]


def test_s3config_uploads_to_the_jobs_bucket(worker_api, s3_server, bucket):
    url, _ = worker_api
    s3 = {"endpointUrl": s3_server, "accessId": "test-key", "accessSecret": "test-secret-value", "bucketName": bucket}
    result = runsync(url, {**GOOD, "s3Config": s3})
    assert result["status"] == "COMPLETED", result
    for audio in result["output"]["audios"]:
        assert audio["key"].endswith(".mp3") and "base64" not in audio
        response = requests.get(audio["url"], timeout=10)
        assert response.status_code == 200 and len(response.content) == audio["bytes"]
        decoded, rate = decode(response.content)
        assert rate == 48_000
        head = s3_client(s3_server).head_object(Bucket=bucket, Key=audio["key"])
        assert head["ContentType"] == "audio/mpeg"
