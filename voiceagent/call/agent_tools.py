"""The agent's tools: the operator's (run by the driver, their results sent back together, see
``ToolCalls``) and the built-in ones that end the call (``end_call``) or hand the caller on
(``transfer_call``), which the core carries out itself once the agent's closing words are heard."""

from __future__ import annotations

import json

from voiceagent.call.actions import Action, EndCall, RunTool, SendToModel
from voiceagent.call.endings import EndReason, Farewell
from voiceagent.call.observations import ToolCalled
from voiceagent.call.options import CallOptions
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
        self._options = options
        self._transcript = transcript
        self._responses = responses

    def called(self, call: ev.FunctionCall, now: float, *, model_ready: bool) -> list[Action] | Closes:
        """The model called a tool: run it, or (a built-in) the way the call is to end."""
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
            return self.finished(call_id, unknown, now, model_ready=model_ready)
        self.calls.started(response_id, call_id, name, now)
        return [RunTool(call_id, name, arguments)]

    def finished(
        self, call_id: str, output: str, now: float, *, model_ready: bool, error: str | None = None
    ) -> list[Action]:
        """A tool answered: the fact, the transcript's line, and the outputs if they are all in."""
        known = self.calls.finished(call_id, output)
        if known is None:
            return []
        response_id, name, started_at = known
        called = ToolCalled(name, error is None, round((now - started_at) * 1000), error)
        line = self._transcript.tool_line(f"{name} → {output[:TOOL_LINE_CHARS]}")
        return [called, *line, *self.send_outputs(response_id, model_ready)]

    def send_outputs(self, response_id: str, model_ready: bool) -> list[Action]:
        """Every output of the response, once all are in and the response is done; then ask again."""
        ready = self.calls.ready(response_id)
        if ready is None or not model_ready:
            return []
        actions: list[Action] = [SendToModel(ev.FunctionOutput(call_id, out)) for call_id, out in ready.outputs]
        return actions + self._responses.after_tool_results(ready.ask_again)
