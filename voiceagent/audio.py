"""Counting audio without decoding it: the hot path forwards base64 untouched and only needs lengths."""

from __future__ import annotations

__all__ = ["b64_decoded_length"]


def b64_decoded_length(payload: str) -> int:
    """Bytes a base64 string decodes to, without decoding it."""
    length = len(payload)
    if length == 0:
        return 0
    padding = 2 if payload.endswith("==") else 1 if payload.endswith("=") else 0
    return length * 3 // 4 - padding
