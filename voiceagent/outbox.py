"""An ordered, single-sender queue of messages for one peer (the driver's and the transports' sends).

Messages are put synchronously, in the order they were decided, and sent by whichever task flushes,
one flush at a time: a message decided later can never overtake one decided earlier.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from voiceagent.logs import CallLog

__all__ = ["Outbox"]

T = TypeVar("T")


class Outbox(Generic[T]):
    """Messages for one peer, sent in the order they were put, by one sender at a time."""

    def __init__(self, send: Callable[[T], Awaitable[None]], *, peer: str, log: CallLog | None = None) -> None:
        self._send = send
        self._peer, self._log = peer, log or CallLog()
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
                try:
                    await self._send(message)
                except (UnicodeError, TypeError, ValueError) as exc:  # could not be encoded: a bug of ours
                    self._log.error("send_failed", peer=self._peer, error=f"{type(exc).__name__}: {exc}"[:300])
                except Exception as exc:  # a closed peer shows up on its reader, which ends the call
                    self._log.log("debug", "send_dropped", peer=self._peer, error=type(exc).__name__)
