"""The LM's jobs: plan a song's metadata (phase 1), write its audio codes (phase 2), rewrite a caption and
lyrics (``format_input``/``use_format``) and write a song from a description (``sample_query``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from inference.lm.constraints import DESCRIBE_FIELDS, PLAN_FIELDS, CodesProgram, FreeProgram, Program
from inference.lm.load import LoadedLM
from inference.contract.audio_codes import CODES_PER_SECOND, code_tokens
from inference.lm.parse import LmOutput, parse_output
from inference.lm.prompts import (
    codes_prompt,
    create_prompt,
    format_prompt,
    plan_prompt,
    unconditional_codes_prompt,
)
from inference.lm.sampling import Sampling, decode

PLAN_MAX_TOKENS = 1024  # the forced fields, a caption (at most 512 tokens) and the values
DESCRIBE_TAIL_TOKENS = 1500  # lyrics after the plan, for format and sample
FREE_CODES_MARGIN = 500  # with constrained_decoding off, codes past the song's length the LM may write (upstream's)


@dataclass
class LmRun:
    output: LmOutput
    tokens: int = 0
    seconds: float = 0.0
    texts: list[str] = field(default_factory=list)


class LmPlanner:
    def __init__(self, lm: LoadedLM, max_duration: float):
        self.lm = lm
        self.max_duration = int(max_duration)

    @property
    def name(self) -> str:
        return self.lm.name

    def _generate(self, prompt: str, program, sampling: Sampling, max_new: int, seed: int,
                  negative: str | None = None) -> tuple[str, int]:
        encode = self.lm.tokenizer.encode
        prompts = [encode(prompt, add_special_tokens=False)]
        if negative is not None:
            prompts.append(encode(negative, add_special_tokens=False))
        produced = decode(self.lm.model, prompts, program, sampling, max_new, self.lm.tokens.pad, seed)
        return self.lm.tokenizer.decode(produced, skip_special_tokens=False), len(produced)

    @staticmethod
    def _values(user: dict[str, Any]) -> dict[str, str]:
        return {k: str(int(v)) if k in ("bpm", "duration") else str(v) for k, v in user.items() if v not in (None, "")}

    def _think(self, prompt: str, user: dict[str, Any], fields: tuple[str, ...], then: str, sampling: Sampling,
               seed: int, skip: tuple[str, ...] = (), tail_tokens: int = 0) -> LmRun:
        """A constrained ``<think>`` plan (never with CFG), then the end of the turn or free-text lyrics."""
        started = time.perf_counter()
        program = Program.plan(self.lm.vocab, self._values(user), self.max_duration, fields, then=then, skip=skip,
                               max_tail_tokens=tail_tokens) if sampling.constrained else FreeProgram(self.lm.vocab)
        text, count = self._generate(prompt, program, replace(sampling, cfg_scale=1.0), PLAN_MAX_TOKENS + tail_tokens,
                                     seed)
        return LmRun(parse_output(text, self.max_duration), count, time.perf_counter() - started, [text])

    def plan(self, caption: str, lyrics: str, user: dict[str, Any], sampling: Sampling, seed: int,
             skip: tuple[str, ...] = ()) -> LmRun:
        """Phase 1: bpm, caption, duration, keyscale, language, time signature (but those in ``skip``); the
        caller's values are forced."""
        return self._think(plan_prompt(caption, lyrics), user, PLAN_FIELDS, "stop", sampling, seed, skip)

    def codes(self, caption: str, lyrics: str, metas: dict[str, Any], duration: float, sampling: Sampling,
              negative_prompt: str, seed: int) -> LmRun:
        """Phase 2: exactly ``duration * 5`` audio codes after the plan, guided by the negative prompt."""
        started = time.perf_counter()
        count = int(duration * CODES_PER_SECOND)
        if sampling.constrained:
            program, budget = CodesProgram(self.lm.vocab, count), count + 2
        else:
            program, budget = FreeProgram(self.lm.vocab), count + FREE_CODES_MARGIN
        negative = unconditional_codes_prompt(negative_prompt) if sampling.cfg_scale > 1.0 else None
        text, produced = self._generate(codes_prompt(caption, lyrics, metas), program, sampling, budget, seed,
                                        negative)
        codes = parse_output(text).codes
        if not sampling.constrained:  # never longer than this deployment's longest song
            codes = "".join(code_tokens(codes)[: self.max_duration * CODES_PER_SECOND])
        output = LmOutput(codes=codes)
        return LmRun(output, produced, time.perf_counter() - started, [text])

    def describe(self, prompt: str, user: dict[str, Any], sampling: Sampling, seed: int,
                 skip: tuple[str, ...] = ()) -> LmRun:
        """format and sample: the plan with genres, then lyrics as free text (code tokens masked)."""
        return self._think(prompt, user, DESCRIBE_FIELDS, "tail", sampling, seed, skip, DESCRIBE_TAIL_TOKENS)

    def format(self, caption: str, lyrics: str, user: dict[str, Any], sampling: Sampling, seed: int) -> LmRun:
        skip = ("language",) if user.get("language") else ()  # a given language is kept, not planned
        return self.describe(format_prompt(caption, lyrics), {k: v for k, v in user.items() if k != "language"},
                             sampling, seed, skip)

    def sample(self, query: str, instrumental: bool, language: str | None, sampling: Sampling, seed: int) -> LmRun:
        return self.describe(create_prompt(query, instrumental), {"language": language} if language else {},
                             sampling, seed)
