"""The decoding loop: KV cache, optional classifier-free guidance, the constraint, then sampling.

Per step, in this order (docs/lm.md section 5): CFG ``uncond + s * (cond - uncond)`` in fp32 when a negative
prompt is given and ``cfg_scale > 1``; the repetition penalty on the tokens this run has written (not the
prompt's: HF's rule, positive logits divided and negative multiplied); the constraint's mask; top-k; top-p on
the untempered logits;
temperature (<= 0 means argmax); a draw from a seeded CPU generator, so a seed reproduces the plan. Unlike
upstream's default engine, top-k and top-p are really applied.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.85
    top_k: int | None = None
    top_p: float | None = 0.9
    cfg_scale: float = 1.0
    repetition_penalty: float = 1.0
    constrained: bool = True  # the planner's choice of program: the constraint, or free decoding


def choose(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator) -> int:
    logits = logits.float().cpu()
    if sampling.top_k and sampling.top_k < logits.shape[-1]:
        kth = torch.topk(logits, sampling.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p is not None and 0.0 < sampling.top_p < 1.0:
        ordered, order = torch.sort(logits, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        drop = probs.cumsum(-1) - probs >= sampling.top_p  # keep the token that crosses p
        logits = logits.index_fill(0, order[drop], float("-inf"))
    if sampling.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / sampling.temperature, dim=-1)
    if not torch.isfinite(probs).all() or probs.sum() <= 0:
        return int(torch.argmax(logits))
    return int(torch.multinomial(probs, 1, generator=generator))


@torch.inference_mode()
def decode(model, prompts: list[list[int]], program, sampling: Sampling, max_new_tokens: int, pad_id: int,
           seed: int) -> list[int]:
    """Generate from ``prompts[0]`` (``prompts[1]`` is the unconditional prompt when guiding)."""
    device = next(model.parameters()).device
    guided = len(prompts) == 2 and sampling.cfg_scale > 1.0
    rows = prompts if guided else prompts[:1]
    width = max(len(p) for p in rows)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in rows], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows], device=device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    generator = torch.Generator().manual_seed(seed)
    cache_arg, extra = _forward_names(model)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True, **extra)
    produced: list[int] = []
    penalty = sampling.repetition_penalty
    written = torch.zeros(out.logits.shape[-1], dtype=torch.bool) if penalty != 1.0 else None
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        row = logits[1] + sampling.cfg_scale * (logits[0] - logits[1]) if guided else logits[0]
        row = torch.nan_to_num(row, nan=float("-inf")).cpu()  # the constraint's masks live on the host
        if written is not None:
            row = torch.where(written, torch.where(row > 0, row / penalty, row * penalty), row)
        token = choose(program.mask(row), sampling, generator)
        if written is not None:
            written[token] = True
        produced.append(token)
        program.advance(token)
        if program.done:
            break
        attention = torch.cat([attention, attention.new_ones(len(rows), 1)], dim=-1)
        positions = positions[:, -1:] + 1
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        out = model(input_ids=torch.full((len(rows), 1), token, device=device), attention_mask=attention,
                    position_ids=positions, use_cache=True, **{cache_arg: cache}, **extra)
    return produced


def _forward_names(model) -> tuple[str, dict]:
    """transformers renamed ``past_key_values`` to ``cache``; only the last position's logits are needed."""
    parameters = inspect.signature(model.forward).parameters
    cache_arg = "cache" if "cache" in parameters else "past_key_values"
    return cache_arg, ({"logits_to_keep": 1} if "logits_to_keep" in parameters else {})
