"""The state of one call and the parts every other part of the core leans on: recording what was said,
warnings, goodbyes and the one way out. ``CallCore`` (core.py) adds the inputs, ``Timers`` (timers.py) the
deadlines, ``AgentActs`` (acts.py) what the agent and operators do; all share this state."""

from __future__ import annotations

from voiceagent.call.actions import Action, ConnectPurpose, EndCall, Farewell, Log, RecordLine, SendToModel
from voiceagent.call.figures import CallFigures
from voiceagent.call.guards import CallerAudioBatch, CallerBacklog, CallerPace, ConnectPolicy, WarningLimiter
from voiceagent.call.history import History
from voiceagent.call.options import CallOptions
from voiceagent.call.phases import GOODBYE_PHASES, CallPhase, ModelPhase
from voiceagent.call.playback import AgentItem, Playback
from voiceagent.call.tool_calls import ToolCalls
from voiceagent.prompts import goodbye_instructions
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

__all__ = ["CallState", "heard_words"]


def heard_words(text: str, fraction: float) -> str:
    """The words of ``text`` the caller heard, when ``fraction`` of its audio played: the model's words
    arrive with its audio, so they are cut in the same proportion, at a word boundary. (The server deletes
    the unheard part of its own transcript on truncate; the transcript we keep says the same.)"""
    limit = fraction * len(text)
    words = text.split(" ")
    kept: list[str] = []
    end = 0
    for word in words:
        end += len(word) + (1 if kept else 0)
        if end > limit:
            break
        kept.append(word)
    return " ".join(kept)


