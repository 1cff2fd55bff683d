"""Property-based fuzzing of the request contract, in-process and through RunPod's own job path.

Proven over generated inputs (hypothesis, derandomized, no example database):

* ``parse_generate_request``, with the default ``Limits()``, a tight deployment (short songs, small batches) and
  a base model, given any JSON value, any mix of the real field names, their upstream aliases and the envelope
  keys (``param_obj``, ``metas`` as a dict or a JSON string) holding wrong-typed, huge, non-finite or
  out-of-range values, base64 garbage, or real WAV/FLAC files whose headers lie about length, rate or channels,
  that are cut short or followed by garbage, either returns a ``GenerateRequest`` or raises ``InputError`` /
  ``UnsupportedError``, never anything else. Its message is one line of at most 500 characters, holds no
  absolute path the caller did not send, and names a field of the contract; a valid request broken in one
  field names that field, and a broken audio input names the audio field.
* Audio that validation lets through either decodes to finite stereo float32 at the model's rate, at most
  ``MAX_DURATION_S`` long, or is refused with an ``InputError`` naming its field.
* Valid requests, drawn from the schema's own ranges and choices and given under canonical names, aliases or
  inside ``param_obj`` / ``metas``, parse, and to the values given.
* Through ``python handler.py --rp_serve_api`` (RunPod's SDK around the real handler): a few hundred generated
  jobs, mostly invalid, some with hostile ``s3Config`` values, are each answered either with a completed output
  or with a one-line error naming a field; non-dict inputs are refused by the SDK's own request model; the
  worker process stays alive and still serves a good job afterwards.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import struct
import sys

import numpy as np
import pytest
import requests
import soundfile as sf
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from inference.errors import InputError, UnsupportedError
from inference.contract.normalise import METADATA_CONTAINERS
from inference.contract.vocabulary import SAMPLE_FROM_NOTHING
from inference.contract import (
    ALIASES,
    AUDIO_FORMATS,
    AUDIO_INPUT_FIELDS,
    BASE_MODEL_TASKS,
    ENVELOPE_KEYS,
    MAX_DURATION_S,
    SEED_MAX,
    SOURCE_AUDIO_TASKS,
    TASK_TYPES,
    VALID_KEYSCALES,
    VALID_LANGUAGES,
    VALID_TIME_SIGNATURES,
    GenerateRequest,
    Limits,
    parse_generate_request,
)
from tests.conftest import start_worker_api, stop

MESSAGE_LIMIT = 500  # characters of an error message (inference.errors.one_line)
MODEL_RATE = 48_000

FIELDS = tuple(GenerateRequest.model_fields)
ALIAS_OF = {alias: name for name, aliases in ALIASES.items() for alias in aliases}
S3_KEYS = ("endpointUrl", "accessId", "accessSecret", "bucketName", "region", "prefix")  # RunPod's s3Config
NAMES = frozenset(FIELDS) | set(ALIAS_OF) | ENVELOPE_KEYS | {"input"}
_NAME_PATTERN = re.compile(r"(?<![\w])(" + "|".join(sorted(map(re.escape, NAMES | set(S3_KEYS)), key=len,
                                                              reverse=True)) + r")(?![\w])")
_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.@+-]+/)*[\w.@+-]+")  # what a local absolute path looks like

LIMITS = {
    "default": Limits(),
    "tight": Limits(max_duration_s=20, max_batch_size=2, is_turbo=True),
    "base": Limits(max_duration_s=120, max_batch_size=4, is_turbo=False, dit_model="acestep-v15-base"),
}
FUZZ = settings(deadline=None, database=None, derandomize=True, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


# --- what every refusal must look like --------------------------------------------------------------------------
def check_message(message: object, data: object) -> str:
    assert isinstance(message, str) and message.strip(), message
    assert len(message.splitlines()) == 1 and "\n" not in message, message
    assert len(message) <= MESSAGE_LIMIT, (len(message), message[:200])
    sent = "\x00".join(strings_in(data))
    leaked = [p for p in _PATH.findall(message) if p not in sent]
    assert not leaked, (leaked, message)
    assert "object at 0x" not in message and "Traceback" not in message, message
    assert _NAME_PATTERN.search(message), message
    return message


def strings_in(data: object) -> list[str]:
    """Every string the caller sent (keys included): the only place a path in a message may come from."""
    if isinstance(data, str):
        return [data]
    if isinstance(data, dict):
        return [text for key, value in data.items() for text in (key, *strings_in(value))]
    if isinstance(data, list):
        return [text for value in data for text in strings_in(value)]
    return []


def outcome(data: object, limits: Limits | None) -> GenerateRequest | str:
    """The request, or the refusal's message once it is checked; any other exception fails the test."""
    try:
        request = parse_generate_request(data, limits)
    except (InputError, UnsupportedError) as err:
        event(f"refused: {type(err).__name__}")
        return check_message(str(err), data)
    event("accepted")
    return request


