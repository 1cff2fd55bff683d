"""``/create_random_sample``: a ready-made request to start from, as upstream's studio page asks for one.

``sample_type`` ``custom_mode`` (the default is ``simple_mode``, as upstream's): a caption with lyrics and metadata,
across genres and languages; ``simple_mode``: a one-line description for the LM to write a song from. The
examples are this project's own (``api_shim/data/random_samples.json``), loaded once.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path
from typing import Any

from api_shim.envelope import ApiError

SAMPLES_FILE = Path(__file__).resolve().parent / "data" / "random_samples.json"
SAMPLE_TYPES = {"simple_mode": "simple_mode", "custom_mode": "custom_mode", "text2music": "custom_mode"}


@functools.lru_cache(maxsize=1)
def samples() -> dict[str, list[dict[str, Any]]]:
    return json.loads(SAMPLES_FILE.read_text(encoding="utf-8"))


def random_sample(body: Any) -> dict[str, Any]:
    given = body.get("sample_type") if isinstance(body, dict) else None
    sample_type = "simple_mode" if given in (None, "") else given
    if not isinstance(sample_type, str) or sample_type not in SAMPLE_TYPES:
        raise ApiError(400, f"sample_type must be one of {', '.join(SAMPLE_TYPES)} (got {str(given)[:40]!r})")
    return dict(random.choice(samples()[SAMPLE_TYPES[sample_type]]))
