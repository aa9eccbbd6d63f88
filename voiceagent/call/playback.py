"""Per-item accounting of agent audio: what the model produced, what went to the caller, what was heard.

This is the ground on which barge-in stands (docs/protocol.md §2, "The truncate rule"): the truncation
point of an item is ``min(heard, produced)``. "Heard" starts from the transport's own playback reports
(Twilio marks), never from a wall clock alone. A report only comes at the end of a chunk, and the model's
chunks are uneven (often 50 ms to over a second), so between reports we estimate: the transport plays at
exactly ``bytes_per_ms`` once audio is buffered, so the caller has heard the last report plus the time
since — since that report, or since the chunk was sent if the buffer had run dry — capped at the end of
the chunk being played and at what the model produced. The estimate adds no messages on the wire (finer
marks would add one per interval to every call), and it errs low: a mark echo reaches us after the audio
it acknowledges has finished.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["AgentItem", "Playback"]


@dataclass(slots=True)
class AgentItem:
    """One assistant audio item."""

    item_id: str
    session: int  # which model session produced it: only that one can truncate it
    received: int = 0  # bytes the model sent
    sent: int = 0  # bytes handed to the transport
    played: int = 0  # bytes known to be heard (reported, or estimated at a barge-in)
    chunks: deque[tuple[int, float]] = field(default_factory=deque)  # (end offset, sent at), not yet reported
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

    def __init__(self, bytes_per_ms: int) -> None:
        self.bytes_per_ms = bytes_per_ms
        self.items: OrderedDict[str, AgentItem] = OrderedDict()
        self.held: list[tuple[str, str]] = []  # (item_id, payload) waiting for the stream
        self._in_flight: dict[str, None] = {}  # items with audio at the transport not yet heard, in play order
        self._forgotten: set[str] = set()  # ids of items whose life is over (see ``forget_if_over``)
        self._last_report_at: float | None = None
        self.playing_until = 0.0  # when everything handed to the transport will have played, at the latest

    def item(self, item_id: str, session: int) -> AgentItem:
        """The item, made on its first event. An event for a forgotten item gets a throwaway stand-in
        that is already cut and recorded, so whatever comes late is dropped, never played or recorded."""
        item = self.items.get(item_id)
        if item is None:
            item = AgentItem(item_id, session)
            if item_id in self._forgotten:
                item.truncated = item.recorded = True
            else:
                self.items[item_id] = item
        return item

    def forget_if_over(self, item: AgentItem) -> None:
        """Drop an item whose life is over: generated in full, heard (or cut) and recorded. A call keeps
        only its id, so an hour-long call does not hold every answer's accounting."""
        if item.recorded and item.audio_done and item.text_done and item.item_id not in self._in_flight:
            if self.items.pop(item.item_id, None) is not None:
                self._forgotten.add(item.item_id)

    def forgot(self, item_id: str) -> bool:
        return item_id in self._forgotten

    def sent(self, item: AgentItem, size: int, now: float) -> None:
        item.sent += size
        item.chunks.append((item.sent, now))
        self._in_flight.setdefault(item.item_id)
        self.playing_until = max(self.playing_until, now) + size / self.bytes_per_ms / 1000

    @property
    def in_flight(self) -> bool:
        return bool(self._in_flight)

    def assume_played(self) -> list[AgentItem]:
        """Reports that never came for audio that must have finished playing long ago: count it heard
        (a transport that stops reporting must not keep the agent 'speaking' forever)."""
        items = [self.items[item_id] for item_id in self._in_flight]
        for item in items:
            item.played = item.sent
            item.chunks.clear()
        self._in_flight.clear()
        return items

    def played(self, item: AgentItem, offset: int, now: float) -> None:
        item.played = max(item.played, min(offset, item.sent))
        while item.chunks and item.chunks[0][0] <= item.played:
            item.chunks.popleft()
        self._last_report_at = now
        if item.played >= item.sent:
            self._in_flight.pop(item.item_id, None)

    def truncate(self, item: AgentItem, heard: int) -> None:
        """Stop the item where the caller is: ``played`` becomes ``heard`` (measured before any cut)."""
        item.played = heard
        item.truncated = True
        item.chunks.clear()
        self._in_flight.pop(item.item_id, None)

    def heard(self, item: AgentItem, now: float) -> int:
        """Bytes of ``item`` the caller has heard by ``now`` (see the module docstring)."""
        reported = min(item.played, item.received)
        if not item.chunks or next(iter(self._in_flight), None) != item.item_id:
            return reported  # nothing of it is playing right now
        end, sent_at = item.chunks[0]
        started = max(sent_at, self._last_report_at if self._last_report_at is not None else sent_at)
        elapsed_us = max(0, round((now - started) * 1_000_000))  # whole µs: 0.3 s is not 299.99… ms
        since = elapsed_us * self.bytes_per_ms // 1000
        return min(item.played + since, end, item.received)

    @property
    def agent_audible(self) -> bool:
        """Audio the caller has not heard yet is queued or playing (checked on every input: O(1))."""
        return bool(self.held) or bool(self._in_flight)

    def speaking(self) -> list[AgentItem]:
        """Items the caller could still be hearing: what a barge-in must cut."""
        return [item for item in self.items.values() if not item.truncated and item.unplayed > 0]