class CallState:
    """The call's state and the decisions every part needs. Not used on its own: see ``CallCore``."""

    def __init__(self, options: CallOptions, *, call_sid: str, now: float) -> None:
        self.options = options
        self.call_sid = call_sid
        self.phase = CallPhase.AWAITING_STREAM
        self.model_phase = ModelPhase.CONNECTING
        self.figures = CallFigures()
        self._playback = Playback(options.bytes_per_ms)
        self._session_config = options.session  # what the current session was asked for
        self._configuring_since: float | None = None
        self._backlog = CallerBacklog(int(options.caller_backlog_seconds * 1000 * options.bytes_per_ms))
        self._batch = CallerAudioBatch(options.caller_audio_batch_ms * options.bytes_per_ms)
        self._responses_with_audio: set[str] = set()
        self._text_answers: dict[str, str] = {}  # response id -> text of an answer that came as text
        self._text_recoveries = 0
        self._connected_at: float | None = None
        self._connects = ConnectPolicy(
            attempts=options.connect_attempts,
            first_delay=options.retry_delay_seconds,
            per_minute=options.max_connects_per_minute,
            seed=call_sid,
        )
        self._last_caller_audio = now
        pace = options.caller_audio_pace
        self._pace = None if pace is None else CallerPace(pace, options.bytes_per_ms, now)
        self._answer_due: float | None = None
        self._warnings = WarningLimiter(options.warnings_per_kind)
        self._tool_calls = ToolCalls()
        self._closing: EndCall | None = None  # the agent ended or transferred the call: how, once it is heard
        self._operator_lines: list[str] = []  # what an operator asked the agent to say, in order
        self._history = History(options.history_chars)
        self._created_at = now
        self._last_activity = now
        self._session = 0  # model sessions opened so far; the current one's number
        self._pending_connect: ConnectPurpose | None = None
        self._retry_at: float | None = None
        self._recycle_at: float | None = None
        self._live_response: str | None = None
        self._response_items: dict[str, list[str]] = {}
        self._caller_speaking = False
        self._wind_down_reason = ""
        self._goodbye_deadline: float | None = None

    def wind_down(self, reason: str, now: float) -> list[Action]:
        """End the call politely: the agent says goodbye, then the call ends (or at the grace deadline)."""
        if self.phase in GOODBYE_PHASES or self.phase is CallPhase.ENDED:
            return []
        if self.phase is CallPhase.AWAITING_STREAM or self.model_phase is not ModelPhase.READY:
            return self._end(reason, now)
        self.phase = CallPhase.GOODBYE_PENDING
        self._wind_down_reason = reason
        self._goodbye_deadline = now + self.options.goodbye_grace_seconds
        return [Log("info", "winding_down", {"reason": reason}), *self._maybe_say_goodbye()]

    def _warn(self, event: str, fields: dict[str, object]) -> list[Action]:
        """A warning, logged the first few times per call and then only counted (see ``WarningLimiter``)."""
        count = self._warnings.admit(event)
        return [] if count is None else [Log("warning", event, {**fields, "count": count})]

    # ------------------------------------------------------------ transcripts

    def _caller_said(self, text: str) -> list[Action]:
        if not text:
            return []
        line = TranscriptLine(self.call_sid, "caller", text)
        self._history.add(line)
        return [RecordLine(line)]

    def _maybe_record(self, item: AgentItem) -> list[Action]:
        if item.recorded or item.truncated or not (item.audio_done and item.text_done):
            return []
        if item.played < item.received:
            return []  # still playing: it may yet be interrupted
        return self._record_agent(item)

    def _record_agent(self, item: AgentItem) -> list[Action]:
        if item.recorded:
            return []
        item.recorded = True
        text = item.text.strip()
        if not text and not item.received:
            return []
        interrupted = item.truncated or item.played < item.received
        heard_ms = item.heard_ms(self.options.bytes_per_ms) if interrupted else None
        if interrupted and item.received:
            text = heard_words(text, min(item.played, item.received) / item.received)
        line = TranscriptLine(self.call_sid, "agent", text, interrupted, heard_ms)
        if text:
            self._history.add(line)
        return [RecordLine(line, item.item_id)]

    # ------------------------------------------------------------ quiet, goodbyes and the end

    @property
    def _quiet(self) -> bool:
        """Nobody is talking and nothing is being generated: a safe moment to swap model sessions."""
        return (
            self._live_response is None
            and not self._caller_speaking
            and not self._playback.agent_audible
            and not self._tool_calls.running
        )

    def _maybe_say_goodbye(self) -> list[Action]:
        if self.phase is not CallPhase.GOODBYE_PENDING or self._live_response is not None:
            return []
        if self.model_phase is not ModelPhase.READY:
            return []
        self.phase = CallPhase.GOODBYE_REQUESTED
        prompt = self.options.session.instructions
        return [SendToModel(ev.CreateResponse(goodbye_instructions(prompt, self._wind_down_reason)))]

    def _maybe_hang_up(self, now: float) -> list[Action]:
        if self.phase is not CallPhase.GOODBYE_SPEAKING:
            return []
        if self._live_response is not None or self._playback.agent_audible:
            return []
        return self._end_closing(now)

    def _end_closing(self, now: float) -> list[Action]:
        """End a call whose goodbye (or the agent's closing words) is over."""
        if self._closing is not None:
            closing = self._closing
            return self._end(closing.reason, now, farewell=closing.farewell, transfer_to=closing.transfer_to)
        return self._end(self._wind_down_reason, now)

    def _end(
        self, reason: str, now: float, *, farewell: Farewell = Farewell.HANG_UP, transfer_to: str | None = None
    ) -> list[Action]:
        """The one way out: the caller's last words to the model, every agent line not recorded yet
        recorded, the call summed up and ended."""
        if self.phase is CallPhase.ENDED:
            return []
        self.phase = CallPhase.ENDED
        gathered = self._batch.take() if self.model_phase is ModelPhase.READY else None
        actions: list[Action] = [] if gathered is None else [SendToModel(ev.AppendAudio(gathered))]
        for item in self._playback.items.values():
            actions += self._record_agent(item)
        duration = round(now - (self.figures.stream_started_at or self._created_at), 3)
        summary = {"reason": reason, "duration_s": duration, **self.figures.summary()}
        if not_logged := self._warnings.not_logged():
            summary["warnings_not_logged"] = not_logged
        return [*actions, Log("info", "call_ended", summary), EndCall(reason, farewell, transfer_to, summary)]
