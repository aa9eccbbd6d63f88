"""Process-wide rate limits: how many of something per key per window, with bounded memory.

Used for model connects across all calls and for calls per caller number: one captured webhook or one
caller must not be able to buy unlimited model sessions.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, TypeVar

__all__ = ["RateLimit", "RecentKeys", "RecentValues"]

V = TypeVar("V")


class RateLimit:
    """At most ``limit`` events per ``seconds`` per key. ``allow`` counts the event when it is allowed."""

    def __init__(self, limit: int, seconds: float = 60.0, *, max_keys: int = 10_000) -> None:
        self.limit = limit
        self._seconds = seconds
        self._max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        self._forget_idle(now)
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque()
            while len(self._events) > self._max_keys:
                self._events.popitem(last=False)
        while events and events[0] <= now - self._seconds:
            events.popleft()
        self._events.move_to_end(key)
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._events)

    def _forget_idle(self, now: float) -> None:
        """Drop the keys with nothing left in the window: kept in order of use, they are at the front. A
        caller number that called once is not worth its few hundred bytes for the rest of the day."""
        while self._events:
            key, events = next(iter(self._events.items()))
            if events and events[-1] > now - self._seconds:
                break
            del self._events[key]


class RecentKeys:
    """Keys seen in the last ``seconds`` (bounded): a CallSid whose webhook or stream token was used."""

    def __init__(self, seconds: float, *, max_keys: int = 100_000) -> None:
        self._seen: RecentValues[float] = RecentValues(seconds, max_keys=max_keys)  # key -> when it was seen

    def add(self, key: str, now: float) -> bool:
        """Remember ``key``; False if it was already remembered (a replay)."""
        if self._seen.get(key, now) is not None:
            return False
        self._seen.put(key, now, now)
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)


class RecentValues(Generic[V]):
    """A value per key for ``seconds`` after it was put (and at most ``max_keys`` of them): what a process
    must remember of a call for a while after it, forgotten when nobody can still ask. A count alone would
    keep a busy day's last ``max_keys`` calls, filling memory for hours (benchmarks/soak.py)."""

    def __init__(self, seconds: float, *, max_keys: int) -> None:
        self._seconds = seconds
        self._max_keys = max_keys
        self._values: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def put(self, key: str, value: V, now: float) -> None:
        self._expire(now)
        self._values.pop(key, None)  # put again: its time starts again, at the back
        self._values[key] = (now, value)
        while len(self._values) > self._max_keys:
            self._values.popitem(last=False)

    def get(self, key: str, now: float) -> V | None:
        found = self._values.get(key)
        if found is None or found[0] <= now - self._seconds:
            return None
        return found[1]

    def pop(self, key: str, now: float) -> V | None:
        value = self.get(key, now)
        self._values.pop(key, None)
        return value

    def __contains__(self, key: str) -> bool:
        """Remembered (a key past its time goes at the next ``put``)."""
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def _expire(self, now: float) -> None:
        while self._values:
            key, (put_at, _) = next(iter(self._values.items()))
            if put_at > now - self._seconds:
                break
            del self._values[key]
