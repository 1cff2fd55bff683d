"""The 5 Hz LM on a tiny random model with the real tokenizer layout: constrained plans always parse, the
caller's values always win, phase 2 writes exactly 5 codes a second, and the whole path runs end to end."""

from __future__ import annotations

import pytest
import torch

from inference.lm.planner import LmPlanner
from inference.lm.sampling import Sampling
from inference.contract import VALID_KEYSCALES, VALID_LANGUAGES, VALID_TIME_SIGNATURES


@pytest.fixture(scope="module")
def planner(lm_service) -> LmPlanner:
    assert lm_service.planner is not None
    return lm_service.planner


def test_every_constrained_plan_parses_in_range(planner):
    wild = Sampling(temperature=1.3, top_k=None, top_p=None)
    for seed in range(50):
        run = planner.plan("anything", "[Verse]\nla la", {}, wild, seed)
        out = run.output
        assert out.repairs == [], run.texts[0]
        assert 30 <= out.bpm <= 300 and 10 <= out.duration <= planner.max_duration
        assert out.keyscale in VALID_KEYSCALES and out.timesignature in VALID_TIME_SIGNATURES
        assert out.language in VALID_LANGUAGES and out.caption is not None


def test_the_callers_values_are_forced(planner):
    user = {"bpm": 128, "keyscale": "F# minor", "timesignature": "3", "duration": 25, "language": "ja"}
    for seed in range(5):
        out = planner.plan("x", "y", user, Sampling(temperature=1.5, top_p=None), seed).output
        assert (out.bpm, out.keyscale, out.timesignature, out.duration, out.language) == (128, "F# minor", "3", 25,
                                                                                         "ja")


def test_same_seed_same_plan(planner):
    a = planner.plan("x", "y", {}, Sampling(), 11).texts
    b = planner.plan("x", "y", {}, Sampling(), 11).texts
    assert a == b


def test_phase_two_writes_exactly_five_codes_a_second(planner):
    run = planner.codes("x", "y", {"bpm": 100, "duration": 12}, 12.0, Sampling(cfg_scale=2.5), "NO USER INPUT", 3)
    assert run.output.codes.count("<|audio_code_") == 60
    assert run.texts[0].endswith("<|im_end|>")


def test_thinking_end_to_end(lm_service):
    response = lm_service.generate({"caption": "lofi piano", "lyrics": "[Verse]\nrain", "thinking": True,
                                    "duration": 10, "batch_size": 2, "seed": 5, "audio_format": "wav",
                                    "bpm": 90, "language": "de"}, "job-think")
    assert response.lm_model == "acestep-5Hz-lm-0.6B" and response.timings.lm_s > 0
    assert response.timings.lm_tokens > 50  # the plan plus 50 codes
    assert response.metas.bpm == 90 and response.metas.vocal_language == "de"  # the caller's values won
    assert response.metas.keyscale in VALID_KEYSCALES and response.metas.timesignature in VALID_TIME_SIGNATURES
    assert [a.duration for a in response.audios] == [10.0, 10.0]


def test_no_duration_means_the_plan_decides(lm_service):
    response = lm_service.generate({"caption": "ambient", "batch_size": 1, "seed": 1, "audio_format": "wav",
                                    "use_random_seed": False}, "job-plan")
    assert 10 <= response.metas.duration <= 30 and response.timings.lm_s > 0  # within this tier (30 s here)
    assert abs(response.audios[0].duration - response.metas.duration) < 0.05


def test_sample_query_and_format(lm_service):
    sample = lm_service.generate({"sample_query": "a sad song about rain", "duration": 10, "batch_size": 1,
                                  "audio_format": "wav"}, "job-sample")
    assert sample.prompt and sample.timings.lm_s > 0
    formatted = lm_service.format_input({"caption": "rock", "lyrics": "[Verse]\nyo",
                                         "param_obj": {"bpm": 120, "language": "fr", "duration": 30}})
    assert formatted.bpm == 120 and formatted.vocal_language == "fr" and formatted.duration == 30
    assert formatted.key_scale in VALID_KEYSCALES and formatted.caption


