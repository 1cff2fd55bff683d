"""The request contract (docs/api.md section 3): aliases, defaults, ranges, sources, unknown fields."""

import base64
import json

import pytest

from inference.errors import InputError, UnsupportedError
from inference.contract import (
    ALIASES,
    DEFAULT_DURATION_S,
    GenerateRequest,
    Limits,
    parse_generate_request,
)
from tests.conftest import wav_bytes

BASE = {"prompt": "lofi hip hop"}


def parse(extra=None, limits=None, **kwargs) -> GenerateRequest:
    return parse_generate_request({**BASE, **(extra or {}), **kwargs}, limits)


def error_of(data, limits=None) -> str:
    with pytest.raises((InputError, UnsupportedError)) as caught:
        parse_generate_request(data, limits)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_defaults_match_the_contract():
    r = parse()
    assert (r.prompt, r.lyrics, r.audio_duration, r.batch_size) == ("lofi hip hop", "", None, 2)
    assert (r.seed, r.use_random_seed, r.explicit_seeds) == (-1, None, [])
    assert (r.inference_steps, r.guidance_scale, r.shift) == (8, 7.0, 3.0)
    assert (r.bpm, r.key_scale, r.time_signature, r.vocal_language) == (None, "", "", "en")
    assert (r.thinking, r.use_format, r.sample_query) == (False, False, "")
    assert (r.lm_temperature, r.lm_cfg_scale, r.lm_top_p, r.lm_top_k, r.lm_negative_prompt) == (
        0.85, 2.5, 0.9, None, "NO USER INPUT")
    assert (r.task_type, r.repainting_start, r.repainting_end, r.audio_cover_strength) == ("text2music", 0.0, -1.0, 1.0)
    assert (r.audio_format, r.mp3_bitrate, r.content_type) == ("mp3", 192, "audio/mpeg")
    assert r.warnings == []
    assert DEFAULT_DURATION_S == 60.0


ALIAS_VALUES = {
    "prompt": "string pad", "audio_duration": 42.0, "key_scale": "D minor", "time_signature": "3",
    "vocal_language": "ja", "use_format": True, "sample_query": "a sad song about rain", "model": "acestep-v15-turbo",
    "audio_cover_strength": 0.5, "track_classes": ["drums", "bass"],
    "src_audio_base64": base64.b64encode(wav_bytes(4800)).decode(),
    "reference_audio_base64": base64.b64encode(wav_bytes(4800)).decode(),
    "audio_code_string": "<|audio_code_5|>" * 50, "use_cot_caption": False, "use_cot_language": False,
    "constrained_decoding": False,
}


@pytest.mark.parametrize("field,alias", [(f, a) for f, aliases in ALIASES.items() for a in aliases])
def test_every_alias_sets_its_field(field, alias):
    value = ALIAS_VALUES[field]
    request = parse_generate_request({"lyrics": "[Verse]\nla", alias: value})
    assert getattr(request, field) == value
    assert request.warnings == []


def test_top_level_beats_param_obj_beats_metas_across_aliases():
    r = parse_generate_request({
        "caption": "top", "param_obj": {"prompt": "inner", "bpm": 100, "key": "E major"},
        "metas": json.dumps({"bpm": 90, "keyscale": "C major", "duration": 20, "timesignature": "6"}),
    })
    assert r.prompt == "top"
    assert r.bpm == 100 and r.key_scale == "E major"
    assert r.audio_duration == 20 and r.time_signature == "6"


def test_metadata_dict_is_a_source_too():
    r = parse(metadata={"bpm": 128, "language": "fr"})
    assert (r.bpm, r.vocal_language) == (128, "fr")


def test_unknown_fields_are_ignored_with_a_warning():
    r = parse(colour="blue", param_obj={"mood": "x"}, action="generate", s3Config={"a": 1})
    assert r.warnings == ["ignored unknown field(s): colour, param_obj.mood"]


@pytest.mark.parametrize("given,expected", [
    ("f# MINOR", "F# minor"), ("Bb major", "Bb major"), ("C♯ minor", "C♯ minor"), ("", ""), ("N/A", ""),
])
def test_key_scale_is_normalised(given, expected):
    assert parse(key_scale=given).key_scale == expected


@pytest.mark.parametrize("given,expected", [("4", "4"), (3, "3"), ("6/8", "6"), ("4/4", "4"), ("", "")])
def test_time_signature_forms(given, expected):
    assert parse(time_signature=given).time_signature == expected


@pytest.mark.parametrize("seed,use_random,expected", [
    (7, None, [7]), ("7,8", None, [7, 8]), ([1, 2, 3], None, [1, 2, 3]), (-1, None, []), ("", None, []),
    (7, True, []), (7, False, [7]), (2**32 - 1, None, [2**32 - 1]),
])
def test_seed_forms(seed, use_random, expected):
    extra = {"seed": seed} if use_random is None else {"seed": seed, "use_random_seed": use_random}
    assert parse(extra).explicit_seeds == expected


def test_instrumental_lyrics_forms():
    for lyrics in ("", "[inst]", "[Instrumental]", "  [instrumental] "):
        assert parse(lyrics=lyrics).is_instrumental
    assert not parse(lyrics="[Verse]\nhello").is_instrumental


def test_base64_audio_accepts_data_urls_and_returns_bytes():
    wav = wav_bytes(4_800)
    payload = base64.b64encode(wav).decode()
    r = parse(task_type="repaint", src_audio_base64=f"data:audio/wav;base64,{payload}")
    assert r.audio_input("src_audio_base64") == wav and r.audio_input_bytes == len(wav)


