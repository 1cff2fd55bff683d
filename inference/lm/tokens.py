"""The LM's special tokens, found by name in its tokenizer at run time (never by hard-coded id)."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference.contract.audio_codes import AUDIO_CODE_MAX as MAX_AUDIO_CODE
from inference.contract.audio_codes import CODE_TOKEN

THINK, THINK_END, IM_END, IM_START, ENDOFTEXT = "<think>", "</think>", "<|im_end|>", "<|im_start|>", "<|endoftext|>"


@dataclass
class LmTokens:
    eos: int
    pad: int
    think: int | None
    think_end: int | None
    code_ids: list[int]  # token ids of <|audio_code_0..63999|> present in the vocabulary
    specials: set[int] = field(default_factory=set)  # every added special token (codes included)


def resolve_tokens(tokenizer) -> LmTokens:
    vocab = tokenizer.get_vocab()
    codes = sorted((int(m.group(1)), i) for token, i in vocab.items()
                   if (m := CODE_TOKEN.fullmatch(token)) and int(m.group(1)) <= MAX_AUDIO_CODE)
    eos = vocab.get(IM_END, tokenizer.eos_token_id)
    if eos is None:
        raise ValueError("the LM tokenizer has neither <|im_end|> nor an eos token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else vocab.get(ENDOFTEXT, eos)
    specials = {i for token, i in vocab.items() if token in tokenizer.all_special_tokens or CODE_TOKEN.fullmatch(token)
                or token in (THINK, THINK_END, IM_END, IM_START, ENDOFTEXT)}
    return LmTokens(eos=eos, pad=pad, think=vocab.get(THINK), think_end=vocab.get(THINK_END),
                    code_ids=[i for _, i in codes], specials=specials)
