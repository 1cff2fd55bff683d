"""User-given audio codes (``audio_code_string``): the 5 Hz LM's ``<|audio_code_N|>`` tokens, as a ``thinking`` run
writes them (five a second), given back to render from them again without the LM."""

from __future__ import annotations

import re

from inference.contract.messages import clip

CODES_PER_SECOND = 5
AUDIO_CODE_MAX = 63_999  # the released audio tokenizer's codebook (FSQ levels [8, 8, 8, 5, 5, 5]): 64,000 codes
CODE_TOKEN = re.compile(r"<\|audio_code_(\d{1,5})\|>")  # one token; group 1 its value
_ONLY_CODES = re.compile(r"\s*(?:<\|audio_code_\d{1,5}\|>\s*)+")
MAX_CODE_STRING_CHARS = 200_000  # 3,000 codes (600 s) of up to 20 characters, with room for separators
NO_AUDIO_TOKENIZER = "audio_code_string needs a checkpoint with an audio tokenizer, which this worker's has not"


def parse_audio_codes(value: str) -> list[int]:
    """The code values, checked: only code tokens (and whitespace between them), each within the codebook."""
    if not _ONLY_CODES.fullmatch(value):
        raise ValueError(f"must be audio code tokens like '<|audio_code_123|><|audio_code_9|>' and nothing else "
                         f"(got {clip(value)})")
    codes = [int(number) for number in CODE_TOKEN.findall(value)]
    high = max(codes)
    if high > AUDIO_CODE_MAX:
        raise ValueError(f"codes must be between 0 and {AUDIO_CODE_MAX} (got {high})")
    return codes


def codes_duration(codes: list[int]) -> float:
    return len(codes) / CODES_PER_SECOND


def code_tokens(text: str) -> list[str]:
    """Every audio code token in ``text``, in order, as written."""
    return [match.group(0) for match in CODE_TOKEN.finditer(text)]