@pytest.mark.parametrize("extra,needle", [
    ({"audio_duration": 9000}, "audio_duration must be between 10 and 600 seconds (got 9000)"),
    ({"audio_duration": 5}, "audio_duration must be between 10 and 600 seconds (got 5)"),
    ({"batch_size": 0}, "batch_size must be between 1 and 8 (got 0)"),
    ({"bpm": 20}, "bpm must be between 30 and 300 (got 20)"),
    ({"inference_steps": 500}, "inference_steps must be between 1 and 200 (got 500)"),
    ({"mp3_bitrate": 8}, "mp3_bitrate must be between 32 and 320 kbps (got 8)"),
    ({"shift": 0}, "shift must be between 1 and 5 (got 0)"),
    ({"audio_cover_strength": 2}, "audio_cover_strength must be between 0 and 1 (got 2)"),
    ({"audio_format": "flacc"}, "audio_format must be one of 'mp3', 'wav', 'wav32', 'flac', 'ogg' or 'opus' (got "
                                "'flacc')"),
    ({"audio_format": "aac"}, "audio_format 'aac' is not produced by this worker; choose one of mp3, wav, wav32"),
    ({"task_type": "remix"}, "task_type must be one of"),
    ({"vocal_language": "klingon"}, "vocal_language must be one of ar, az"),
    ({"key_scale": "H major"}, "key_scale must be a note A-G"),
    ({"time_signature": "5"}, "time_signature must be one of 2, 3, 4, 6"),
    ({"seed": "1,x"}, "seed must be an integer or comma-separated integers"),
    ({"seed": -5}, "seed must be -1 (random) or between 0 and 4294967295 (got -5)"),
    ({"seed": "-1,4"}, "seed -1 (random) cannot be mixed with explicit seeds"),
    ({"task_type": "repaint"}, "task_type 'repaint' needs source audio"),
    ({"task_type": "repaint", "src_audio_base64": "AAAA", "repainting_start": 20, "repainting_end": 10},
     "repainting_end must be -1 (the end) or greater than repainting_start (20.0) (got 10.0)"),
    ({"src_audio_url": "ftp://example.com/a.wav"}, "src_audio_url must be an http://, https:// or s3:// URL"),
    ({"task_type": "cover", "src_audio_url": "https://example.com/a.wav", "src_audio_base64": "AAAA"},
     "give src_audio_base64 or src_audio_url, not both"),
])
def test_out_of_range_and_bad_values_name_the_field(extra, needle):
    assert needle in error_of({**BASE, **extra})


def test_several_problems_are_reported_on_one_line():
    message = error_of({**BASE, "batch_size": 99, "bpm": 1})
    assert "batch_size must be between 1 and 8" in message and "bpm must be between 30 and 300" in message


def test_limits_of_the_deployment_apply():
    small = Limits(max_duration_s=120, max_batch_size=2, is_turbo=True, dit_model="acestep-v15-turbo")
    assert "between 10 and 120 seconds on this GPU (got 300)" in error_of({**BASE, "audio_duration": 300}, small)
    assert "batch_size must be between 1 and 2 on this GPU (got 4)" in error_of({**BASE, "batch_size": 4}, small)
    assert "inference_steps must be between 1 and 20 on turbo models (got 30)" in error_of(
        {**BASE, "inference_steps": 30}, small)
    assert "needs a base or sft model" in error_of({**BASE, "task_type": "lego", "src_audio_base64": "AAAA"}, small)
    base = Limits(is_turbo=False, dit_model="acestep-v15-base")
    assert parse({"inference_steps": 60}, limits=base).inference_steps == 60


@pytest.mark.parametrize("field", ["audio_duration", "inference_steps", "lm_temperature", "repainting_start",
                                   "mp3_bitrate", "use_random_seed"])
def test_every_field_is_also_read_in_camel_case_and_hyphenated(field):
    from inference.contract.normalise import camel_case

    value = {"audio_duration": 33.0, "inference_steps": 5, "lm_temperature": 0.5, "repainting_start": 2.0,
             "mp3_bitrate": 128, "use_random_seed": False}[field]
    for name in (camel_case(field), field.replace("_", "-")):
        request = parse_generate_request({"lyrics": "[Verse]\nla", name: value})
        assert getattr(request, field) == value and request.warnings == [], name


def test_null_is_not_a_value_and_the_first_non_empty_container_is_read():
    r = parse_generate_request({"caption": None, "bpm": None, "param_obj": {"caption": "inner"},
                                "meta": {}, "user_metadata": json.dumps({"bpm": 77}), "userMetadata": {"bpm": 1}})
    assert (r.prompt, r.bpm) == ("inner", 77)


def test_upstream_fields_this_worker_lacks_are_reported_as_such():
    r = parse(useAdg=True, samplerMode="sde", metas={"lmBackend": "vllm", "lmRepetitionPenalty": 1.1})
    assert r.warnings == ["not supported by this worker, ignored: metas.lm_backend, sampler_mode, use_adg"]
    assert r.lm_repetition_penalty == 1.1  # a field the worker has is read from the container, not reported


@pytest.mark.parametrize("given, key", [("Am", "A minor"), ("C#m", "C# minor"), ("Bb", "Bb major"), ("bm", "B minor"),
                                        ("ebmaj", "Eb major"), ("G", "G major"), ("F# Minor", "F# minor")])
def test_key_scale_short_forms(given, key):
    assert parse(key_scale=given).key_scale == key


def test_the_served_model_by_name_or_a_clear_refusal():
    limits = Limits(dit_model="acestep-v15-turbo")
    assert parse(dit_model="acestep-v15-turbo", limits=limits).model == "acestep-v15-turbo"
    with pytest.raises(UnsupportedError, match=r"^model must be 'acestep-v15-turbo', the DiT this worker serves "
                                               r"\(got 'acestep-v15-base'\)"):
        parse(model="acestep-v15-base", limits=limits)
