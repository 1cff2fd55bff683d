"""Refusals a caller reads: one line, each problem naming its field and what is allowed, at most 500 characters."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

MAX_MESSAGE_CHARS = 500  # an error message, all problems together


def clip(value: Any, limit: int = 40) -> str:
    """A short repr of a caller's value for a message (an int too long to print is described instead)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's limit on digits printed, or something holding one
        text = (f"an integer of about {int(value.bit_length() * 0.30103)} digits" if isinstance(value, int)
                else f"a {type(value).__name__} with a huge integer")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_text(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def field_bounds(field: FieldInfo) -> tuple[Any, Any, bool, str]:
    """(lower bound, upper bound, lower bound excluded, unit) of a field, None where it has none."""
    lo = hi = None
    excluded = False
    for rule in field.metadata:
        if getattr(rule, "ge", None) is not None:
            lo = rule.ge
        if getattr(rule, "gt", None) is not None:
            lo, excluded = rule.gt, True
        if getattr(rule, "le", None) is not None:
            hi = rule.le
    unit = (field.json_schema_extra or {}).get("unit", "") if isinstance(field.json_schema_extra, dict) else ""
    return lo, hi, excluded, unit


def _range_text(name: str, model: type[BaseModel]) -> str:
    field = model.model_fields.get(name)
    if field is None:
        return ""
    lo, hi, _, unit = field_bounds(field)
    if lo is None or hi is None:
        return ""
    return f"between {lo:g} and {hi:g}{' ' + unit if unit else ''}"


def _item_model(field: FieldInfo | None) -> type[BaseModel] | None:
    """The model of a field that is a list of models (``lora``), else None."""
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    return args[0] if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel) else None


def _where(loc: tuple, model: type[BaseModel]) -> tuple[str, str, type[BaseModel]]:
    """(the name a message gives, the field whose range it names, that field's model) of an error's location:
    ``lora[1].scale`` inside a list of models, else the names joined by dots."""
    if len(loc) >= 2 and isinstance(loc[1], int) and (inner := _item_model(model.model_fields.get(str(loc[0])))):
        rest = [str(p) for p in loc[2:] if not isinstance(p, int)]
        return f"{loc[0]}[{loc[1]}]" + "".join(f".{p}" for p in rest), (rest[-1] if rest else ""), inner
    name = ".".join(str(p) for p in loc if not isinstance(p, int)) or "input"
    return name, name, model


def describe_validation_error(err: ValidationError, model: type[BaseModel]) -> str:
    """One line per problem, joined by '; ', each naming the field and what is allowed."""
    parts = []
    for item in err.errors(include_url=False):
        name, field_name, owner = _where(tuple(item["loc"]), model)
        # a union (seed) reports one error per member type: keep the first
        if any(p.startswith(f"{name} ") for p in parts):
            continue
        kind, given = item["type"], item.get("input")
        if kind in {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}:
            parts.append(f"{name} must be {_range_text(field_name, owner)} (got {clip(given)})")
        elif kind == "string_too_long":
            limit = item.get("ctx", {}).get("max_length")
            parts.append(f"{name} must be at most {limit} characters (got {len(given)})")
        elif kind == "literal_error":
            expected = str(item["ctx"]["expected"])
            choice = f"one of {expected}" if " or " in expected else expected  # a single value is named as it is
            parts.append(f"{name} must be {choice} (got {clip(given)})")
        elif kind == "value_error":
            message = str(item.get("ctx", {}).get("error", item["msg"]))
            parts.append(message if name == "input" else f"{name} {message}")
        elif kind in {"int_parsing", "int_parsing_size", "int_from_float", "int_type", "finite_number"}:
            extra = f" {_range_text(field_name, owner)}" if _range_text(field_name, owner) else ""
            parts.append(f"{name} must be an integer{extra} (got {clip(given)})")
        elif kind in {"float_parsing", "float_type"}:
            extra = f" {_range_text(field_name, owner)}" if _range_text(field_name, owner) else ""
            parts.append(f"{name} must be a number{extra} (got {clip(given)})")
        elif kind in {"bool_parsing", "bool_type"}:
            parts.append(f"{name} must be true or false (got {clip(given)})")
        elif kind == "too_long":
            parts.append(f"{name} must have at most {item.get('ctx', {}).get('max_length')} items")
        elif kind == "extra_forbidden":
            parts.append(f"{name} is not a field it takes")
        elif kind == "list_type":
            parts.append(f"{name} must be a list or one item (got {type(given).__name__})")
        elif kind == "string_type":
            parts.append(f"{name} must be a string (got {type(given).__name__})")
        else:
            parts.append(f"{name}: {item['msg']} (got {clip(given)})")
    return _join_problems(parts)


def _join_problems(parts: list[str], limit: int = MAX_MESSAGE_CHARS) -> str:
    """``parts`` joined by '; ', as many whole ones as fit in ``limit`` characters, then how many more there are."""
    text = ""
    for count, part in enumerate(parts):
        rest = len(parts) - count - 1
        tail = f"; and {rest} more problem(s)" if rest else ""
        candidate = f"{text}; {part}" if text else part
        if len(candidate) + len(tail) > limit:
            if not text:  # one problem longer than a whole message: its start
                return clip_text(part, limit - len(tail)) + tail
            return f"{text}; and {rest + 1} more problem(s)"  # fits: it did when the last part was added
        text = candidate
    return text
