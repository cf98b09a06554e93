"""What every family's config dataclass shares: JSON round trip and range checks.

A config comes from a checkpoint's JSON metadata, which a user may have edited: every size is checked against a
sane range in ``__post_init__`` so a config asking for 10^8 layers is refused before anything is built.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

MAX_CHANNELS = 1 << 16
MAX_RESOLUTION = 1 << 13


class ModelConfig:
    """Mixin for family config dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check_ranges(self, ranges: dict[str, tuple[float, float]]) -> None:
        """Each named field must be a number (ints for int bounds) in [lo, hi]."""
        for name, (lo, hi) in ranges.items():
            v = getattr(self, name)
            if v is None:
                continue
            kinds = (int,) if isinstance(lo, int) and isinstance(hi, int) else (int, float)
            if isinstance(v, bool) or not isinstance(v, kinds) or not lo <= v <= hi:
                raise ValueError(f"{name} must be {'an integer' if kinds == (int,) else 'a number'} in [{lo}, {hi}], "
                                 f"got {v!r}")  # fmt: skip


def check_power_of_two(name: str, value: Any, lo: int = 4, hi: int = MAX_RESOLUTION) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or value > hi or value & (value - 1):
        raise ValueError(f"{name} must be a power of two in [{lo}, {hi}], got {value!r}")
