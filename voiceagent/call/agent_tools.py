"""The agent's tools: the operator's (run by the driver, their results sent back together, see
``ToolCalls``) and the built-in ones that end the call (``end_call``) or hand the caller on
(``transfer_call``), which the core carries out itself once the agent's closing words are heard.

A function call is carried out only once its response has *completed*: the service also finishes the
arguments of a response the caller interrupted, then cancels it (docs/protocol.md §2). A call of a
response that did not complete is answered with an output saying it was not carried out, so the
conversation stays true (the model knows it did not happen and may call again if the caller still wants
it), without asking for a response: the caller's turn is what gets the answer. That is chosen over
``conversation.item.delete``: deleting the call would hide from the model that it had decided to act.
"""

from __future__ import annotations

import json

from voiceagent.call.actions import Action, EndCall, RunTool, SendToModel
from voiceagent.call.endings import EndReason, Farewell
from voiceagent.call.observations import ToolCalled, ToolNotRun
from voiceagent.call.options import CallOptions
from voiceagent.call.reasons import ReasonKind
from voiceagent.call.responses import Responses
from voiceagent.call.tool_calls import ToolCalls
from voiceagent.call.transcript import Transcript
from voiceagent.realtime import events as ev

__all__ = ["END_CALL", "TOOL_LINE_CHARS", "TRANSFER_CALL", "AgentTools", "Closes"]

END_CALL = "end_call"  # the built-in tools (voiceagent.call_control declares them to the model)
TRANSFER_CALL = "transfer_call"
TOOL_LINE_CHARS = 500  # a tool's output in the transcript


def _destination(arguments: str, targets: dict[str, str]) -> str | None:
    """The number to transfer to: the only one, or the one the model named; None if unknown."""
    if list(targets) == [""]:
        return targets[""]
    try:
        named = json.loads(arguments).get("destination")
    except (ValueError, AttributeError):
        return None
    return targets.get(named) if isinstance(named, str) else None


class Closes:
    """A built-in tool's decision: end the call this way once the closing words are heard."""

    def __init__(self, end: EndCall, line: str) -> None:
        self.end, self.line = end, line


class AgentTools:
    def __init__(self, options: CallOptions, *, transcript: Transcript, responses: Responses) -> None:
        self.calls = ToolCalls()
        self._held: dict[str, list[ev.FunctionCall]] = {}  # response id -> its calls, until it is done
        self._options = options
        self._transcript = transcript
        self._responses = responses

    def called(self, call: ev.FunctionCall) -> None:
        """The model called a tool: held until its response is done."""
        self._held.setdefault(call.response_id, []).append(call)

    def forget_held(self) -> None:
        """A new model session: the old one's calls still held will never be done."""
        self._held.clear()

    def response_done(self, response_id: str, status: str, now: float, *, model_ready: bool) -> list[Action] | Closes:
        """The response ended: carry out its calls if it completed (the built-ins' closing first), else
        tell the model they were not carried out."""
        held = self._held.pop(response_id, [])
        if status != "completed":
            actions: list[Action] = []
            for call in held:
                actions.append(ToolNotRun(call.name, status))
                if model_ready:
                    not_run = json.dumps({"error": f"not carried out: the response was {status}"})
                    actions.append(SendToModel(ev.FunctionOutput(call.call_id, not_run)))
            return actions
        done: list[Action] = []
        closes: Closes | None = None
        for call in held:
            decided = self._carry_out(call, now, model_ready=model_ready)
            if isinstance(decided, Closes):
                closes = closes or decided
            else:
                done += decided
        self.calls.response_done(response_id)
        return closes if closes is not None else done + self.send_outputs(response_id, model_ready, now)

    def _carry_out(self, call: ev.FunctionCall, now: float, *, model_ready: bool) -> list[Action] | Closes:
        """Run one call, or (a built-in) the way the call is to end."""
        response_id, call_id, name, arguments = call.response_id, call.call_id, call.name, call.arguments
        if name == END_CALL and self._options.end_call_tool:
            return Closes(EndCall(EndReason.AGENT_HUNG_UP, "the agent ended the call"), f"{END_CALL}()")
        targets = self._options.transfer_targets
        if name == TRANSFER_CALL and targets:
            destination = _destination(arguments, targets)
            if destination is not None:
                detail = "the agent transferred the call"
                transfer = EndCall(EndReason.AGENT_TRANSFERRED, detail, Farewell.TRANSFER, destination)
                return Closes(transfer, f"{TRANSFER_CALL}() to {destination}")
            self.calls.started(response_id, call_id, name, now)
            known = ", ".join(sorted(targets))
            unknown = json.dumps({"error": f"unknown destination; known: {known}"})
            return self._finished(call_id, unknown, now)
        self.calls.started(response_id, call_id, name, now)
        return [RunTool(call_id, name, arguments)]

    def finished(
        self, call_id: str, output: str, now: float, *, model_ready: bool, error: str | None = None
    ) -> list[Action]:
        """A tool answered: the fact, the transcript's line, and the outputs if they are all in."""
        known = self.calls.finished(call_id, output)
        if known is None:
            return []
        response_id = known[0]
        return self._finished(call_id, output, now, error, known) + self.send_outputs(response_id, model_ready, now)

    def _finished(
        self,
        call_id: str,
        output: str,
        now: float,
        error: str | None = None,
        known: tuple[str, str, float] | None = None,
    ) -> list[Action]:
        known = known or self.calls.finished(call_id, output)
        if known is None:
            return []
        _, name, started_at = known
        called = ToolCalled(name, error is None, round((now - started_at) * 1000), error)
        return [called, *self._transcript.tool_line(f"{name} → {output[:TOOL_LINE_CHARS]}")]

    def send_outputs(self, response_id: str, model_ready: bool, now: float) -> list[Action]:
        """Every output of the response, once all are in and the response is done; then one reason to speak."""
        ready = self.calls.ready(response_id)
        if ready is None or not model_ready:
            return []
        actions: list[Action] = [SendToModel(ev.FunctionOutput(call_id, out)) for call_id, out in ready.outputs]
        return actions + self._responses.add(ReasonKind.TOOL_RESULTS, now)