def names_field(message: str, *names: str) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", message) for name in names)


# --- values from the schema -------------------------------------------------------------------------------------
def bounds(name: str) -> tuple[float | None, float | None, bool]:
    """(lowest, highest, lowest is excluded) of a numeric field, read from its declared constraints."""
    lo = hi = None
    exclusive = False
    for rule in GenerateRequest.model_fields[name].metadata:
        if getattr(rule, "ge", None) is not None:
            lo = rule.ge
        if getattr(rule, "gt", None) is not None:
            lo, exclusive = rule.gt, True
        if getattr(rule, "le", None) is not None:
            hi = rule.le
    return lo, hi, exclusive


def is_int_field(name: str) -> bool:
    return GenerateRequest.model_fields[name].annotation in (int, int | None)


NUMERIC = tuple(n for n in FIELDS if bounds(n)[0] is not None and bounds(n)[1] is not None)
BOOLEANS = tuple(n for n in FIELDS if GenerateRequest.model_fields[n].annotation in (bool, bool | None))


def deployment_max(name: str, limits: Limits) -> float:
    hi = bounds(name)[1]
    return min(hi, {"audio_duration": limits.max_duration_s, "batch_size": limits.max_batch_size,
                    "inference_steps": limits.max_steps}.get(name, hi))


def wav_file(frames: int, rate: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    tone = np.sin(np.arange(frames * channels, dtype=np.float32) / 7).reshape(frames, channels) * 0.5
    sf.write(buffer, tone, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def flac_file(frames: int, rate: int, channels: int) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((frames, channels), dtype=np.float32), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


WAVS = (wav_file(800, 8_000, 1), wav_file(2_400, 48_000, 2), wav_file(441, 44_100, 3))
FLACS = (flac_file(4_800, 48_000, 1), flac_file(1_600, 16_000, 2))
GOOD_WAV = WAVS[1]


def to_json(value: object) -> str:
    """JSON text as a caller may send it: integers of any length, NaN and Infinity included."""
    limit = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        return json.dumps(value, allow_nan=True)
    finally:
        sys.set_int_max_str_digits(limit)


# --- arbitrary JSON-like values ---------------------------------------------------------------------------------
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
CONTROL_TEXT = st.text(st.characters(max_codepoint=0x9F, blacklist_categories=("Cs",)), max_size=12)
LONG_TEXT = st.builds(lambda piece, times: piece * times, st.text(min_size=1, max_size=3),
                      st.integers(1_000, 15_000))
HUGE_INTS = st.sampled_from([2**31, 2**53 + 1, SEED_MAX + 1, 2**63, 2**64, -(2**63) - 1]) | st.sampled_from(
    [400, -4400, 5000]).map(lambda digits: 10 ** abs(digits) * (1 if digits > 0 else -1))  # past what repr() prints
NUMBERS = st.one_of(st.integers(), st.integers(-(2**80), 2**80), HUGE_INTS,
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([math.nan, math.inf, -math.inf]))
TRICKY_STRINGS = st.sampled_from([
    "", " ", "none", "NULL", " N/A ", "auto", "nan", "inf", "-inf", "1e309", "-1", "0", "12,34", "1,-1", "4/4",
    "6/8", "C major", "h# minor", "true", "yes", "[inst]", "data:audio/wav;base64,", "data:", "{}", "[]",
    "/etc/passwd", "../../etc/shadow", "\x00", "\u2028", "\r\n", "\ufeff",
]) | st.sampled_from([("9", 5_000), ("[", 5_000), ('{"a":', 3_000)]).map(lambda piece: piece[0] * piece[1])
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, CONTROL_TEXT, LONG_TEXT, TRICKY_STRINGS)
KEYS = tuple(FIELDS) + tuple(ALIAS_OF) + tuple(ENVELOPE_KEYS)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=4), max_leaves=10)


