"""The decoding loop: KV cache, optional classifier-free guidance, the constraint, then sampling.

Per step, in this order (docs/lm.md section 5): CFG ``uncond + s * (cond - uncond)`` in fp32 when a negative
prompt is given and ``cfg_scale > 1``; NaN to -inf; the repetition penalty on the tokens this run has written (not
the prompt's: HF's rule, positive logits divided and negative multiplied); the constraint's mask; top-k; top-p on
the untempered logits (the token that crosses p is kept); temperature (<= 0 means argmax); a draw from a
generator on the model's device seeded with the seed, so a seed reproduces the plan. Unlike upstream's default
engine, top-k and top-p are really applied. A step whose constraint allows one token alone (fixed text) draws
nothing: the token is taken as it is, without a mask, a sort or a softmax over the vocabulary.

All of it runs on the model's device: the logits never leave it, the masks are the programs' kept device tensors
and the draw is what ``torch.multinomial(probs, 1)`` computes (``argmax(probs / q)``, ``q ~ Exp(1)`` from the
generator) without its checks, which read values back. The host reads a token only where the program needs its
value (``Constraint.needs_value``): once per token for a plan, which walks a prefix tree; never during phase 2,
whose tokens stay on the device and feed the next forward directly, read once at the end (they are kept as a
list of one-element tensors: appending costs nothing, where copying into a preallocated buffer would be one more
kernel per token); and for free decoding every ``STOP_CHECK_EVERY`` tokens, to see whether the end of the turn
came (the tokens drawn after it are cut). On the CPU a check at every token and one every 8 measured the same
host time per token (a read costs nothing there); every 8 spends at most 7 forwards past the end per call, and
spares an accelerator a stall at every token.

The KV cache is transformers' ``DynamicCache`` on the CPU and its ``StaticCache`` (preallocated for the prompt
and the token budget, written in place, the shape ``torch.compile`` and CUDA graphs need) on an accelerator. On
the CPU the static cache measured 4-7 % fewer tokens per second with the tiny LM (one thread: it attends over
the whole budget at every step, and a plan's budget is 1,024 tokens), while the dynamic one only grows; both
give the same tokens (tests/test_lm.py). ``bench/lm.py --cache static|dynamic`` measures either.

transformers' own ``generate`` with the constraint as a ``LogitsProcessor`` does not fit these semantics: it
applies temperature before top-k and top-p (top-p here is on the untempered logits), its ``guidance_scale`` mixes
log-softmaxed logits from a separate unconditional pass (CFG here mixes the raw logits of one two-row batch, as
upstream does), and its repetition penalty counts the prompt; so the loop stays written out here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

STOP_CHECK_EVERY = 8  # free decoding: every how many tokens the device is asked whether the end was drawn


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.85
    top_k: int | None = None
    top_p: float | None = 0.9
    cfg_scale: float = 1.0
    repetition_penalty: float = 1.0
    constrained: bool = True  # the planner's choice of program: the constraint, or free decoding


def choose(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> torch.Tensor:
    """One token id, as a one-element tensor on the logits' device, from masked fp32 logits: top-k, top-p on the
    untempered logits, then temperature and the draw; argmax when the temperature is <= 0 or the tempered
    probabilities are not finite. Nothing is read back to the host."""
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p is not None and 0.0 < sampling.top_p < 1.0:
        logits = _top_p(logits, sampling.top_p)
    greedy = torch.argmax(logits, dim=-1, keepdim=True)
    if sampling.temperature <= 0:
        return greedy
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    # finite probabilities from a softmax always sum to more than 0: finiteness is the whole check
    return torch.where(torch.isfinite(probs).all(), _draw(probs, generator), greedy)


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """The smallest set of tokens whose probability reaches ``top_p``, including the token that crosses it; the
    rest at -inf. What to drop is found in sorted order and scattered back (boolean indexing would sync)."""
    ordered, order = torch.sort(logits, descending=True)
    probs = torch.softmax(ordered, dim=-1)
    drop = probs.cumsum(-1) - probs >= top_p
    return logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))


def _draw(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``torch.multinomial(probs, 1, generator=generator)``'s own algorithm for one sample, with the same random
    numbers, but without its validity checks, which read the probabilities back to the host."""
    q = torch.empty_like(probs).exponential_(1, generator=generator)
    return torch.argmax(probs / q, dim=-1, keepdim=True)


