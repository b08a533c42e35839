"""Deterministic randomness per record, so a catalog is reproducible from its seed and an id alone."""

from __future__ import annotations

import random

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def record_rng(seed: int, salt: int, record_id: int) -> random.Random:
    """A generator that depends only on (seed, salt, id): records render the same on every request."""
    mixed = (seed * _GOLDEN + salt * 0xBF58476D1CE4E5B9 + record_id * 0x94D049BB133111EB) & _MASK
    return random.Random(mixed)


def hex_token(seed: int, salt: int, length: int) -> str:
    """A fake credential that looks like a real one (hex digits) and is stable for a seed."""
    rng = record_rng(seed, salt, 0)
    return f"{rng.getrandbits(length * 4):0{length}x}"