def test_models_report_the_lm(lm_service):
    models = lm_service.models()
    assert models.lm_models[0].name == "acestep-5Hz-lm-0.6B" and models.lm_models[0].is_loaded
    assert models.models[0].supports_audio_codes


def test_a_checkpoint_without_audio_tokenizer_plans_metadata_only(lm_service):
    import dataclasses

    from inference.service import GenerationService

    no_codes = GenerationService(dataclasses.replace(lm_service.loaded, supports_audio_codes=False),
                                 lm_service.settings, lm_service.planner)
    response = no_codes.generate({"caption": "x", "thinking": True, "duration": 10, "batch_size": 1,
                                  "audio_format": "wav"}, "job-xl")
    assert any("cannot take audio codes: thinking planned the metadata only" in w for w in response.warnings)
    assert response.metas.keyscale in VALID_KEYSCALES  # the plan still ran
    assert no_codes.models().models[0].supports_audio_codes is False


def test_a_long_caption_wrapped_as_yaml_writes_it_arrives_whole(lm_service):
    """The checkpoints were trained on PyYAML's plans, which wrap a long caption onto an indented line at width 80:
    an LM that writes exactly that plan gets its whole caption through the constraint (before, the constraint
    ended the caption at the first line break and forced the next field)."""
    from dataclasses import replace

    from inference.lm.prompts import format_cot
    from tests.test_lm_switches import Scripted

    lm = lm_service.planner.lm
    caption = ("An energetic synth pop track with shimmering arpeggios and punchy gated drums and a bright soaring "
               "chorus full of hope")
    plan = format_cot({"bpm": 120, "caption": caption, "duration": 30, "keyscale": "F# minor", "language": "en",
                       "timesignature": "4"})
    assert "\n  " in plan and len(caption) > 110  # wrapped onto a continuation line, as upstream's YAML writes it
    script = lm.tokenizer.encode(plan, add_special_tokens=False) + [lm.tokens.eos]
    scripted = LmPlanner(replace(lm, model=Scripted(script, lm.vocab.size)), lm_service.planner.max_duration)
    run = scripted.plan("x", "y", {}, Sampling(temperature=0.0, top_p=None), 1)
    assert run.texts[0] == plan + "<|im_end|>"
    assert run.output.caption == caption and run.output.repairs == []


def test_a_caption_ends_where_the_lm_would_rather_write_the_next_field(lm_service):
    """After a line break upstream lets the caption go on only when the LM's likeliest token is indentation; here an
    LM that wants a blank line (or anything else) after the first line gets the next field forced instead."""
    from dataclasses import replace

    from tests.test_lm_switches import Scripted

    lm = lm_service.planner.lm
    encode = lm.vocab.encode
    head = [lm.tokens.think] + encode("\n") + encode("bpm:") + encode(" 120\n") + encode("caption:") + \
        encode(" a short caption\n")
    script = head + encode("\n") * 40  # wants a blank line, again and again
    scripted = LmPlanner(replace(lm, model=Scripted(script, lm.vocab.size)), lm_service.planner.max_duration)
    run = scripted.plan("x", "y", {}, Sampling(temperature=0.0, top_p=None), 1)
    assert run.output.caption == "a short caption"
    assert "caption: a short caption\nduration:" in run.texts[0]


def _prompts(planner, *texts: str) -> list[list[int]]:
    return [planner.lm.tokenizer.encode(text, add_special_tokens=False) for text in texts]


def _codes_prompts(planner) -> list[list[int]]:
    """Phase 2's two rows, of different lengths (so the unconditional one is left-padded)."""
    from inference.lm.prompts import codes_prompt, unconditional_codes_prompt

    prompts = _prompts(planner, codes_prompt("lofi piano", "[Verse]\nrain", {"bpm": 90, "duration": 10}),
                       unconditional_codes_prompt("NO USER INPUT"))
    assert len(prompts[0]) != len(prompts[1])
    return prompts


