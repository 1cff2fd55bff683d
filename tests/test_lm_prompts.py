"""The LM's prompt bytes (docs/lm.md section 2) and the reading of its output (section 3), on upstream-shaped text."""

from __future__ import annotations

from inference.lm.parse import parse_output
from inference.lm.prompts import (
    codes_prompt,
    create_prompt,
    format_cot,
    format_prompt,
    plan_prompt,
    unconditional_codes_prompt,
)

SYSTEM = "<|im_start|>system\n# Instruction\nGenerate audio semantic tokens based on the given conditions:\n\n<|im_end|>\n"


def test_phase_one_prompt_bytes():
    assert plan_prompt("dreamy synthwave", "[Verse]\nneon rain") == (
        SYSTEM + "<|im_start|>user\n# Caption\ndreamy synthwave\n\n# Lyric\n[Verse]\nneon rain\n<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_phase_two_prompt_ends_with_the_plan_and_an_open_turn():
    metas = {"bpm": 120, "caption": "An energetic synth-pop track with shimmering arpeggios, and a bright chorus: "
             "full of hope.", "duration": 180, "keyscale": "F# minor", "language": "no", "timesignature": "4/4"}
    prompt = codes_prompt("synth-pop", "[Chorus]\nhey", metas)
    assert prompt.startswith(plan_prompt("synth-pop", "[Chorus]\nhey"))
    assert prompt.endswith(
        "<think>\nbpm: 120\ncaption: 'An energetic synth-pop track with shimmering arpeggios, and a bright chorus:\n"
        "  full of hope.'\nduration: 180\nkeyscale: F# minor\nlanguage: 'no'\ntimesignature: 4\n</think>\n\n")
    assert format_cot({}) == "<think>\n\n</think>"
    assert format_cot({"duration": "30", "genres": "pop"}) == "<think>\nduration: 30\n</think>"  # genres never


def test_unconditional_prompt():
    expected = (SYSTEM + "<|im_start|>user\nNO USER INPUT<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert unconditional_codes_prompt("NO USER INPUT") == expected
    assert unconditional_codes_prompt("") == expected
    assert "user\nharsh noise<|im_end|>" in unconditional_codes_prompt("harsh noise")
    assert unconditional_codes_prompt("  \n\t ") == expected  # whitespace is no user input, as upstream reads it
    assert unconditional_codes_prompt(" NO USER INPUT ") == expected


def test_whitespace_is_no_user_input_for_format_and_sample():
    assert format_prompt(" \n ", "  ") == format_prompt("", "")
    assert create_prompt("\t", False) == create_prompt("", False)
    assert "user\nNO USER INPUT\n\ninstrumental: false" in create_prompt("   ", False)


def test_format_and_create_prompts():
    assert format_prompt("", "") == (
        "<|im_start|>system\n# Instruction\nFormat the user's input into a more detailed and specific musical "
        "description:\n\n<|im_end|>\n<|im_start|>user\n# Caption\nNO USER INPUT\n\n# Lyric\n[Instrumental]"
        "<|im_end|>\n<|im_start|>assistant\n")
    assert create_prompt("a rainy night", True) == (
        "<|im_start|>system\n# Instruction\nExpand the user's input into a more detailed and specific musical "
        "description:\n\n<|im_end|>\n<|im_start|>user\na rainy night\n\ninstrumental: true<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_parse_a_constrained_phase_one_output_without_closing_tag():
    text = ("<think>\nbpm: 128\ncaption: Driving synthwave with gated drums,\n  analog pads and airy vocals\n"
            "duration: 95\nkeyscale: A minor\nlanguage: en\ntimesignature: 4\n<|im_end|>")
    out = parse_output(text)
    assert (out.bpm, out.duration, out.keyscale, out.language, out.timesignature) == (128, 95, "A minor", "en", "4")
    assert out.caption == "Driving synthwave with gated drums, analog pads and airy vocals"
    assert out.repairs == [] and out.codes == ""


def test_parse_codes_and_lyrics_after_the_plan():
    text = ("<think>\nbpm: 90\ncaption: 'Lo-fi: dusty drums'\nduration: 30\ngenres: lo-fi hip hop\nkeyscale: "
            "Bb major\nlanguage: 'no'\ntimesignature: 4\n</think>\n\n# Lyrics\n[Verse]\nquiet streets\n<|im_end|>")
    out = parse_output(text)
    assert out.caption == "Lo-fi: dusty drums" and out.language == "no" and out.genres == "lo-fi hip hop"
    assert out.lyrics == "[Verse]\nquiet streets"
    codes = parse_output("<think>\n</think>\n\n<|audio_code_12|><|audio_code_7|><|im_end|>").codes
    assert codes == "<|audio_code_12|><|audio_code_7|>"


def test_invalid_values_are_dropped_with_a_warning():
    out = parse_output("<think>\nbpm: 900\nduration: soon\nkeyscale: H major\nlanguage: klingon\n"
                       "timesignature: 5\n</think>")
    assert out.bpm is out.duration is out.keyscale is out.language is out.timesignature is None
    assert len(out.repairs) == 5 and any("bpm 900 is outside 30-300" in r for r in out.repairs)
