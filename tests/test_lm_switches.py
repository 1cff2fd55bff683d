"""The LM's switches as upstream clients send them, and audio codes given back: on the tiny checkpoint with its
tiny random 5 Hz LM, through the worker's own service (the same path a RunPod job takes)."""

from __future__ import annotations

import io

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from inference.contract import VALID_LANGUAGES, parse_generate_request
from inference.errors import InputError
from inference.lm.constraints import Constraint
from inference.lm.sampling import Sampling, decode

SONG = {"caption": "warm jazz trio", "lyrics": "[Verse]\nsoft", "batch_size": 1, "seed": 21, "audio_format": "wav",
        "use_random_seed": False}
ALL_METAS = {"bpm": 96, "key_scale": "D minor", "time_signature": "4", "duration": 10}


def samples(response) -> np.ndarray:
    import base64

    return sf.read(io.BytesIO(base64.b64decode(response.audios[0].base64)))[0]


def codes(count: int, start: int = 0) -> str:
    return "".join(f"<|audio_code_{(start + 7 * i) % 64000}|>" for i in range(count))


def test_the_codes_a_thinking_run_wrote_render_the_same_song_without_the_lm(lm_service):
    thought = lm_service.generate({**SONG, **ALL_METAS, "thinking": True}, "job-think-codes")
    assert thought.audio_codes and thought.audio_codes.count("<|audio_code_") == 50  # 10 s, five a second
    again = lm_service.generate({**SONG, **ALL_METAS, "audio_code_string": thought.audio_codes}, "job-given-codes")
    assert again.timings.lm_tokens == 0 and again.audio_codes is None  # the LM wrote nothing this time
    assert np.array_equal(samples(again), samples(thought))
    other = lm_service.generate({**SONG, **ALL_METAS, "audio_code_string": codes(50)}, "job-other-codes")
    assert not np.array_equal(samples(other), samples(thought))  # the codes given are the ones rendered


@pytest.mark.parametrize("count", [60, 52])  # 52 codes: 10.4 s, not cut to whole seconds
def test_given_codes_decide_the_length_and_skip_phase_two(lm_service, count):
    response = lm_service.generate({**SONG, "audio_code_string": codes(count), "duration": 25, "thinking": True,
                                    "bpm": 90, "key_scale": "C major", "time_signature": "3"}, "job-codes-length")
    assert response.audios[0].duration == pytest.approx(count / 5, abs=0.001)
    assert f"audio_duration 25 was replaced by the length of the audio codes ({count / 5:g} s)" in response.warnings
    assert response.audio_codes is None and response.timings.lm_tokens == 0  # metas given: no plan, no phase 2


@pytest.mark.parametrize("fields, words", [
    ({"audio_code_string": "1,2,3"}, "audio_code_string must be audio code tokens"),
    ({"audio_code_string": codes(60) + "hello"}, "audio_code_string must be audio code tokens"),
    ({"audio_code_string": "<|audio_code_64000|>" * 60}, "codes must be between 0 and 63999 (got 64000)"),
    ({"audio_code_string": codes(20)}, "audio_code_string must hold 50 to 3000 codes"),
    ({"audio_code_string": codes(60), "task_type": "repaint", "src_audio_base64": "UklGRg=="},
     "audio_code_string works with task_type text2music or cover"),
    ({"lm_repetition_penalty": 3}, "lm_repetition_penalty"),
])
def test_bad_codes_and_switches_are_one_line_errors_naming_the_field(fields, words):
    with pytest.raises(InputError) as err:
        parse_generate_request({**SONG, **fields})
    assert words in str(err.value) and "\n" not in str(err.value)


def test_the_switches_are_read_under_upstreams_names():
    request = parse_generate_request({**SONG, "cot_caption": False, "cot-language": "false", "constrained": False,
                                      "lmRepetitionPenalty": 1.2, "audio_codes": codes(50)})
    assert (request.use_cot_caption, request.use_cot_language, request.constrained_decoding) == (False, False, False)
    assert request.lm_repetition_penalty == 1.2 and request.audio_code_string == codes(50)
    assert request.warnings == [] and request.audio_duration == 10.0