def edge_values(name: str) -> st.SearchStrategy:
    """Values at, just past and far past a field's limits, as numbers and as strings, and its choices mangled."""
    values: list = []
    if name in NUMERIC:
        lo, hi, _ = bounds(name)
        for limit in {lo, hi, *(deployment_max(name, limits) for limits in LIMITS.values())}:
            for value in (limit, limit - 1, limit + 1, limit - 1e-9, limit + 1e-9, limit + 0.5):
                values += [value, str(value), int(value) if math.isfinite(value) else value]
    choices = {"task_type": TASK_TYPES, "audio_format": AUDIO_FORMATS, "key_scale": VALID_KEYSCALES[:6],
               "time_signature": VALID_TIME_SIGNATURES, "vocal_language": VALID_LANGUAGES[:6]}.get(name, ())
    for choice in choices:
        values += [choice, choice.upper(), f" {choice} ", choice[:-1], choice + "x", [choice], {"value": choice}]
    if name in AUDIO_INPUT_FIELDS:
        values += ["%%%", "QUJD", "QUJ", "====", "data:audio/wav;base64,QUJD", base64.b64encode(b"RIFF").decode()]
    values += [True, False, None, "", [], {}, [1, 2], {"a": 1}]
    return st.sampled_from(values)


def field_value(key: str) -> st.SearchStrategy:
    return st.one_of(JSON, edge_values(ALIAS_OF.get(key, key)))


