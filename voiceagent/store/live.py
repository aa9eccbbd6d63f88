"""Live events of the calls on this instance, for ``GET /api/events`` (server-sent events).

Publishing never waits: every subscriber has a bounded buffer, and one that falls ``limit`` events
behind is dropped (its stream ends; an ``EventSource`` reconnects by itself). Subscribers are capped
(``MAX_SUBSCRIBERS``) far below the server's connection limit, so that however many streams are opened,
Twilio's webhooks and media streams always find the server answering. Runs on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventHub", "LiveEvent", "Subscription"]

SUBSCRIBER_BUFFER = 256
MAX_SUBSCRIBERS = 50  # operators watching the line; the server serves 1000 connections (voiceagent.server)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    id: int
    kind: str  # call_started | utterance | barge_in | tool | call_ended
    data: dict[str, Any]

    def sse(self) -> str:
        """The event in the text/event-stream format."""
        return f"id: {self.id}\nevent: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


@dataclass(eq=False)  # hashable by identity: subscriptions live in a set
class Subscription:
    limit: int
    events: deque[LiveEvent] = field(default_factory=deque)
    closed: bool = False
    dropped: bool = False  # closed because it fell behind
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, event: LiveEvent) -> bool:
        if self.closed:
            return False
        if len(self.events) >= self.limit:
            self.closed = self.dropped = True
            self._ready.set()
            return False
        self.events.append(event)
        self._ready.set()
        return True

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def next(self, timeout: float) -> LiveEvent | None:
        """The next event; None after ``timeout`` with nothing to say. ``EOFError`` once closed (and, unless
        dropped for falling behind, drained)."""
        if self.dropped:
            raise EOFError
        if not self.events and not self.closed:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        if self.dropped:
            raise EOFError
        if self.events:
            return self.events.popleft()
        raise EOFError


class EventHub:
    def __init__(
        self,
        *,
        limit: int = SUBSCRIBER_BUFFER,
        max_subscribers: int = MAX_SUBSCRIBERS,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self._limit = limit
        self.max_subscribers = max_subscribers
        self._on_drop = on_drop
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(1)
        self.closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def full(self) -> bool:
        """No room for another subscriber: ``subscribe`` would exceed ``max_subscribers``."""
        return len(self._subscribers) >= self.max_subscribers

    def subscribe(self) -> Subscription:
        """A new subscription. The caller checks ``full`` first (``GET /api/events`` answers 503)."""
        subscription = Subscription(self._limit)
        if self.closed:
            subscription.close()
        else:
            self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        self._subscribers.discard(subscription)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        if not self._subscribers:
            return
        event = LiveEvent(next(self._ids), kind, {"ts": round(time.time(), 3), **data})
        for subscription in list(self._subscribers):
            if not subscription.push(event) and subscription.dropped:
                self._subscribers.discard(subscription)
                if self._on_drop is not None:
                    self._on_drop()

    def close(self) -> None:
        """Shutting down: end every stream (an open stream would hold the server's shutdown up)."""
        self.closed = True
        for subscription in list(self._subscribers):
            subscription.close()
        self._subscribers.clear()