def test_a_cover_can_render_from_codes_instead_of_a_source(lm_service):
    response = lm_service.generate({**SONG, "task_type": "cover", "audio_code_string": codes(55)}, "job-cover-codes")
    assert response.audios[0].duration == pytest.approx(11.0, abs=0.01)


def test_use_cot_caption_false_keeps_the_callers_caption_and_plans_none(lm_service):
    planned = lm_service.generate({**SONG, "duration": 10, "thinking": True}, "job-cot-caption")
    assert planned.prompt != SONG["caption"]  # by default the DiT renders the LM's caption
    kept = lm_service.generate({**SONG, "duration": 10, "thinking": True, "use_cot_caption": False}, "job-no-cot")
    assert kept.prompt == SONG["caption"]
    text = lm_service.planner.plan("x", "y", {}, Sampling(), 4, skip=("caption",)).texts[0]
    assert "caption:" not in text and "bpm:" in text


def test_use_cot_language_false_leaves_the_language_unplanned(lm_service):
    text = lm_service.planner.plan("x", "y", {}, Sampling(), 4, skip=("language",)).texts[0]
    assert "language:" not in text and "keyscale:" in text
    for seed in range(8):  # a seed whose plan says another language than the request's default (en)
        job = {**SONG, "seed": seed, "duration": 10, "thinking": True}
        planned = lm_service.generate(job, f"job-lang-{seed}").metas.vocal_language
        if planned != "en":
            break
    assert planned in VALID_LANGUAGES and planned != "en"
    kept = lm_service.generate({**job, "use_cot_language": False}, "job-no-lang").metas.vocal_language
    assert kept == "en"  # the same request, the switch off: the request's own (default) language


class Scripted(torch.nn.Module):
    """A language model that writes ``script`` (one token id per step, the last one repeated for ever), so what
    free decoding does with what an LM writes is plain to see."""

    def __init__(self, script: list[int], size: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.script, self.size, self.step = script, size, 0

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=True, past_key_values=None):
        logits = torch.zeros((input_ids.shape[0], 1, self.size))
        logits[..., self.script[min(self.step, len(self.script) - 1)]] = 10.0
        self.step += 1
        return SimpleNamespace(logits=logits, past_key_values=None)


def with_lm(lm_service, script: list[int]):
    from inference.lm.planner import LmPlanner
    from inference.service import GenerationService

    lm = lm_service.planner.lm
    planner = LmPlanner(replace(lm, model=Scripted(script, lm.vocab.size)), lm_service.planner.max_duration)
    return GenerationService(lm_service.loaded, lm_service.settings, planner)


def test_constrained_decoding_off_decodes_freely(lm_service):
    constrained = lm_service.planner.plan("x", "y", {}, Sampling(), 8)
    free = lm_service.planner.plan("x", "y", {}, Sampling(constrained=False), 8)
    assert constrained.texts[0].startswith("<think>") and free.texts[0] != constrained.texts[0]
    assert constrained.output.repairs == []


FREE_JOB = {**SONG, **ALL_METAS, "thinking": True, "constrained_decoding": False}


def test_free_codes_decide_the_length_but_never_past_the_tiers_longest_song(lm_service):
    tokens = lm_service.planner.lm.tokens
    endless = with_lm(lm_service, [tokens.code_ids[7]])  # codes and never the end of its turn
    response = endless.generate(FREE_JOB, "job-free-long")
    assert response.audio_codes == "<|audio_code_7|>" * 150 and response.audios[0].duration == 30.0  # this tier: 30 s
    assert "with constrained_decoding off the LM wrote 150 audio codes: the song is 30 s long" in response.warnings


