"""The request contract as Markdown tables, written into docs/api.md from the models themselves.

    python -m inference.contract.reference            # rewrite the generated blocks of docs/api.md
    python -m inference.contract.reference --check    # exit 1 when docs/api.md is out of date (a test runs this)

Each generated block sits between ``<!-- generated: NAME -->`` and ``<!-- end: NAME -->``; everything else in
the file is written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from inference.contract.messages import field_bounds
from inference.contract.normalise import METADATA_CONTAINERS, UNSUPPORTED, alias_map
from inference.contract.request import FormatInputRequest, GenerateRequest
from inference.contract.vocabulary import VALID_LANGUAGES

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
_BLOCK = re.compile(r"(<!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end: (?P=name) -->)", re.S)


def _range(info: FieldInfo) -> str:
    for rule in info.metadata:
        if getattr(rule, "max_length", None) is not None:
            unit = "items" if str(info.annotation).startswith("list[") else "characters"
            return f"at most {rule.max_length} {unit}"
    lo, hi, strict_lo, unit = field_bounds(info)
    if lo is None or hi is None:
        return "" if lo is None and hi is None else (f"at least {lo:g}" if hi is None else f"at most {hi:g}")
    left = f"> {lo:g}" if strict_lo else f"{lo:g}"
    return f"{left} – {hi:g}{' ' + unit if unit else ''}"


def _type(info: FieldInfo) -> str:
    text = str(info.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = re.sub(r"\b(?:\w+\.)+(\w+)", r"\1", text)  # a model by its own name: list[LoraRef]
    choices = re.match(r"Literal\[(.*)\]", text)
    if choices:
        return "one of " + choices.group(1).replace("'", "`")
    return " or ".join(f"`{part.strip()}`" for part in text.split("|"))


def _names(field: str, model) -> str:
    """Every name the normaliser maps to ``field``, the canonical one first."""
    accepted = [name for name, canonical in alias_map(frozenset(model.model_fields)).items() if canonical == field]
    return ", ".join(f"`{name}`" for name in sorted(accepted, key=lambda name: (name != field, name)))


def _default(info: FieldInfo) -> str:
    value: Any = info.get_default(call_default_factory=True)
    return "unset" if value is None else f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")  # a table cell: an escaped pipe shows as one


def fields_table(model) -> str:
    rows = ["| field | accepted names | type | default | range | meaning |", "|---|---|---|---|---|---|"]
    for name, info in model.model_fields.items():
        rows.append(f"| `{name}` | {_names(name, model)} | {_type(info)} | {_default(info)} | {_range(info)} | "
                    f"{_cell(info.description or '')} |")
    return "\n".join(rows) + "\n"


def blocks() -> dict[str, str]:
    return {
        "generate-fields": fields_table(GenerateRequest),
        "format-input-fields": fields_table(FormatInputRequest),
        "unsupported": ", ".join(f"`{name}`" for name in sorted(UNSUPPORTED)) + "\n",
        "containers": ", ".join(f"`{name}`" for name in ("param_obj", *METADATA_CONTAINERS)) + "\n",
        "languages": ", ".join(f"`{code}`" for code in VALID_LANGUAGES) + "\n",
    }


def render(text: str) -> str:
    generated = blocks()
    missing = set(generated) - {m.group("name") for m in _BLOCK.finditer(text)}
    if missing:
        raise SystemExit(f"docs/api.md has no generated block for: {', '.join(sorted(missing))}")
    return _BLOCK.sub(lambda m: m.group(1) + generated[m.group("name")] + m.group(4), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/api.md is out of date")
    args = parser.parse_args()
    current = DOC.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.exit("docs/api.md is out of date: run python -m inference.contract.reference")
        return
    DOC.write_text(wanted, encoding="utf-8")


if __name__ == "__main__":
    main()
