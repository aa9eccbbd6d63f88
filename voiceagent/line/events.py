"""Live events of the whole line: this instance's, tagged with it and sent to the others over the bus,
and the others' as the bus brings them (``GET /api/events`` on any instance shows every call).

Events cross the bus only while some instance has a subscriber: that instance says so (a ``watch``
message) when its first subscriber comes and every ``WATCH_LEASE_SECONDS`` while any is left, so that a
line nobody watches pays nothing for it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from voiceagent.line.node import WATCH_LEASE_SECONDS, LineNode
from voiceagent.store.live import EventHub, Subscription

__all__ = ["LineEvents"]


class LineEvents(EventHub):
    def __init__(self, node: LineNode, *, on_drop: Callable[[], None] | None = None) -> None:
        super().__init__(on_drop=on_drop)
        self._node = node
        node.on_event = super().publish  # the others' events: already tagged by their sender
        self._watching: asyncio.Task[None] | None = None

    def subscribe(self) -> Subscription:
        subscription = super().subscribe()
        if self._watching is None or self._watching.done():
            self._watching = asyncio.get_running_loop().create_task(self._watch(), name="line-watch")
        return subscription

    async def _watch(self) -> None:
        while self.subscribers and not self.closed:
            self._node.later(self._node.watch(), "watch")
            await asyncio.sleep(WATCH_LEASE_SECONDS)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        tagged = {**data, "instance": self._node.instance}
        super().publish(kind, tagged)
        if self._node.watched:
            self._node.later(self._node.publish(kind, tagged), "event")

    def close(self) -> None:
        super().close()
        if self._watching is not None:
            self._watching.cancel()