def dict_of_fields(keys: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(keys, max_size=8, unique=True).flatmap(
        lambda names: st.fixed_dictionaries({name: field_value(name) for name in names}))


FIELD_KEYS = st.sampled_from(tuple(FIELDS) + tuple(ALIAS_OF))
NESTED = st.one_of(dict_of_fields(FIELD_KEYS), dict_of_fields(FIELD_KEYS).map(to_json),
                   JSON, TRICKY_STRINGS)


@st.composite
def field_dicts(draw) -> dict:
    """A job input built from the real field names, aliases and envelope keys, with values good and bad."""
    data = draw(dict_of_fields(st.sampled_from(KEYS) | TEXT))
    for source in ("param_obj", "metas", "metadata"):
        if draw(st.integers(0, 3)) == 0:
            data[source] = draw(NESTED)
    return data


# --- audio whose bytes lie ---------------------------------------------------------------------------------------
@st.composite
def lying_audio(draw) -> bytes:
    """A real WAV or FLAC with its header rewritten (length, rate, channels, sizes), cut short or followed by
    garbage; or bytes that only start like one."""
    kind = draw(st.sampled_from(["wav", "flac", "noise"]))
    if kind == "noise":
        magic = draw(st.sampled_from([b"", b"RIFF", b"RIFF\0\0\0\0WAVEfmt ", b"fLaC", b"OggS", b"ID3", b"\xff\xfb"]))
        return magic + draw(st.binary(max_size=200))
    data = bytearray(draw(st.sampled_from(WAVS if kind == "wav" else FLACS)))
    for _ in range(draw(st.integers(1, 3))):
        if kind == "wav":
            fmt, chunk = data.find(b"fmt "), data.find(b"data")
            offsets = {"riff_size": (4, "<I"), "channels": (fmt + 10, "<H"), "rate": (fmt + 12, "<I"),
                       "byte_rate": (fmt + 16, "<I"), "block_align": (fmt + 20, "<H"), "bits": (fmt + 22, "<H"),
                       "data_size": (chunk + 4, "<I")}
            offset, layout = offsets[draw(st.sampled_from(sorted(offsets)))]
            width = struct.calcsize(layout)
            value = draw(st.integers(0, 2 ** (8 * width) - 1) | st.sampled_from([0, 1, 2, 8, 9, 7_999, 192_001]))
            if 0 <= offset and offset + width <= len(data):
                data[offset:offset + width] = struct.pack(layout, value % 2 ** (8 * width))
        else:  # STREAMINFO bytes 18-25: rate (20 bits), channels - 1 (3), bits - 1 (5), total samples (36)
            rate = draw(st.integers(0, 2**20 - 1) | st.sampled_from([8_000, 48_000, 192_000, 192_001, 7_999]))
            channels, bits = draw(st.integers(1, 8)), draw(st.integers(4, 32))
            total = draw(st.integers(0, 2**36 - 1) | st.sampled_from([0, 1, 48_000 * 601, 48_000 * 599]))
            packed = rate << 44 | (channels - 1) << 41 | (bits - 1) << 36 | total
            data[18:26] = packed.to_bytes(8, "big")
    ending = draw(st.sampled_from(["keep", "truncate", "garbage"]))
    if ending == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif ending == "garbage":
        data += draw(st.binary(min_size=1, max_size=300))
    return bytes(data)


@st.composite
def base64_of(draw, raw: st.SearchStrategy) -> str:
    text = base64.b64encode(draw(raw)).decode()
    form = draw(st.sampled_from(["plain", "data_url", "spaced", "unpadded", "bad_char", "non_ascii"]))
    if form == "data_url":
        return "data:audio/wav;base64," + text
    if form == "spaced":
        return "\n ".join(text[i:i + 60] for i in range(0, len(text), 60))
    if form == "unpadded":
        return text.rstrip("=")
    if form == "bad_char" and text:
        at = draw(st.integers(0, len(text) - 1))
        return text[:at] + draw(st.sampled_from("!*-_.%é")) + text[at + 1:]
    if form == "non_ascii":
        return text + "ü"
    return text


# --- valid requests ------------------------------------------------------------------------------------------------
def number_in(name: str, limits: Limits) -> st.SearchStrategy:
    lo, _, exclusive = bounds(name)
    hi = deployment_max(name, limits)
    if is_int_field(name):
        return st.integers(int(lo) + exclusive, int(hi))
    return st.floats(lo, hi, exclude_min=exclusive, allow_nan=False)


@st.composite
def valid_requests(draw, limits: Limits) -> tuple[dict, dict]:
    """(job input, the canonical values it must parse to)."""
    tasks = [t for t in TASK_TYPES if not (limits.is_turbo and t in BASE_MODEL_TASKS)]
    expected: dict = {"prompt": "song " + draw(TEXT), "task_type": draw(st.sampled_from(tasks))}
    for name in NUMERIC:
        if draw(st.booleans()):
            expected[name] = draw(number_in(name, limits))
    for name in BOOLEANS:
        if draw(st.booleans()):
            expected[name] = draw(st.booleans())
    choices = {"key_scale": VALID_KEYSCALES, "time_signature": VALID_TIME_SIGNATURES,
               "vocal_language": VALID_LANGUAGES, "audio_format": AUDIO_FORMATS}
    for name, values in choices.items():
        if draw(st.booleans()):
            expected[name] = draw(st.sampled_from(values))
    for name in ("lyrics", "sample_query", "lm_negative_prompt"):
        if draw(st.booleans()):
            expected[name] = draw(TEXT)
    if draw(st.booleans()):
        expected["seed"] = draw(st.integers(0, SEED_MAX) | st.lists(st.integers(0, SEED_MAX), min_size=1, max_size=4))
    if expected["task_type"] in SOURCE_AUDIO_TASKS:
        expected["src_audio_base64"] = base64.b64encode(draw(st.sampled_from(WAVS + FLACS))).decode()
    if expected.get("repainting_end") == 0:  # upstream's 0 = the end: the same request as -1
        expected["repainting_end"] = -1.0
    if expected.get("cfg_interval_start", 0.0) > expected.get("cfg_interval_end", 1.0):  # a rule across two fields
        expected["cfg_interval_start"], expected["cfg_interval_end"] = (expected.get("cfg_interval_end", 1.0),
                                                                        expected["cfg_interval_start"])
    if expected["task_type"] == "repaint" and expected.get("repainting_end", -1) != -1:
        if expected["repainting_end"] <= expected.get("repainting_start", 0.0):
            expected["repainting_end"] = -1.0
    if draw(st.booleans()):
        expected["reference_audio_base64"] = base64.b64encode(draw(st.sampled_from(WAVS))).decode()

    data: dict = {}
    nested: dict[str, dict] = {"param_obj": {}, "metas": {}}
    for name, value in expected.items():
        key = draw(st.sampled_from((name, *ALIASES.get(name, ()))))
        where = draw(st.sampled_from(["input", "input", "param_obj", "metas"]))
        (data if where == "input" else nested[where])[key] = value
    if nested["param_obj"]:
        data["param_obj"] = nested["param_obj"]
    if nested["metas"]:
        data["metas"] = json.dumps(nested["metas"]) if draw(st.booleans()) else nested["metas"]
    return data, expected


def parses_to(request: GenerateRequest, expected: dict) -> None:
    for name, value in expected.items():
        if name == "seed":
            seeds = value if isinstance(value, list) else [value]
            assert request.explicit_seeds == ([] if request.use_random_seed else seeds)
        elif name in AUDIO_INPUT_FIELDS:
            assert request.audio_input(name) == base64.b64decode(value)
        elif name == "sample_query" and expected.get("sample_mode") and not value.strip():
            assert request.sample_query == SAMPLE_FROM_NOTHING  # sample_mode with no query: the LM's own start
        else:
            assert getattr(request, name) == value, (name, getattr(request, name), value)
    assert request.warnings == []


def keys_of(source: object) -> list[str]:
    if isinstance(source, str):
        try:
            source = json.loads(source)
        except (ValueError, RecursionError):
            return []
    return list(source) if isinstance(source, dict) else []


# --- properties of the parser ------------------------------------------------------------------------------------
@pytest.mark.parametrize("limits", ["default", "tight"])
@settings(FUZZ, max_examples=250)
@given(data=JSON)
def test_any_json_value_is_parsed_or_refused_in_one_line(limits, data):
    outcome(data, LIMITS[limits])


@pytest.mark.parametrize("limits", ["default", "tight", "base"])
@settings(FUZZ, max_examples=250)
@given(data=field_dicts())
def test_real_field_names_with_any_values_are_parsed_or_refused_in_one_line(limits, data):
    result = outcome(data, LIMITS[limits])
    if isinstance(result, str):
        # the fault is in a field the caller sent (at the top or in a source), or the request is empty
        sent = [*data, *(key for source in ("param_obj", *METADATA_CONTAINERS) for key in keys_of(data.get(source)))]
        empty = ["input"] if not data else ["prompt"]
        assert names_field(result, *sent, *(ALIAS_OF.get(k, k) for k in sent), *empty), (result, data)


@st.composite
def broken_in_one_field(draw) -> tuple[str, dict, dict]:
    limits = draw(st.sampled_from(sorted(LIMITS)))
    data, _ = draw(valid_requests(LIMITS[limits]))
    key = draw(st.sampled_from(tuple(FIELDS) + tuple(ALIAS_OF)))
    for same in (ALIAS_OF.get(key, key), *ALIASES.get(ALIAS_OF.get(key, key), ())):  # one name for the field
        data.pop(same, None)
        for source in ("param_obj", "metas"):
            if isinstance(data.get(source), dict):
                data[source].pop(same, None)
            elif isinstance(data.get(source), str):
                data[source] = json.dumps({k: v for k, v in json.loads(data[source]).items() if k != same})
    data[key] = draw(field_value(key))
    return limits, key, data


@settings(FUZZ, max_examples=350)
@given(case=broken_in_one_field())
def test_a_valid_request_broken_in_one_field_names_that_field(case):
    limits, key, data = case
    result = outcome(data, LIMITS[limits])
    if isinstance(result, str):
        assert names_field(result, key, ALIAS_OF.get(key, key)), (result, key)


@settings(FUZZ, max_examples=250)
@given(case=st.sampled_from(sorted(LIMITS)).flatmap(lambda name: st.tuples(st.just(name),
                                                                             valid_requests(LIMITS[name]))))
def test_valid_requests_parse_to_the_values_given(case):
    limits, (data, expected) = case
    request = parse_generate_request(data, LIMITS[limits])
    parses_to(request, expected)


@settings(FUZZ, max_examples=250)
@given(field=st.sampled_from(AUDIO_INPUT_FIELDS), encoded=base64_of(lying_audio()),
       limits=st.sampled_from(sorted(LIMITS)))
def test_lying_or_broken_audio_is_refused_naming_its_field_or_decodes_within_the_cap(field, encoded, limits):
    from inference.audio_input import decode_audio_input

    data = {"prompt": "x", field: encoded, "task_type": "cover" if field == "src_audio_base64" else "text2music"}
    result = outcome(data, LIMITS[limits])
    if isinstance(result, str):
        assert names_field(result, field), result
        return
    try:
        audio = decode_audio_input(result.audio_input(field), field, MODEL_RATE)
    except InputError as err:
        event("accepted, then refused while decoding")
        assert names_field(check_message(str(err), data), field)
        return
    event("decoded")
    assert audio.dtype.is_floating_point and audio.shape[0] == 2
    assert 0 < audio.shape[1] <= MAX_DURATION_S * MODEL_RATE + 1
    assert bool(audio.isfinite().all())


def test_a_good_audio_input_is_accepted_and_decoded():
    """The audio property above is not vacuous: the untouched file parses and decodes."""
    from inference.audio_input import decode_audio_input

    request = parse_generate_request({"prompt": "x", "task_type": "cover",
                                      "src_audio_base64": base64.b64encode(GOOD_WAV).decode()}, Limits())
    audio = decode_audio_input(request.audio_input("src_audio_base64"), "src_audio_base64", MODEL_RATE)
    assert tuple(audio.shape) == (2, 2_400)


# --- the handler, through RunPod's SDK ------------------------------------------------------------------------------
WORKER_MAX_DURATION, WORKER_MAX_BATCH = 20, 2
CHEAP = {"prompt": "fuzz", "audio_duration": 10, "inference_steps": 1, "batch_size": 1, "audio_format": "wav"}


@pytest.fixture(scope="module")
def small_worker(checkpoint_dir, tmp_path_factory):
    """A worker of its own with small limits, so that generated valid jobs stay cheap."""
    process, url = start_worker_api(checkpoint_dir, tmp_path_factory.mktemp("fuzz-worker"),
                                    ACESTEP_MAX_DURATION=str(WORKER_MAX_DURATION),
                                    ACESTEP_MAX_BATCH_SIZE=str(WORKER_MAX_BATCH), ACESTEP_WARMUP="0")
    try:
        yield url, process
    finally:
        stop(process)


ENDPOINTS = st.sampled_from([
    "", "http://", "ftp://127.0.0.1", "file:///etc/passwd", "http://127.0.0.1:9", "http://[::1]:9", "http://0.0.0.0",
    "http://169.254.169.254/latest/meta-data", "http://10.0.0.1", "http://192.168.1.1", "http://100.64.0.1",
    "https://user:password@127.0.0.1", "http://localhost:1", "javascript:alert(1)", "//127.0.0.1",
])
S3_CONFIGS = st.one_of(
    JSON.filter(bool),  # a falsy s3Config is no s3Config
    st.fixed_dictionaries({}, optional={key: st.one_of(ENDPOINTS if key == "endpointUrl" else TEXT, JSON)
                                        for key in S3_KEYS}),
    st.fixed_dictionaries({"endpointUrl": ENDPOINTS, "accessId": st.just("fuzz-access-id"),
                           "accessSecret": st.just("fuzz-secret-value"), "bucketName": st.just("songs")}),
)


@st.composite
def jobs(draw) -> object:
    kind = draw(st.sampled_from(["json", "fields", "fields", "broken", "s3", "s3"]))
    if kind == "json":
        return draw(JSON)
    if kind == "fields":
        data = draw(field_dicts())
    elif kind == "broken":
        data = draw(broken_in_one_field())[2]
    else:
        data = {**CHEAP, "s3Config": draw(S3_CONFIGS)}
    # the jobs that turn out valid are rendered: keep them short and cheap on this tiny worker
    for name, value in CHEAP.items():
        if not any(key in data for key in (name, *ALIASES.get(name, ()))):
            data[name] = value
    if isinstance(data.get("inference_steps"), int) and not isinstance(data["inference_steps"], bool):
        data["inference_steps"] = min(data["inference_steps"], 2)
    return data


def too_long_to_read(value: object) -> bool:
    """Whether JSON holding ``value`` has an integer longer than Python's JSON parser reads by default."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value.bit_length() > sys.get_int_max_str_digits() * 3.32
    if isinstance(value, dict):
        return any(too_long_to_read(v) for v in value.values())
    if isinstance(value, list):
        return any(too_long_to_read(v) for v in value)
    return False


def non_finite_in(value: object) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(non_finite_in(v) for v in value.values())
    if isinstance(value, list):
        return any(non_finite_in(v) for v in value)
    return False


def post_job(url: str, job_input: object) -> requests.Response:
    body = to_json({"input": job_input})
    return requests.post(f"{url}/runsync", data=body, headers={"Content-Type": "application/json"}, timeout=120)


@settings(FUZZ, max_examples=250)
@given(job_input=jobs())
def test_jobs_through_runpods_sdk_are_answered_in_one_line_naming_the_field(small_worker, job_input):
    url, process = small_worker
    response = post_job(url, job_input)
    assert process.poll() is None, "the worker died"
    event(f"HTTP {response.status_code}")
    if too_long_to_read(job_input):
        assert response.status_code == 400  # the SDK's JSON parser refuses the body before any handler runs
        return
    if not isinstance(job_input, dict):
        # RunPod's request model takes only an object as input; its 422 answer repeats the input, which fails to
        # render (500) when that holds NaN or Infinity
        assert response.status_code in ((422, 500) if non_finite_in(job_input) else (422,)), response.text[:200]
        return
    assert response.status_code == 200, response.text[:300]
    result = response.json()
    event(f"job {result['status']}")
    if result["status"] == "COMPLETED":
        audios = result["output"]["audios"]
        assert audios and all(a["bytes"] > 0 and a["base64"] for a in audios)
        return
    assert result["status"] == "FAILED", result
    error = check_message(result["error"], job_input)
    assert not error.startswith("internal error"), error  # every failure a job can cause is anticipated
    assert "<path>" not in error or "/" in json.dumps(job_input, default=str), error
    assert "fuzz-secret-value" not in error
    if "s3Config" in job_input and job_input.keys() == {*CHEAP, "s3Config"}:
        assert names_field(error, "s3Config"), error


def test_the_worker_serves_a_good_job_after_the_fuzzing(small_worker):
    url, process = small_worker
    good = {"prompt": "lofi hip hop, vinyl crackle", "audio_duration": 10, "inference_steps": 2, "batch_size": 1,
            "seed": 7}
    result = post_job(url, good).json()
    assert result["status"] == "COMPLETED", result
    [audio] = result["output"]["audios"]
    decoded, rate = sf.read(io.BytesIO(base64.b64decode(audio["base64"])), always_2d=True)
    assert rate == MODEL_RATE and decoded.shape[1] == 2 and abs(decoded.shape[0] / rate - 10) < 0.05
    assert audio["seed"] == 7
    assert process.poll() is None