def test_the_static_cache_writes_the_same_tokens_as_the_dynamic_one(planner):
    from inference.lm.constraints import CodesProgram, FreeProgram, Program
    from inference.lm.prompts import plan_prompt
    from inference.lm.sampling import decode

    lm = planner.lm
    plan = _prompts(planner, plan_prompt("dreamy synthwave", "[Verse]\nneon"))
    cases = [(lambda: CodesProgram(lm.vocab, 40), _codes_prompts(planner), Sampling(cfg_scale=2.5,
                                                                                    repetition_penalty=1.2), 42),
             (lambda: Program.plan(lm.vocab, {}, planner.max_duration), plan, Sampling(), 1024),
             (lambda: FreeProgram(lm.vocab), plan, Sampling(temperature=1.0), 120)]
    for seed in range(3):
        for program, prompts, sampling, budget in cases:
            dynamic = decode(lm.model, prompts, program(), sampling, budget, lm.tokens.pad, seed, static_cache=False)
            static = decode(lm.model, prompts, program(), sampling, budget, lm.tokens.pad, seed, static_cache=True)
            assert static == dynamic


def test_phase_two_reads_nothing_back_per_token(planner, monkeypatch):
    """The codes stay on the device until the end: however many are written, the same few reads to the host (the
    ones transformers makes in the prompt's forward, and the one read of all the tokens)."""
    from inference.lm.constraints import CodesProgram
    from inference.lm.sampling import decode

    lm = planner.lm
    reads = {"count": 0}
    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            reads["count"] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    sampling = Sampling(cfg_scale=2.5, repetition_penalty=1.1, top_k=200)
    for static in (False, True):
        counts = []
        for codes in (5, 40):
            reads["count"] = 0
            tokens = decode(lm.model, _codes_prompts(planner), CodesProgram(lm.vocab, codes), sampling, codes + 2,
                            lm.tokens.pad, 1, static_cache=static)
            assert len(tokens) == codes + 1 and tokens[-1] == lm.tokens.eos
            counts.append(reads["count"])
        assert counts[0] == counts[1] <= 3, (static, counts)


def test_a_seed_reproduces_with_guidance_and_the_repetition_penalty(planner):
    from inference.lm.constraints import Program
    from inference.lm.prompts import plan_prompt
    from inference.lm.sampling import decode

    lm = planner.lm
    sampling = Sampling(cfg_scale=2.5, repetition_penalty=1.3)
    codes = [planner.codes("x", "y", {"bpm": 100, "duration": 10}, 10.0, sampling, "NO USER INPUT", 9).texts
             for _ in range(2)]
    assert codes[0] == codes[1]
    prompts = _prompts(planner, plan_prompt("dreamy synthwave", "[Verse]\nneon"), plan_prompt("", ""))

    def plan(seed: int) -> list[int]:
        return decode(lm.model, prompts, Program.plan(lm.vocab, {}, planner.max_duration), sampling, 1024,
                      lm.tokens.pad, seed)

    assert plan(4) == plan(4) != plan(5)


def test_fixed_text_draws_nothing(planner, monkeypatch):
    """A plan whose every value the caller gave is fixed text from start to end: no step sorts or draws."""
    draws = {"count": 0}
    for name in ("sort", "softmax"):
        original = getattr(torch, name)

        def counted(*args, _original=original, **kwargs):
            draws["count"] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, counted)
    user = {"bpm": 128, "keyscale": "F# minor", "timesignature": "3", "duration": 25, "language": "ja"}
    run = planner.plan("x", "y", user, Sampling(), 3, skip=("caption",))
    assert run.output.bpm == 128 and run.output.keyscale == "F# minor" and run.tokens > 20
    assert draws["count"] == 0
