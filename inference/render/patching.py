"""Attributes of one object replaced for the length of a block (a pipeline method, a module's forward, a
scheduler's step), then put back exactly as they were: an instance attribute restored, a class one uncovered."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_ABSENT = object()


@contextmanager
def replaced(target: Any, **attributes: Any) -> Iterator[None]:
    before = {name: vars(target).get(name, _ABSENT) for name in attributes}
    for name, value in attributes.items():
        setattr(target, name, value)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is _ABSENT:
                delattr(target, name)
            else:
                setattr(target, name, value)
