"""Keypad entries, not keys: the caller's digits are gathered until ``#``, a pause or a length cap, and
the model gets the whole entry once (pipecat's DTMF aggregator does the same). A key alone, answered by
itself, would have the model answer the first digit of a PIN and the service refuse the rest."""

from __future__ import annotations

__all__ = ["ENTRY_KEYS", "KeypadEntry"]

ENTRY_KEYS = 20  # an entry this long is complete without ``#``
END_KEY = "#"


class KeypadEntry:
    def __init__(self, pause_seconds: float) -> None:
        self._pause = pause_seconds
        self._keys = ""
        self._last: float | None = None

    @property
    def pending(self) -> bool:
        return bool(self._keys)

    def press(self, key: str, now: float) -> str | None:
        """Add ``key``; the whole entry if it is complete now."""
        self._keys += key
        self._last = now
        if key == END_KEY or len(self._keys) >= ENTRY_KEYS:
            return self._complete()
        return None

    def deadline(self) -> float | None:
        return None if self._last is None else self._last + self._pause

    def paused_by(self, now: float) -> str | None:
        """The entry, if the caller paused long enough for it to be complete."""
        due = self.deadline()
        return self._complete() if due is not None and now >= due else None

    def _complete(self) -> str:
        entry, self._keys, self._last = self._keys, "", None
        return entry
