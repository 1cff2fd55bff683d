"""Constrained decoding: the LM's ``<think>`` plan can only say valid things (docs/lm.md section 6).

A plan is a program of steps over token ids: fixed strings are forced token by token, a field's value is
either forced (the caller's own value: it always wins) or chosen from a prefix tree of every valid value
(bpm 30-300, duration 10 to the tier's maximum, the 70 keys, time signatures 2/3/4/6, the language codes),
free text (caption, genres) ends at a newline that the next field's name follows, may wrap onto indented
continuation lines (as PyYAML writes a long value at width 80, and the LM was trained on), and may not contain
code tokens, backticks or special tokens, then ``</think>``, then either the end of the turn (a plan) or free
text with code tokens masked (format and sample). What stays unconstrained: the words of the caption, genres
and lyrics.

Every program speaks ``Constraint``'s small interface to the decoding loop, and its masks stay on the model's
device: each bool mask and id tensor is made once per device (and vocabulary size) and kept, so a step builds
nothing on the host. Only ``Program`` (a plan walks a prefix tree) reads each token's value; ``CodesProgram``
counts and ``FreeProgram`` waits for the end of the turn, which the loop finds on the device.
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
        self.not_continuation = ~(self.starts_blank & ~self.free_text_blocked)  # after a line break
        self.codes_blocked = torch.ones(size, dtype=torch.bool)  # phase 2: everything but the code tokens
        self.codes_blocked[[i for i in tokens.code_ids if i < size]] = False
        self.newline = self.encode("\n")[0]
        self.line_enders = frozenset(torch.nonzero(self.ends_line).flatten().tolist())  # read per token: no tensor
        self._on_device: dict = {}
        self._ids: dict = {}
        self._children: dict = {}
        self._tries: dict = {}

    def on(self, name: str, device: torch.device, size: int) -> torch.Tensor:
        """The bool mask ``name`` (one of this vocabulary's) cut to ``size`` logits on ``device``, made once per
        device and size, so no step builds or copies a mask."""
        key = (name, device, size)
        mask = self._on_device.get(key)
        if mask is None:
            mask = self._on_device[key] = getattr(self, name)[:size].to(device)
        return mask

    def ids(self, ids: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """``ids`` as an index tensor on ``device``, made once per device."""
        key = (ids, device)
        tensor = self._ids.get(key)
        if tensor is None:
            tensor = self._ids[key] = torch.tensor(ids, dtype=torch.long, device=device)
        return tensor

    def children(self, node: dict) -> tuple[int, ...]:
        """The tokens a prefix-tree node allows next (computed once per node: the tries are kept)."""
        found = self._children.get(id(node))
        if found is None:
            found = self._children[id(node)] = (node, tuple(t for t in node if t != END))
        return found[1]

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def trie(self, values: list[str]) -> dict:
        """The prefix tree of the encodings of `` {value}\n``, built once per list of values and shared (it is only
        read while decoding)."""
        key = tuple(values)
        root = self._tries.get(key)
        if root is None:
            root = self._tries[key] = {}
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


class Constraint:
    """What the decoding loop asks of a program at every generated token.

    - ``forced()``: the one token this step allows when that is known without the logits (fixed text, a prefix-tree
      node with one child, the forced end of the turn), else None. The loop then draws nothing: no mask, no sort,
      no softmax over the vocabulary.
    - ``mask(logits)``: the logits (on the model's device) with what this step does not allow at -inf, computed on
      that device with the program's kept masks.
    - ``needs_value``: whether ``advance`` must see the token's value. True costs one device-to-host read per
      token; False lets the loop keep the tokens on the device and call ``advance(None)``.
    - ``stop_token``: for a program that needs no value, the token that ends the generation when drawn (None: the
      program ends by itself). The loop looks for it on the device every few tokens and cuts after its first one.
    - ``advance(token)``, ``done``: move on past the token; whether the program has ended.
    """

    needs_value = True
    stop_token: int | None = None
    done = False

    def forced(self) -> int | None:
        return None

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def advance(self, token: int | None) -> None:
        pass


class Program(Constraint):
    """The steps of one generation, and where the decoder is in them. A plan walks a prefix tree and ends a free
    value on a token's value, so it reads every token (``needs_value``)."""

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

    def forced(self) -> int | None:
        """The token this step allows alone, when the step says so by itself."""
        if self.done:
            return self.vocab.tokens.eos
        step = self.step
        if step.kind == "fixed":
            return step.ids[self.offset]
        if step.kind == "choice":
            children = self.vocab.children(self.node)
            return children[0] if len(children) == 1 else None
        if step.kind == "free":
            if self.free_tokens < CAPTION_MAX_TOKENS:
                return None
            return self._following_id() if self.after_newline else self.vocab.newline  # the value is ended
        if step.kind == "tail":
            return self.vocab.tokens.eos if self.free_tokens >= self.max_tail_tokens else None
        return self.vocab.tokens.eos  # stop

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with everything this step does not allow at -inf."""
        device, size = logits.device, logits.shape[-1]
        forced = self.forced()
        if forced is not None:
            return _only(logits, self.vocab.ids((forced,), device))
        step = self.step
        if step.kind == "choice":
            return _only(logits, self.vocab.ids(self.vocab.children(self.node), device))
        if step.kind == "free":
            if self.after_newline:
                return self._continue_or_end(logits)
            return logits.masked_fill(self.vocab.on("wrapped_text_blocked", device, size), float("-inf"))
        return logits.masked_fill(self.vocab.on("tail_blocked", device, size), float("-inf"))  # tail

    def _continue_or_end(self, logits: torch.Tensor) -> torch.Tensor:
        """After a line break in a free value, upstream's rule: the LM's likeliest token decides. If it starts an
        indented continuation line, only such tokens stay; otherwise the value ended and the next field's name is
        forced. Both are computed and one is picked on the device (reading the likeliest token would cost a
        second read per step)."""
        device, size = logits.device, logits.shape[-1]
        stop = self.vocab.on("not_continuation", device, size)
        goes_on = ~stop.gather(0, torch.argmax(logits, dim=-1, keepdim=True))
        ended = _only(logits, self.vocab.ids((self._following_id(),), device))
        return torch.where(goes_on, logits.masked_fill(stop, float("-inf")), ended)

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
            self.after_newline = token in self.vocab.line_enders
        elif step.kind == "tail":
            self.free_tokens += 1
            if token == self.vocab.tokens.eos:
                self.index = len(self.steps)
        else:
            self.index = len(self.steps)


class CodesProgram(Constraint):
    """Phase 2: exactly ``count`` audio-code tokens, then the end of the turn. Its state is a count: the mask allows
    only code tokens before the count and only the end after it, so no token's value is ever needed."""

    needs_value = False

    def __init__(self, vocab: Vocabulary, count: int):
        self.vocab = vocab
        self.count = count
        self.emitted = 0
        self.done = False

    def forced(self) -> int | None:
        return self.vocab.tokens.eos if self.emitted >= self.count else None

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        if self.emitted >= self.count:
            return _only(logits, self.vocab.ids((self.vocab.tokens.eos,), logits.device))
        return logits.masked_fill(self.vocab.on("codes_blocked", logits.device, logits.shape[-1]), float("-inf"))

    def advance(self, token: int | None = None) -> None:
        """One more code, or the end of the turn once ``count`` codes are written (a value, when given, is
        consistent with that: the mask allows nothing else)."""
        if self.emitted >= self.count or token == self.vocab.tokens.eos:
            self.done = True
        else:
            self.emitted += 1


class FreeProgram(Constraint):
    """``constrained_decoding`` off: the LM writes what it likes until the end of its turn (or the token budget);
    only ids past the tokenizer (no text) and code tokens past the codebook (no sound) are never drawn. What it
    wrote is checked afterwards. Its only state is whether the end came: the loop finds that on the device
    (``stop_token``), so no token is read back one at a time."""

    needs_value = False

    def __init__(self, vocab: Vocabulary):
        self.vocab = vocab
        self.done = False

    @property
    def stop_token(self) -> int:
        return self.vocab.tokens.eos

    def mask(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.masked_fill(self.vocab.on("free_blocked", logits.device, logits.shape[-1]), float("-inf"))

    def advance(self, token: int | None = None) -> None:
        self.done = self.done or token == self.vocab.tokens.eos


def _only(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Logits with only ``ids`` (an index tensor on the logits' device) left. If CFG pushed every one of them to
    -inf they are reset to 0, so one stays reachable; decided on the device, without reading anything back."""
    kept = logits.index_select(-1, ids)
    kept = torch.where(torch.isfinite(kept).any(), kept, 0.0)
    return torch.full_like(logits, float("-inf")).index_copy_(-1, ids, kept)
