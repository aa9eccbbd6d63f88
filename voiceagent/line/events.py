"""Live events of the whole line: this instance's, tagged with it and sent to the others over the bus,
and the others' as the bus brings them (``GET /api/events`` on any instance shows every call)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from voiceagent.line.node import LineNode
from voiceagent.store.live import EventHub

__all__ = ["LineEvents"]


class LineEvents(EventHub):
    def __init__(self, node: LineNode, *, on_drop: Callable[[], None] | None = None) -> None:
        super().__init__(on_drop=on_drop)
        self._node = node
        node.on_event = super().publish  # the others' events: already tagged by their sender

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        tagged = {**data, "instance": self._node.instance}
        super().publish(kind, tagged)
        self._node.later(self._node.publish(kind, tagged), "event")