def test_free_codes_too_few_for_a_song_are_dropped(lm_service):
    tokens = lm_service.planner.lm.tokens
    short = with_lm(lm_service, [tokens.code_ids[3]] * 20 + [tokens.eos])
    response = short.generate(FREE_JOB, "job-free-short")
    assert response.audio_codes is None and response.audios[0].duration == 10.0  # the duration asked for
    assert "too few for a song: generated without them" in " ".join(response.warnings)


def test_free_decoding_never_writes_a_code_past_the_codebook():
    """The released tokenizers carry 65,535 code tokens for a 64,000-entry codebook: free decoding must not draw
    the extra ones (a code no tokenizer of audio can decode, and no request may send back)."""
    from inference.lm.constraints import FreeProgram, Vocabulary
    from inference.lm.demo import build_lm_tokenizer
    from inference.lm.tokens import resolve_tokens

    tokenizer = build_lm_tokenizer(codes=8)
    tokenizer.add_tokens(["<|audio_code_63999|>", "<|audio_code_64500|>"], special_tokens=True)
    vocab = Vocabulary(tokenizer, resolve_tokens(tokenizer), len(tokenizer) + 4)
    allowed = torch.isfinite(FreeProgram(vocab).mask(torch.zeros(vocab.size)))
    ids = tokenizer.convert_tokens_to_ids(["<|audio_code_7|>", "<|audio_code_63999|>", "<|audio_code_64500|>"])
    assert allowed[ids].tolist() == [True, True, False]
    assert not allowed[len(tokenizer):].any()  # ids past the tokenizer: no text


class FavouriteTokens(torch.nn.Module):
    """A language model that always prefers token 3 (logit 3), then 5 (2): what the penalty does is plain to see."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=True, past_key_values=None):
        logits = torch.full((input_ids.shape[0], 1, 8), -5.0)
        logits[..., 3], logits[..., 5] = 3.0, 2.0
        return SimpleNamespace(logits=logits, past_key_values=None)


class Anything(Constraint):
    """No constraint at all (the interface's defaults: every token allowed, each one read)."""


def test_the_repetition_penalty_discourages_tokens_already_written():
    greedy = Sampling(temperature=0.0, top_p=None)
    assert decode(FavouriteTokens(), [[1]], Anything(), greedy, 4, 0, 0) == [3, 3, 3, 3]
    # 3 written: 3 / 2 = 1.5 < 2, so 5; with both written 1.5 > 1, so 3 (HF's rule: a token is penalised once,
    # however often it was written)
    penalised = decode(FavouriteTokens(), [[1]], Anything(), replace(greedy, repetition_penalty=2.0), 4, 0, 0)
    assert penalised == [3, 5, 3, 3]


def test_the_repetition_penalty_reaches_the_lm_through_a_request(lm_service):
    job = {**SONG, **ALL_METAS, "thinking": True, "lm_temperature": 1.0, "lm_top_k": 2}  # the two likeliest codes
    plain = lm_service.generate(job, "job-penalty-off").audio_codes
    penalised = lm_service.generate({**job, "lm_repetition_penalty": 2.0}, "job-penalty-on").audio_codes
    assert plain and penalised and plain != penalised
    assert lm_service.generate(job, "job-penalty-off-again").audio_codes == plain  # the seed still reproduces


def test_a_source_audio_task_takes_its_length_from_the_source_not_the_lm(lm_service):
    from tests.test_source_tasks import source_wav

    source = {"task_type": "cover", "src_audio_base64": source_wav(11)}
    plain = lm_service.generate({**SONG, **source}, "job-cover-no-lm")
    assert plain.timings.lm_tokens == 0 and plain.audios[0].duration == 11.0  # no duration: no plan needed
    assert not any("replaced" in w for w in plain.warnings)
    thought = lm_service.generate({**SONG, **source, "thinking": True}, "job-cover-thinking")
    assert thought.audio_codes is None and thought.audios[0].duration == 11.0
    assert any("thinking writes no audio codes for a cover" in w for w in thought.warnings)
