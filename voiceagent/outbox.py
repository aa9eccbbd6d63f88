"""An ordered, single-sender queue of messages for one peer (the driver's and the transports' sends).

Messages are put synchronously, in the order they were decided, and sent by whichever task flushes,
one flush at a time: a message decided later can never overtake one decided earlier.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["Outbox"]

T = TypeVar("T")


class Outbox(Generic[T]):
    """Messages for one peer, sent in the order they were put, by one sender at a time."""

    def __init__(self, send: Callable[[T], Awaitable[None]]) -> None:
        self._send = send
        self._queue: deque[T] = deque()
        self._lock = asyncio.Lock()

    def put(self, message: T) -> None:
        self._queue.append(message)

    async def flush(self) -> None:
        if not self._queue:
            return
        async with self._lock:
            while self._queue:
                message = self._queue.popleft()
                with contextlib.suppress(Exception):  # a closed peer shows up on its reader, not here
                    await self._send(message)
