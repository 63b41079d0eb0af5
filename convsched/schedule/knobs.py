"""Helpers for knob spaces that depend on the layer and the target (use them in a template's KNOBS)."""
from __future__ import annotations


def divisors(n: int, limit: int | None = None) -> list[int]:
    """Divisors of n (at most `limit`), ascending: splits by them leave no remainder loop."""
    return [d for d in range(1, n + 1) if n % d == 0 and (limit is None or d <= limit)]


def divisors_of(attr: str, limit: int | None = None):
    """A knob space: the divisors of the layer's `attr` (a field or property, e.g. "ow" or "cout")."""
    def space(layer, target):
        return divisors(int(getattr(layer, attr)), limit)
    space.__name__ = f"divisors_of_{attr}"
    return space


def vector_multiples(dtype: str = "float32", counts=(1, 2, 3, 4)):
    """A knob space: multiples of the target's vector width for `dtype` (8 lanes on AVX2, 16 on AVX-512)."""
    def space(layer, target):
        return [target.lanes(dtype) * c for c in counts]
    return space
