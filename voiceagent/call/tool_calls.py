"""The function calls of each model response, until their outputs can go back to the model together.

A response may hold several calls (docs/protocol.md §2, "Function calling"). They run concurrently;
once the response is done *and* every call has its output, all outputs are sent, and one reason to speak
is queued (``Responses``): asked for once no response is live and the caller is not speaking.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ReadyOutputs", "ToolCalls"]


@dataclass(slots=True)
class _Call:
    call_id: str
    name: str
    started_at: float
    output: str | None = None


@dataclass(frozen=True, slots=True)
class ReadyOutputs:
    outputs: list[tuple[str, str]]  # (call_id, output), in the order the model made the calls


class ToolCalls:
    def __init__(self) -> None:
        self._by_response: dict[str, list[_Call]] = {}
        self._response_of: dict[str, str] = {}  # call_id -> response_id
        self._done: set[str] = set()  # responses that ended
        self._orphaned: set[str] = set()  # responses of a model session that is gone
        self._unanswered: set[str] = set()  # call ids still running (``running`` is read after every input)

    @property
    def running(self) -> bool:
        return bool(self._unanswered)

    def started(self, response_id: str, call_id: str, name: str, now: float) -> None:
        self._by_response.setdefault(response_id, []).append(_Call(call_id, name, now))
        self._response_of[call_id] = response_id
        self._unanswered.add(call_id)

    def finished(self, call_id: str, output: str) -> tuple[str, str, float] | None:
        """(response_id, name, started_at) of the call, or None if it is no longer awaited."""
        response_id = self._response_of.get(call_id)
        if response_id is None:
            return None
        call = next(call for call in self._by_response[response_id] if call.call_id == call_id)
        call.output = output
        self._unanswered.discard(call_id)
        return response_id, call.name, call.started_at

    def response_done(self, response_id: str) -> None:
        if response_id in self._by_response:
            self._done.add(response_id)

    def ready(self, response_id: str) -> ReadyOutputs | None:
        """The outputs to send now for ``response_id`` (and forget), or None while any is missing."""
        calls = self._by_response.get(response_id)
        orphaned = response_id in self._orphaned
        if calls is None or any(call.output is None for call in calls):
            return None
        if response_id not in self._done and not orphaned:
            return None
        del self._by_response[response_id]
        for call in calls:
            self._response_of.pop(call.call_id, None)
        for ids in (self._done, self._orphaned):
            ids.discard(response_id)
        return None if orphaned else ReadyOutputs([(call.call_id, call.output or "") for call in calls])

    def orphan_all(self) -> None:
        """A new model session does not know the old one's call ids: results still arriving are recorded
        (and reach the model through the conversation so far) but are never sent as outputs."""
        self._orphaned.update(self._by_response)
