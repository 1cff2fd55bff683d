"""Reading what the LM wrote (docs/lm.md section 3), strictly: every metadata value is checked (bpm, key,
time signature, duration, language), anything invalid is dropped with a warning (the request's own value or the
default then applies); caption and genres are free text, only cleaned up."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from inference.contract import VALID_LANGUAGES, VALID_TIME_SIGNATURES, SongFields
from inference.contract.audio_codes import CODE_TOKEN, code_tokens

THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.S)
REASONING_BLOCK = re.compile(r"<reasoning>(.*?)</reasoning>", re.S)
LYRICS_HEADER = re.compile(r"^#\s*Lyrics?\s*\n", re.I)
KNOWN = ("bpm", "caption", "duration", "genres", "keyscale", "language", "timesignature")


@dataclass
class LmOutput:
    bpm: int | None = None
    caption: str | None = None
    duration: int | None = None
    genres: str | None = None
    keyscale: str | None = None
    language: str | None = None
    timesignature: str | None = None
    codes: str = ""
    lyrics: str | None = None
    repairs: list[str] = field(default_factory=list)

    def metas(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in KNOWN if getattr(self, k) not in (None, "")}


def raw_fields(text: str) -> dict[str, str]:
    """The ``key: value`` lines of the plan; indented lines continue the previous field."""
    match = THINK_BLOCK.search(text) or REASONING_BLOCK.search(text)
    block = match.group(1) if match else text.split("<|audio_code_", 1)[0]
    fields: dict[str, str] = {}
    current = None
    for line in block.split("\n"):
        if line.startswith("<"):
            continue
        if line and not line[0].isspace() and ":" in line:
            key, _, value = line.partition(":")
            current = key.strip().lower()
            fields[current] = value.strip()
        elif current and line.strip() and line[0] in " \t":
            fields[current] += "\n" + line
    return fields


def _unquote(text: str) -> str:
    """YAML single quotes around a caption (phase 2 writes them) are not part of it."""
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    return text


def parse_output(text: str, max_duration: float = 600.0) -> LmOutput:
    out = LmOutput(codes="".join(code_tokens(text)))
    fields = raw_fields(text)
    for key, value in fields.items():
        if key not in KNOWN:
            continue
        value = value.strip()
        if key in ("bpm", "duration"):
            try:
                number = int(float(value))
            except ValueError:
                out.repairs.append(f"the LM's {key} {value[:20]!r} is not a number; ignored")
                continue
            low, high = (30, 300) if key == "bpm" else (10, int(max_duration))
            if not low <= number <= high:
                out.repairs.append(f"the LM's {key} {number} is outside {low}-{high}; ignored")
                continue
            setattr(out, key, number)
        elif key == "caption":
            caption = " ".join(line.strip() for line in value.splitlines() if line.strip())
            out.caption = _unquote(caption) or None
        elif key == "keyscale":
            try:
                out.keyscale = SongFields.model_validate({"key_scale": _unquote(value)}).key_scale or None
            except ValueError:
                out.repairs.append(f"the LM's keyscale {value[:20]!r} is not a key; ignored")
        elif key == "timesignature":
            sig = _unquote(value).removesuffix("/4").removesuffix("/8")
            if sig in VALID_TIME_SIGNATURES:
                out.timesignature = sig
            elif value:
                out.repairs.append(f"the LM's timesignature {value[:20]!r} is not one of 2, 3, 4, 6; ignored")
        elif key == "language":
            language = _unquote(value).lower()
            if language in VALID_LANGUAGES:
                out.language = language
            elif value:
                out.repairs.append(f"the LM's language {value[:20]!r} is not a known code; ignored")
        elif key == "genres":
            out.genres = value or None
    after = text.split("</think>", 1)[1] if "</think>" in text else ""
    after = CODE_TOKEN.sub("", after).replace("<|im_end|>", "").replace("<|endoftext|>", "").strip()
    after = LYRICS_HEADER.sub("", after).strip()
    out.lyrics = after or None
    return out
