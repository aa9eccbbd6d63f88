"""Per-item accounting of agent audio: what the model produced, what went to the caller, what was heard.

This is the ground on which barge-in stands (docs/protocol.md §2, "The truncate rule"): the truncation
point of an item is ``min(heard, produced)``, and "heard" only ever comes from the transport's own
playback reports, never from a wall clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["AgentItem", "Playback"]


@dataclass(slots=True)
class AgentItem:
    """One assistant audio item."""

    item_id: str
    session: int  # which model session produced it: only that one can truncate it
    received: int = 0  # bytes the model sent
    sent: int = 0  # bytes handed to the transport
    played: int = 0  # bytes the transport reported as heard
    audio_done: bool = False
    text: str = ""
    text_done: bool = False
    truncated: bool = False
    recorded: bool = False

    @property
    def unplayed(self) -> int:
        return self.received - self.played

    def heard_ms(self, bytes_per_ms: int) -> int:
        return min(self.played, self.received) // bytes_per_ms


class Playback:
    """Every agent item of the call, and the audio held back until the caller's stream is up."""

    def __init__(self) -> None:
        self.items: OrderedDict[str, AgentItem] = OrderedDict()
        self.held: list[tuple[str, str]] = []  # (item_id, payload) waiting for the stream
        self._in_flight: set[str] = set()  # items with audio handed to the transport and not yet heard

    def item(self, item_id: str, session: int) -> AgentItem:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = AgentItem(item_id, session)
        return item

    def sent(self, item: AgentItem, size: int) -> None:
        item.sent += size
        self._in_flight.add(item.item_id)

    def played(self, item: AgentItem, offset: int) -> None:
        item.played = max(item.played, min(offset, item.sent))
        if item.played >= item.sent:
            self._in_flight.discard(item.item_id)

    def truncate(self, item: AgentItem) -> None:
        item.truncated = True
        self._in_flight.discard(item.item_id)

    @property
    def agent_audible(self) -> bool:
        """Audio the caller has not heard yet is queued or playing (checked on every input: O(1))."""
        return bool(self.held) or bool(self._in_flight)

    def speaking(self) -> list[AgentItem]:
        """Items the caller could still be hearing: what a barge-in must cut."""
        return [item for item in self.items.values() if not item.truncated and item.unplayed > 0]
