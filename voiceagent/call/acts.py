"""What the agent and the people behind it do to a call: the operator's tools (run by the driver, their
results sent back together), hanging up and transferring once the closing words were heard, the keypad
as caller input, and an operator stepping in (say, note, transfer)."""

from __future__ import annotations

import json

from voiceagent.call.actions import Action, EndCall, Farewell, Log, RecordLine, RunTool, SendToModel
from voiceagent.call.phases import CallPhase, ModelPhase
from voiceagent.call.state import CallState
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

__all__ = ["END_CALL", "TRANSFER_CALL", "AgentActs"]

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


class AgentActs(CallState):
    def operator_say(self, text: str, now: float) -> list[Action]:
        """The agent says ``text`` now (after the response under way, if any)."""
        if self.phase is not CallPhase.IN_CALL or self.model_phase is not ModelPhase.READY:
            return [Log("warning", "operator_say_refused", {"phase": self.phase.name.lower()})]
        self._operator_lines.append(text)
        return [Log("info", "operator_say", {"chars": len(text)}), *self._say_operator_lines()]

    def operator_note(self, text: str, now: float) -> list[Action]:
        """Context for the model, without a response."""
        if self.model_phase is not ModelPhase.READY:
            return [Log("warning", "operator_note_refused", {"phase": self.model_phase.name.lower()})]
        note = f"(A note from the human operator, not said by the caller: {text})"
        return [Log("info", "operator_note", {"chars": len(text)}), SendToModel(ev.CreateTextItem("system", note))]

    def operator_transfer(self, destination: str, now: float) -> list[Action]:
        return self._end("an operator transferred the call", now, farewell=Farewell.TRANSFER, transfer_to=destination)

    def _say_operator_lines(self) -> list[Action]:
        if not self._operator_lines or self._live_response is not None:
            return []
        text = self._operator_lines.pop(0)
        prompt = self.options.session.instructions
        words = f"{prompt}\n\nSay exactly this to the caller now, and nothing else: {text}"
        return [SendToModel(ev.CreateResponse(words))]

    # ------------------------------------------------------------ the agent acts: tools, hang-up, transfer, keypad

    def _function_call(self, response_id: str, call_id: str, name: str, arguments: str, now: float) -> list[Action]:
        if name == END_CALL and self.options.end_call_tool:
            return self._agent_closes(EndCall("the agent ended the call"), f"{END_CALL}()", now)
        if name == TRANSFER_CALL and self.options.transfer_targets:
            destination = _destination(arguments, self.options.transfer_targets)
            if destination is not None:
                transfer = EndCall("the agent transferred the call", Farewell.TRANSFER, destination)
                return self._agent_closes(transfer, f"{TRANSFER_CALL}() to {destination}", now)
            self._tool_calls.started(response_id, call_id, name, now)
            known = ", ".join(sorted(self.options.transfer_targets))
            return self.tool_finished(call_id, json.dumps({"error": f"unknown destination; known: {known}"}), now)
        self._tool_calls.started(response_id, call_id, name, now)
        return [RunTool(call_id, name, arguments)]

    def tool_finished(self, call_id: str, output: str, now: float, *, error: str | None = None) -> list[Action]:
        """An operator's tool answered (``error``: it failed, and ``output`` says so to the model)."""
        if self.phase is CallPhase.ENDED:
            return []
        known = self._tool_calls.finished(call_id, output)
        if known is None:
            return []
        response_id, name, started_at = known
        facts = {"name": name, "ok": error is None, "duration_ms": round((now - started_at) * 1000)}
        actions: list[Action] = [Log("info", "tool_called", facts | ({"error": error} if error else {}))]
        line = TranscriptLine(self.call_sid, "tool", f"{name} → {output[:TOOL_LINE_CHARS]}")
        self._history.add(line)
        return [*actions, RecordLine(line), *self._send_tool_outputs(response_id)]

    def _send_tool_outputs(self, response_id: str) -> list[Action]:
        ready = self._tool_calls.ready(response_id)
        if ready is None or self.model_phase is not ModelPhase.READY:
            return []
        actions: list[Action] = [SendToModel(ev.FunctionOutput(call_id, out)) for call_id, out in ready.outputs]
        if ready.ask_again and self._live_response is None and not self._caller_speaking:
            actions.append(SendToModel(ev.CreateResponse()))
        return actions

    def _agent_closes(self, end: EndCall, line_text: str, now: float) -> list[Action]:
        """The model hung up or transferred: its closing words are heard in full, then the call ends."""
        if self.phase is not CallPhase.IN_CALL:
            return []
        self._closing, self._wind_down_reason = end, end.reason
        self.phase = CallPhase.GOODBYE_SPEAKING
        self._goodbye_deadline = now + self.options.goodbye_grace_seconds
        line = TranscriptLine(self.call_sid, "tool", line_text)
        self._history.add(line)
        facts = {"farewell": end.farewell.value}
        return [Log("info", "agent_closing", facts), RecordLine(line), *self._maybe_hang_up(now)]

    def _keypad(self, digit: str) -> list[Action]:
        actions: list[Action] = [Log("info", "dtmf", {"key": "*"})]  # which key is the caller's secret
        if not self.options.dtmf_to_model or self.model_phase is not ModelPhase.READY:
            return actions
        line = TranscriptLine(self.call_sid, "caller", "(pressed a key)")
        actions += [RecordLine(line), SendToModel(ev.CreateTextItem("user", f"(The caller pressed {digit}.)"))]
        if self._live_response is None:
            actions.append(SendToModel(ev.CreateResponse()))
        return actions
