"""Constrained decoding: the LM's ``<think>`` plan can only say valid things (docs/lm.md section 6).

A plan is a program of steps over token ids: fixed strings are forced token by token, a field's value is
either forced (the caller's own value: it always wins) or chosen from a prefix tree of every valid value
(bpm 30-300, duration 10 to the tier's maximum, the 70 keys, time signatures 2/3/4/6, the language codes),
free text (caption, genres) ends at a newline that the next field's name follows, may wrap onto indented
continuation lines (as PyYAML writes a long value at width 80, and the LM was trained on), and may not contain
code tokens, backticks or special tokens, then ``</think>``, then either the end of the turn (a plan) or free
text with code tokens masked (format and sample). What stays unconstrained: the words of the caption, genres
and lyrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from inference.contract.audio_codes import AUDIO_CODE_MAX, CODE_TOKEN
from inference.lm.tokens import LmTokens
from inference.contract import VALID_KEYSCALES, VALID_LANGUAGES, VALID_TIME_SIGNATURES

END = -1
CAPTION_MAX_TOKENS = 512
_NEWLINE_INDENT = re.compile(r"\n[ \t]+")
PLAN_FIELDS = ("bpm", "caption", "duration", "keyscale", "language", "timesignature")
DESCRIBE_FIELDS = ("bpm", "caption", "duration", "genres", "keyscale", "language", "timesignature")


class Vocabulary:
    """What the masks need to know about every token, computed once per tokenizer."""

    def __init__(self, tokenizer, tokens: LmTokens, size: int):
        self.tokenizer = tokenizer
        self.tokens = tokens
        self.size = size
        names = tokenizer.convert_ids_to_tokens(list(range(min(size, len(tokenizer)))))
        self.ends_line = torch.zeros(size, dtype=torch.bool)
        self.starts_blank = torch.zeros(size, dtype=torch.bool)  # a space or tab first: an indented continuation
        self.newline_indent = torch.zeros(size, dtype=torch.bool)  # a newline and indentation in one token
        blocked = torch.ones(size, dtype=torch.bool)  # ids past the tokenizer (padded embeddings) never
        for i, name in enumerate(names):
            text = name or ""
            newline = text.replace("Ċ", "\n")
            spaced = newline.replace("Ġ", " ").replace("ĉ", "\t")
            self.ends_line[i] = newline.endswith("\n") and "\n" not in newline[:-1]
            self.starts_blank[i] = spaced[:1] in (" ", "\t") and "\n" not in spaced
            self.newline_indent[i] = bool(_NEWLINE_INDENT.fullmatch(spaced))
            blocked[i] = ("`" in text) or ("\n" in newline[:-1])
        for i in tokens.specials:
            if i < size:
                blocked[i] = True
        self.free_text_blocked = blocked
        self.wrapped_text_blocked = blocked & ~self.newline_indent  # a wrapping value may break its line
        self.tail_blocked = torch.ones(size, dtype=torch.bool)  # lyrics: no codes, no special tokens but the end
        self.tail_blocked[: len(names)] = False
        for i in tokens.specials:
            if i < size:
                self.tail_blocked[i] = True
        self.tail_blocked[tokens.eos] = False
        # free decoding: never ids past the tokenizer (padded embeddings, no text) nor code tokens past the codebook
        self.free_blocked = torch.ones(size, dtype=torch.bool)
        self.free_blocked[: len(names)] = False
        for i, name in enumerate(names):
            match = CODE_TOKEN.fullmatch(name or "")
            if match and int(match.group(1)) > AUDIO_CODE_MAX:
                self.free_blocked[i] = True

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def trie(self, values: list[str]) -> dict:
        root: dict = {}
        for value in values:
            node = root
            for token in self.encode(f" {value}\n"):
                node = node.setdefault(token, {})
            node[END] = {}
        return root


def field_values(name: str, max_duration: int) -> list[str]:
    return {"bpm": [str(v) for v in range(30, 301)],
            "duration": [str(v) for v in range(10, max_duration + 1)],
            "keyscale": list(VALID_KEYSCALES),
            "timesignature": list(VALID_TIME_SIGNATURES),
            "language": list(VALID_LANGUAGES)}[name]


@dataclass
class Step:
    kind: str  # fixed | choice | free | tail | stop
    ids: list[int] | None = None
    trie: dict | None = None


class Program:
    """The steps of one generation, and where the decoder is in them."""

    def __init__(self, vocab: Vocabulary, steps: list[Step], max_tail_tokens: int = 0):
        self.vocab = vocab
        self.steps = steps
        self.index = 0
        self.offset = 0  # within a fixed step
        self.node: dict | None = None  # within a choice
        self.free_tokens = 0
        self.after_newline = False  # a wrapping value's line just ended: a continuation or the next field
        self.max_tail_tokens = max_tail_tokens
        self._enter()

    @classmethod
    def plan(cls, vocab: Vocabulary, user: dict[str, str], max_duration: int, fields=PLAN_FIELDS,
             then: str = "stop", skip: tuple[str, ...] = (), max_tail_tokens: int = 0) -> "Program":
        steps = [Step("fixed", [vocab.tokens.think] if vocab.tokens.think is not None else vocab.encode("<think>")),
                 Step("fixed", vocab.encode("\n"))]
        for name in fields:
            if name in skip:
                continue
            steps.append(Step("fixed", vocab.encode(f"{name}:")))
            if user.get(name) not in (None, ""):
                steps.append(Step("fixed", vocab.encode(f" {user[name]}\n")))
            elif name in ("caption", "genres"):
                steps.append(Step("free"))
            else:
                steps.append(Step("choice", trie=vocab.trie(field_values(name, max_duration))))
        end_think = [vocab.tokens.think_end] if vocab.tokens.think_end is not None else vocab.encode("</think>")
        steps.append(Step("fixed", end_think))
        steps.append(Step(then))
        for here, after in zip(steps, steps[1:]):  # a free value ends where the next fixed step's first token comes
            assert here.kind != "free" or (after.kind == "fixed" and after.ids), "a free value must be followed by text"
        return cls(vocab, steps, max_tail_tokens)

    @property
    def done(self) -> bool:
        return self.index >= len(self.steps)

    @property
    def step(self) -> Step:
        return self.steps[self.index]

    def _enter(self) -> None:
        self.offset, self.free_tokens, self.after_newline = 0, 0, False
        while not self.done and self.step.kind == "fixed" and not self.step.ids:
            self.index += 1
        if not self.done and self.step.kind == "choice":
            self.node = self.step.trie

    def _next(self) -> None:
        self.index += 1
        self._enter()

    def _following_id(self) -> int:
        """The first token of the step after a free value (always a fixed one: the next field's name)."""
        return self.steps[self.index + 1].ids[0]

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with everything this step does not allow at -inf."""
        if self.done:
            return _only(logits, [self.vocab.tokens.eos])
        step = self.step
        if step.kind == "fixed":
            return _only(logits, [step.ids[self.offset]])
        if step.kind == "choice":
            return _only(logits, [t for t in self.node if t != END])
        if step.kind == "free":
            following = self._following_id()
            if self.after_newline:  # upstream's rule: the LM's likeliest token decides, continuation or not
                continuation = self.vocab.starts_blank[: logits.shape[-1]] & \
                    ~self.vocab.free_text_blocked[: logits.shape[-1]]
                if self.free_tokens >= CAPTION_MAX_TOKENS or not bool(continuation[int(torch.argmax(logits))]):
                    return _only(logits, [following])  # the value ended: the next field's name
                return logits.masked_fill(~continuation, float("-inf"))  # an indented continuation line
            if self.free_tokens >= CAPTION_MAX_TOKENS:
                return _only(logits, self.vocab.encode("\n")[:1])
            return logits.masked_fill(self.vocab.wrapped_text_blocked[: logits.shape[-1]], float("-inf"))
        if step.kind == "tail":
            if self.free_tokens >= self.max_tail_tokens:
                return _only(logits, [self.vocab.tokens.eos])
            return logits.masked_fill(self.vocab.tail_blocked[: logits.shape[-1]], float("-inf"))
        return _only(logits, [self.vocab.tokens.eos])  # stop

    def advance(self, token: int) -> None:
        if self.done:
            return
        step = self.step
        if step.kind == "fixed":
            self.offset += 1
            if self.offset >= len(step.ids):
                self._next()
        elif step.kind == "choice":
            self.node = self.node[token]
            if END in self.node and len(self.node) == 1:
                self._next()
        elif step.kind == "free":
            if self.after_newline and token == self._following_id():  # the value ended; the next field began
                self._next()
                self.advance(token)
                return
            self.free_tokens += 1
            self.after_newline = bool(self.vocab.ends_line[token])
        elif step.kind == "tail":
            self.free_tokens += 1
            if token == self.vocab.tokens.eos:
                self.index = len(self.steps)
        else:
            self.index = len(self.steps)


class CodesProgram:
    """Phase 2: exactly ``count`` audio-code tokens, then the end of the turn."""

    def __init__(self, tokens: LmTokens, count: int, size: int):
        self.tokens = tokens
        self.count = count
        self.emitted = 0
        self.done = False
        self.blocked = torch.ones(size, dtype=torch.bool)  # everything but the code tokens (EOS too, until the end)
        self.blocked[[i for i in tokens.code_ids if i < size]] = False

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        if self.emitted >= self.count:
            return _only(logits, [self.tokens.eos])
        return logits.masked_fill(self.blocked[: logits.shape[-1]], float("-inf"))

    def advance(self, token: int) -> None:
        if token == self.tokens.eos:
            self.done = True
        else:
            self.emitted += 1


class FreeProgram:
    """``constrained_decoding`` off: the LM writes what it likes until the end of its turn (or the token budget);
    only ids past the tokenizer (no text) and code tokens past the codebook (no sound) are never drawn. What it
    wrote is checked afterwards."""

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.done = False

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(self.vocab.free_blocked[: logits.shape[-1]], float("-inf"))

    def advance(self, token: int) -> None:
        self.done = self.done or token == self.vocab.tokens.eos


def _only(logits: torch.Tensor, ids: list[int]) -> torch.Tensor:
    out = torch.full_like(logits, float("-inf"))
    out[..., ids] = logits[..., ids]
    if not torch.isfinite(out[..., ids]).any():  # CFG can push an allowed token to -inf: keep it reachable
        out[..., ids] = 0.0
    return out
