"""The one-instance backend: the shared state in this process's memory, the bus a loopback.

What SQLite (or no store) gets: one instance is the whole line, so "shared" is "in memory", exactly
the paths the service had before several instances existed.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from voiceagent.call import EndCall
from voiceagent.limits import RecentKeys
from voiceagent.line.shared import EVERYONE, Handler, Message

__all__ = ["LocalBus", "LocalState"]

K = TypeVar("K")
V = TypeVar("V")

MEMORY = 10_000  # ends, owners and resume counts kept (the oldest go first)


class LocalState:
    shared = False

    def __init__(self, instance: str, *, now: Callable[[], float] = time.monotonic) -> None:
        self.instance = instance
        self._now = now
        self._owners: OrderedDict[str, str] = OrderedDict()
        self._ends: OrderedDict[str, EndCall] = OrderedDict()
        self._keys: dict[float, RecentKeys] = {}
        self._resumes: OrderedDict[str, list[float]] = OrderedDict()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def own(self, call_sid: str) -> str | None:
        before = self._owners.get(call_sid)
        _put(self._owners, call_sid, self.instance)
        return None if before in (None, self.instance) else before

    async def owner_of(self, call_sid: str) -> str | None:
        return self._owners.get(call_sid)

    async def record_end(self, call_sid: str, end: EndCall) -> None:
        self._owners.pop(call_sid, None)
        _put(self._ends, call_sid, end)

    async def end_of(self, call_sid: str) -> EndCall | None:
        return self._ends.get(call_sid)

    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        keys = self._keys.setdefault(ttl_seconds, RecentKeys(ttl_seconds))
        return keys.add(key, self._now())

    async def resumed(self, call_sid: str, window_seconds: float) -> int:
        now = self._now()
        times = [at for at in self._resumes.get(call_sid, []) if at > now - window_seconds] + [now]
        _put(self._resumes, call_sid, times)
        return len(times)

    async def instances(self) -> list[str]:
        return [self.instance]

    async def forget_older_than(self, seconds: float) -> None:
        pass  # bounded by MEMORY already


def _put(memory: OrderedDict[K, V], key: K, value: V) -> None:
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > MEMORY:
        memory.popitem(last=False)


class LocalBus:
    """Delivers to this instance what is addressed to it (or to everyone); nobody else is listening."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._deliver: Handler | None = None

    async def start(self, deliver: Handler) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    async def send(self, message: Message) -> None:
        if self._deliver is not None and message.to in (self.instance, EVERYONE):
            await self._deliver(message)