class _Penalty:
    """HF's repetition penalty on the tokens this run wrote, kept as a bool per vocabulary entry on the device and
    updated from the token tensor; a penalty of 1 does nothing."""

    def __init__(self, penalty: float, size: int, device: torch.device):
        self.penalty = penalty
        self.written = torch.zeros(size, dtype=torch.bool, device=device) if penalty != 1.0 else None

    def __call__(self, row: torch.Tensor) -> torch.Tensor:
        if self.written is None:
            return row
        p = self.penalty
        return torch.where(self.written, torch.where(row > 0, row / p, row * p), row)

    def note(self, token: torch.Tensor) -> None:
        if self.written is not None:
            self.written.index_fill_(0, token, True)


class _Written:
    """The tokens written so far, and the program told of each. A program that reads values gets each token as
    an int (one read per token); otherwise the tokens stay one-element device tensors, read back once at the end,
    and a stop token is looked for every ``STOP_CHECK_EVERY`` tokens (the tokens drawn after it are cut)."""

    def __init__(self, program):
        self.program = program
        self.reads, self.stop = program.needs_value, program.stop_token
        self.tokens: list = []

    def add(self, token: torch.Tensor, forced: int | None) -> bool:
        """Records ``token`` (``forced``: its value, when known); whether the generation is over."""
        if self.reads:
            value = forced if forced is not None else int(token.item())
            self.tokens.append(value)
            self.program.advance(value)
            return self.program.done
        self.tokens.append(token)
        self.program.advance(None)
        if self.stop is not None and len(self.tokens) % STOP_CHECK_EVERY == 0:
            recent = torch.cat(self.tokens[-STOP_CHECK_EVERY:])
            if bool((recent == self.stop).any()):
                return True
        return self.program.done

    def values(self) -> list[int]:
        if self.reads or not self.tokens:
            return list(self.tokens)
        values = torch.cat(self.tokens).tolist()
        if self.stop is not None and self.stop in values:
            values = values[: values.index(self.stop) + 1]
        return values


class _Forward:
    """The model's forward passes for one generation: the prompt rows once, then one token per step.

    The rows are left-padded to one width; the position ids (counted from each row's first real token) are made
    once and each step passes a view of them. The cache is the model's own dynamic one, or a ``StaticCache`` sized
    for the prompt and the budget. The prompt goes in with a 2-D padding mask. A step goes in with no mask when
    nothing needs one (no padding, dynamic cache); otherwise, under SDPA, with the 4-D mask SDPA takes, made once
    here (a view one key longer per step, or for the static cache one key more unmasked in place): transformers
    would build it anew at every step, and for padded rows its check whether the mask can be skipped reads a
    value back from the device at every token. Other attention implementations get the 2-D mask and transformers'
    own handling."""

    def __init__(self, model, rows: list[list[int]], pad_id: int, max_new: int, device: torch.device, static: bool):
        width = max(len(p) for p in rows)
        pads = [width - len(p) for p in rows]
        total = width + max_new
        self.model, self.rows, self.static = model, len(rows), static
        self.width = self.column = width
        self.input_ids = torch.tensor([[pad_id] * k + p for k, p in zip(pads, rows)], device=device)
        padding = torch.tensor([[False] * k + [True] * (total - k) for k in pads], device=device)
        self.positions = (padding.cumsum(-1) - 1).clamp(min=0)
        self.padding = padding if any(pads) else None
        self.seen = None  # SDPA's (rows, 1, 1, keys) mask: what each row may attend to
        config = getattr(model, "config", None)
        if (self.padding is not None or static) and getattr(config, "_attn_implementation", None) == "sdpa":
            self.seen = padding[:, None, None, :]  # a dynamic cache's keys end at the step: a prefix of it
            if static:  # a static cache's keys are the whole budget: those not yet written are masked
                self.seen = self.seen.clone()
                self.seen[..., width:] = False
        self.cache_arg, self.extra = _forward_names(model)
        self.cache = None
        if static:
            from transformers import StaticCache

            self.cache = StaticCache(config=model.config, max_cache_len=total)

    def prefill(self) -> torch.Tensor:
        mask = self.padding if self.padding is None or self.static else self.padding[:, : self.width]
        return self._run(self.input_ids, mask, self.positions[:, : self.width])

    def step(self, token: torch.Tensor) -> torch.Tensor:
        """The logits after ``token`` (a one-element tensor on the device), fed to every row."""
        column = self.column
        self.column += 1
        return self._run(token.view(1, 1).expand(self.rows, 1), self._step_mask(column),
                         self.positions[:, column:column + 1])

    def _step_mask(self, column: int) -> torch.Tensor | None:
        if self.seen is not None and self.static:
            self.seen[..., column] = True
            return self.seen
        if self.seen is not None:
            return self.seen[..., : column + 1]
        if self.padding is None or self.static:
            return self.padding
        return self.padding[:, : column + 1]

    def _run(self, input_ids: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         **{self.cache_arg: self.cache}, **self.extra)
        cache = getattr(out, "cache", None)
        self.cache = cache if cache is not None else getattr(out, "past_key_values", None)
        return out.logits


