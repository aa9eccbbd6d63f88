"""The reasons the agent has to speak, queued until a response can be asked for (``Responses``).

A reason with instructions (the greeting, an operator's line, closing words) is answered by a response of
its own: its instructions replace the session's for that response. A plain reason (tool results, a keypad
entry, a retry) only asks the model to answer the conversation as it stands, so every plain reason queued
goes with one request, and a response the server starts by itself after a caller turn answers them too:
the model sees the whole conversation (docs/protocol.md §2, "Responses: one at a time").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Reason", "ReasonKind", "Reasons"]


class ReasonKind(StrEnum):
    GREETING = "greeting"
    TOOL_RESULTS = "tool_results"  # every output of one response, sent together
    OPERATOR_LINE = "operator_line"
    KEYPAD = "keypad"  # one whole keypad entry
    CLOSING = "closing_words"  # a goodbye, or the hand-over line of a transfer
    SPEECH_RECOVERY = "speech_recovery"  # the model answered in text: ask again, for speech
    CALLER_TURN = "caller_turn"  # the server's own answer to a caller turn failed: ask again


@dataclass(slots=True)
class Reason:
    kind: ReasonKind
    instructions: str | None = None
    order: int = 0  # when it was queued (set by ``Reasons.add``)

    @property
    def plain(self) -> bool:
        return self.instructions is None


class Reasons:
    """The queue, oldest first, except a reason put back after a failure, which goes first."""

    def __init__(self) -> None:
        self._queue: list[Reason] = []
        self._added = 0

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def mark(self) -> int:
        """The order the next reason gets: a response created now answers the plain ones below it."""
        return self._added

    def add(self, reason: Reason) -> Reason | None:
        """Queue ``reason``; the closing words it replaces (only one is ever queued), if any."""
        self._added += 1
        reason.order = self._added
        replaced = None
        if reason.kind is ReasonKind.CLOSING:
            replaced = next((old for old in self._queue if old.kind is ReasonKind.CLOSING), None)
            if replaced is not None:
                self._queue.remove(replaced)
        self._queue.append(reason)
        return replaced

    def put_back(self, reasons: list[Reason]) -> None:
        """Reasons a response did not answer (it failed, or was refused): first in line again."""
        self._queue[:0] = reasons

    def take(self) -> list[Reason]:
        """The reasons the next request answers: the closing words before all else, then the oldest
        reason; a plain one takes every plain reason with it."""
        if not self._queue:
            return []
        head = next((r for r in self._queue if r.kind is ReasonKind.CLOSING), self._queue[0])
        taken = [r for r in self._queue if r.plain] if head.plain else [head]
        for reason in taken:
            self._queue.remove(reason)
        return taken

    def take_plain(self, before: int) -> list[Reason]:
        """The plain reasons queued up to ``before`` (a ``mark``): a response the server started answers them."""
        taken = [r for r in self._queue if r.plain and r.order <= before]
        for reason in taken:
            self._queue.remove(reason)
        return taken

    def drop(self, keep: frozenset[ReasonKind] = frozenset()) -> list[Reason]:
        """Every queued reason not of a kind in ``keep``, taken off the queue."""
        dropped = [r for r in self._queue if r.kind not in keep]
        self._queue = [r for r in self._queue if r.kind in keep]
        return dropped
