"""Deadlines as the parts report them: a time, or None for none."""

from __future__ import annotations

__all__ = ["earliest"]


def earliest(one: float | None, other: float | None) -> float | None:
    """The earlier of two deadlines, either of which may be None (none)."""
    if one is None:
        return other
    return one if other is None or one <= other else other