def _static(model, device: torch.device, requested: bool | None) -> bool:
    """Whether to use a ``StaticCache``: as requested, else on an accelerator only (measured slower on the CPU);
    never for a model that is not transformers' (it could not take one)."""
    from transformers import PreTrainedModel

    wanted = device.type != "cpu" if requested is None else requested
    return wanted and isinstance(model, PreTrainedModel)


@torch.inference_mode()
def decode(model, prompts: list[list[int]], program, sampling: Sampling, max_new_tokens: int, pad_id: int,
           seed: int, *, static_cache: bool | None = None) -> list[int]:
    """Generate from ``prompts[0]`` (``prompts[1]`` is the unconditional prompt when guiding) under ``program``
    (a ``Constraint``); ``static_cache`` None takes the device's default."""
    device = next(model.parameters()).device
    guided = len(prompts) == 2 and sampling.cfg_scale > 1.0
    forward = _Forward(model, prompts if guided else prompts[:1], pad_id, max_new_tokens, device,
                       _static(model, device, static_cache))
    generator = torch.Generator(device=device).manual_seed(seed)
    logits = forward.prefill()
    penalty = _Penalty(sampling.repetition_penalty, logits.shape[-1], device)
    scale = sampling.cfg_scale if guided else None
    known: dict[int, torch.Tensor] = {}  # forced ids as device tensors, made once per call
    written = _Written(program)
    for _ in range(max_new_tokens):
        forced = program.forced()
        if forced is None:
            token = choose(program.mask(penalty(_last_row(logits, scale))), sampling, generator)
        else:  # the step allows this token alone: nothing to draw
            token = known.get(forced)
            if token is None:
                token = known[forced] = torch.full((1,), forced, dtype=torch.long, device=device)
        penalty.note(token)
        if written.add(token, forced):
            break
        logits = forward.step(token)
    return written.values()


def _last_row(logits: torch.Tensor, scale: float | None) -> torch.Tensor:
    """The last position's logits in fp32, guided when ``scale`` is given (row 0 conditional, row 1 not), NaN
    at -inf."""
    last = logits[:, -1, :].float()
    row = last[1] + scale * (last[0] - last[1]) if scale is not None else last[0]
    return torch.nan_to_num(row, nan=float("-inf"))


def _forward_names(model) -> tuple[str, dict]:
    """transformers renamed ``past_key_values`` to ``cache``; only the last position's logits are needed."""
    parameters = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in parameters else "past_key_values"
    return cache_arg, ({"logits_to_keep": 1} if "logits_to_keep" in parameters else {})
