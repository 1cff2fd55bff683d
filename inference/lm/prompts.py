"""The exact prompt bytes of each LM mode (docs/lm.md section 2): the released checkpoints were trained on them.

Every prompt is Qwen ChatML with a system and a user message and an open assistant turn, the same bytes
``apply_chat_template(..., add_generation_prompt=True)`` renders for these checkpoints.
"""

from __future__ import annotations

from typing import Any

import yaml

INSTRUCTION = "Generate audio semantic tokens based on the given conditions:"
INSPIRED_INSTRUCTION = "Expand the user's input into a more detailed and specific musical description:"
REWRITE_INSTRUCTION = "Format the user's input into a more detailed and specific musical description:"
NO_USER_INPUT = "NO USER INPUT"
INSTRUMENTAL = "[Instrumental]"
COT_FIELDS = ("bpm", "caption", "duration", "keyscale", "language", "timesignature")


def has_meaning(text: str | None) -> bool:
    """Upstream's rule: empty, whitespace only or the sentinel itself is "no user input"."""
    return bool(text and text.strip() and text.strip() != NO_USER_INPUT)


def chat(instruction: str, user: str) -> str:
    return (f"<|im_start|>system\n# Instruction\n{instruction}\n\n<|im_end|>\n"
            f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def plan_prompt(caption: str, lyrics: str) -> str:
    """Phase 1 (metadata): the model continues with the forced ``<think>`` block."""
    return chat(INSTRUCTION, f"# Caption\n{caption}\n\n# Lyric\n{lyrics}\n")


def format_cot(metas: dict[str, Any]) -> str:
    """The ``<think>`` block of phase 2, serialised as upstream does (PyYAML, sorted keys, width 80)."""
    items = {}
    for key in COT_FIELDS:
        value = metas.get(key)
        if value is None or value == "":
            continue
        if key == "timesignature" and isinstance(value, str) and value.endswith("/4"):
            value = value[:-2]
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        items[key] = value
    if not items:
        return "<think>\n\n</think>"
    return f"<think>\n{yaml.dump(items, allow_unicode=True, sort_keys=True).strip()}\n</think>"


def codes_prompt(caption: str, lyrics: str, metas: dict[str, Any]) -> str:
    """Phase 2 (audio codes): the original caption, then the plan, with the assistant turn left open."""
    return plan_prompt(caption, lyrics) + format_cot(metas) + "\n\n"


def unconditional_codes_prompt(negative_prompt: str) -> str:
    """The CFG counterpart of phase 2: the negative prompt (or NO USER INPUT) and an empty plan."""
    user = negative_prompt if has_meaning(negative_prompt) else NO_USER_INPUT
    return chat(INSTRUCTION, user) + "<think>\n\n</think>\n\n"


def format_prompt(caption: str, lyrics: str) -> str:
    """``format_input``: rewrite caption and lyrics (no trailing newline in the user message)."""
    return chat(REWRITE_INSTRUCTION, f"# Caption\n{caption if has_meaning(caption) else NO_USER_INPUT}\n\n"
                                     f"# Lyric\n{lyrics if lyrics.strip() else INSTRUMENTAL}")


def create_prompt(query: str, instrumental: bool) -> str:
    """``sample_query``: write a song (caption, lyrics, metas) from a description."""
    return chat(INSPIRED_INSTRUCTION, f"{query if has_meaning(query) else NO_USER_INPUT}\n\n"
                                      f"instrumental: {'true' if instrumental else 'false'}")
