"""Per-song seeds: the caller's, extended one by one for a batch, or fresh random ones.

Every song gets its own generator, so a song depends only on its own seed and request, never on its
place in the batch: the seeds that come back reproduce the songs exactly.
"""

from __future__ import annotations

import secrets

import torch

from inference.contract import SEED_MAX, GenerateRequest


def resolve_seeds(request: GenerateRequest) -> tuple[list[int], list[str]]:
    """One seed per song, plus warnings about seeds that were not used as given."""
    wanted = request.explicit_seeds
    warnings: list[str] = []
    if not wanted:
        return [secrets.randbelow(SEED_MAX + 1) for _ in range(request.batch_size)], warnings
    if len(wanted) > request.batch_size:
        warnings.append(f"seed has {len(wanted)} values for batch_size {request.batch_size}: "
                        f"the first {request.batch_size} were used")
    seeds = wanted[: request.batch_size]
    while len(seeds) < request.batch_size:  # one seed for a batch: s, s+1, s+2, ...
        seeds.append((seeds[-1] + 1) % (SEED_MAX + 1))
    return seeds, warnings


def generators_for(seeds: list[int]) -> list[torch.Generator]:
    """CPU generators: the same seed gives the same noise on every device."""
    return [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
