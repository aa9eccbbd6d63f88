"""The per-call state machine: sans-I/O, in the manner of h11, wsproto and aioquic's ``QuicConnection``.

``CallCore`` takes inputs from the caller's transport (``voiceagent.call.inputs``), from the model
(``voiceagent.realtime.events``) and from the clock, each with ``now``, and returns the actions to carry
out (``voiceagent.call.actions``). It never touches a socket or reads a clock: it says when it next
wants to be woken (``next_deadline()``) and does what is due in ``handle_timer(now)``. The driver reads
nothing else back from it.

Barge-in accounting (docs/protocol.md §2, "The truncate rule"): for every agent audio item we count the
bytes the model sent and the bytes the transport reported as heard. When the caller starts speaking
over unplayed audio we clear playback and truncate the item at ``min(heard, received)`` in ms — never
past what the model produced, never past what the caller heard.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import assert_never

from voiceagent.audio import b64_decoded_length
from voiceagent.call.actions import (
    Action,
    ClearPlayback,
    ConnectModel,
    ConnectPurpose,
    DropNewModel,
    EndCall,
    Farewell,
    Log,
    PlayAudio,
    RecordLine,
    RunTool,
    SendToModel,
    UseNewModel,
)
from voiceagent.call.figures import CallFigures
from voiceagent.call.guards import CallerBacklog, CallerPace, ConnectPolicy, WarningLimiter
from voiceagent.call.inputs import (
    BadInput,
    CallerAudio,
    CallerHungUp,
    Digit,
    PlayedUpTo,
    StreamStarted,
    TransportEvent,
)
from voiceagent.call.phases import GOODBYE_PHASES, CallPhase, ModelPhase
from voiceagent.call.playback import AgentItem, Playback
from voiceagent.call.tool_calls import ToolCalls
from voiceagent.prompts import conversation_so_far, goodbye_instructions, greeting_instructions
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

__all__ = ["CallCore", "CallOptions"]

UNINTELLIGIBLE = "(unintelligible)"  # a caller turn whose transcription failed
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


@dataclass(frozen=True, slots=True)
class CallOptions:
    session: ev.SessionConfig = field(default_factory=lambda: ev.SessionConfig(instructions="", voice="alloy"))
    greeting: str = ""  # what the agent says first; empty: wait for the caller
    bytes_per_ms: int = 8  # the transport's audio format (μ-law 8 kHz: 8)
    server_interrupts: bool = True  # turn detection cancels the live response itself on speech
    max_call_seconds: float | None = None  # then the agent says goodbye and the call ends
    caller_silence_seconds: float | None = None  # nobody spoke for this long: goodbye, end
    goodbye_grace_seconds: float = 20.0  # a goodbye that has not finished by then is cut short
    stream_wait_seconds: float | None = None  # pre-warmed, and no stream by then: give the session up
    recycle_seconds: float | None = None  # replace the model session at a quiet moment after this long
    connect_attempts: int = 3  # consecutive failed connects before the caller hears the apology
    retry_delay_seconds: float = 0.5  # first back-off; doubles each failure
    max_bad_inputs: int = 50  # the transport is not what it claims: end the call
    session_ready_seconds: float = 5.0  # a session not confirmed (μ-law both ways) by then is not a call
    caller_backlog_seconds: float = 15.0  # caller audio kept while no session is ready; the oldest goes first
    # Guards against broken or hostile peers (None: off). The service turns them all on.
    stream_silence_seconds: float | None = None  # no caller audio for this long: the stream is dead
    playback_report_grace_seconds: float | None = None  # reports this late after audio must have played: gone
    caller_audio_pace: float | None = None  # caller audio faster than this × real time is dropped
    answer_timeout_seconds: float | None = None  # the caller stopped speaking and no response started
    short_session_seconds: float = 10.0  # a session lost sooner than this counts as a failed connect
    max_connects_per_minute: int = 10  # per call, however they fail
    warnings_per_kind: int = 5  # the same warning logged this often per call, then only counted
    # What the agent may do (the tools themselves are declared in ``session.tools``).
    end_call_tool: bool = False  # the model may hang up (built-in ``end_call``)
    transfer_targets: dict[str, str] = field(default_factory=dict)  # name -> number/SIP URI ("" if only one)
    dtmf_to_model: bool = False  # keypad presses reach the model as caller input


class CallCore:
    """The decisions of one call. Feed it inputs with ``now``; carry out the actions it returns, in order."""

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
        self._history: list[TranscriptLine] = []
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

    # ------------------------------------------------------------ lifecycle

    def start(self, now: float) -> list[Action]:
        """The call exists (webhook or stream): open the first model session."""
        return self._connect(ConnectPurpose.FIRST, now)

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

    def hang_up(self, reason: str, now: float) -> list[Action]:
        """End the call at once (internal error, shutdown of a call nobody is on, an operator)."""
        return self._end(reason, now)

    # ------------------------------------------------------------ an operator steps in

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

    # ------------------------------------------------------------ the transport (caller) side

    def transport_event(self, event: TransportEvent, now: float) -> list[Action]:
        if self.phase is CallPhase.ENDED:
            return []
        match event:
            case CallerAudio(payload=payload, size=size):
                self.figures.bytes_in += size
                self._last_caller_audio = now
                if self._pace is not None and not self._pace.admit(size, now):
                    self.figures.caller_bytes_dropped += size
                    return self._warn("caller_audio_too_fast", {"dropped_bytes": self._pace.dropped})
                if self.model_phase is ModelPhase.READY:
                    return [SendToModel(ev.AppendAudio(payload))]  # the hot path: nothing else to check
                actions: list[Action] = self._keep_for_later(event)
            case PlayedUpTo(item_id=item_id, offset=offset):
                actions = self._played(item_id, offset, now)
            case StreamStarted():
                actions = self._stream_started(now)
            case CallerHungUp(detail=detail):
                return self._end(detail, now)
            case Digit(digit=digit):
                actions = self._keypad(digit)
            case BadInput(reason=reason):
                actions = self._bad_input(reason, now)
            case _:
                assert_never(event)
        return actions + self._maybe_recycle(now)

    def _warn(self, event: str, fields: dict[str, object]) -> list[Action]:
        """A warning, logged the first few times per call and then only counted (see ``WarningLimiter``)."""
        count = self._warnings.admit(event)
        return [] if count is None else [Log("warning", event, {**fields, "count": count})]

    def _keep_for_later(self, audio: CallerAudio) -> list[Action]:
        """No session is ready (connecting, configuring, reconnecting): hold the caller's audio, bounded."""
        self.figures.caller_bytes_dropped += self._backlog.keep(audio)
        return []

    def _deliver_backlog(self) -> list[Action]:
        """The session is ready: what the caller said meanwhile goes to it, in order."""
        dropped_ms = self._backlog.dropped // self.options.bytes_per_ms
        actions: list[Action] = [SendToModel(ev.AppendAudio(audio.payload)) for audio in self._backlog.take()]
        if dropped_ms:
            actions.append(Log("warning", "caller_audio_dropped", {"ms": dropped_ms, "reason": "backlog full"}))
        return actions

    def _stream_started(self, now: float) -> list[Action]:
        if self.phase is not CallPhase.AWAITING_STREAM:
            return self._bad_input("a second stream start", now)
        self.phase = CallPhase.IN_CALL
        self.figures.stream_started_at = self._last_activity = self._last_caller_audio = now
        if self._pace is not None:
            self._pace.restart(now)
        held, self._playback.held = self._playback.held, []
        actions: list[Action] = []
        for item_id, payload in held:
            actions += self._play(self._playback.items[item_id], payload, now)
        return actions

    def _played(self, item_id: str, offset: int, now: float) -> list[Action]:
        item = self._playback.items.get(item_id)
        if item is None:
            return self._bad_input("a playback report for an unknown item", now)
        self._playback.played(item, offset, now)
        self._last_activity = now
        return self._maybe_record(item) + self._maybe_hang_up(now)

    def _bad_input(self, reason: str, now: float) -> list[Action]:
        self.figures.bad_inputs += 1
        logged = self._warn("transport_bad_input", {"reason": reason})
        if self.figures.bad_inputs >= self.options.max_bad_inputs:
            return [*logged, *self._end("too many malformed messages on the media stream", now)]
        return logged

    # ------------------------------------------------------------ the model side

    def model_connected(self, now: float) -> list[Action]:
        """A new model session is open: use it (configure it, and replay the conversation so far if it
        replaces another), or drop it if it was a recycle and the call is no longer quiet."""
        if self.phase is CallPhase.ENDED:
            return [DropNewModel()]
        purpose = self._pending_connect or ConnectPurpose.RECONNECT
        self._pending_connect = None
        if purpose is ConnectPurpose.RECYCLE and not (self.phase is CallPhase.IN_CALL and self._quiet):
            # swapping now would strand what is playing in a session that can no longer truncate it
            self._recycle_at = now  # again at the next quiet moment
            return [Log("info", "model_recycle_deferred", {"session": self._session}), DropNewModel()]
        self._session += 1
        self.figures.model_sessions = self._session
        self.model_phase = ModelPhase.CONFIGURING
        self._configuring_since = self._connected_at = now
        self._live_response = None
        self._caller_speaking = False
        if self.options.recycle_seconds is not None:
            self._recycle_at = now + self.options.recycle_seconds
        if self.phase in (CallPhase.GOODBYE_REQUESTED, CallPhase.GOODBYE_SPEAKING):
            self.phase = CallPhase.GOODBYE_PENDING  # ask the new session for the goodbye
        self._tool_calls.orphan_all()
        prompt = self.options.session.instructions
        self._session_config = replace(self.options.session, instructions=conversation_so_far(prompt, self._history))
        return [
            UseNewModel(),
            Log("info", "model_connected", {"purpose": purpose.value, "session": self._session}),
            SendToModel(ev.UpdateSession(self._session_config)),
        ]

    def model_connect_failed(self, error: str, now: float) -> list[Action]:
        if self.phase is CallPhase.ENDED:
            return []
        purpose = self._pending_connect or ConnectPurpose.RECONNECT
        self._pending_connect = None
        if purpose is ConnectPurpose.RECYCLE:
            if self.options.recycle_seconds is not None:
                self._recycle_at = now + self.options.recycle_seconds  # the current session is fine: later
            return [Log("warning", "model_recycle_failed", {"error": error})]
        return self._failed_attempt(purpose, error, now)

    def _failed_attempt(self, purpose: ConnectPurpose, error: str, now: float) -> list[Action]:
        """A connect that failed, or a session that died young: back off exponentially, with jitter, and
        give up (the caller hears the apology) after ``connect_attempts`` in a row."""
        retry_at = self._connects.failed(now)
        attempt = {"attempt": self._connects.failures, "of": self._connects.attempts, "error": error}
        log = Log("warning", "model_connect_failed", attempt)
        if retry_at is None:
            return [log, *self._end("the model could not be reached", now, farewell=Farewell.UNAVAILABLE)]
        self.model_phase = ModelPhase.RETRY_WAIT
        self._pending_connect = purpose
        self._retry_at = retry_at
        return [log]

    def model_lost(self, code: int | None, reason: str, now: float) -> list[Action]:
        """The current model session closed (dropped, or the server's cap): open another."""
        if self.phase is CallPhase.ENDED:
            return []
        unconfirmed = self.model_phase is not ModelPhase.READY
        lived = now - (self._connected_at if self._connected_at is not None else now)
        self.model_phase = ModelPhase.CONNECTING
        self._live_response = None
        self._caller_speaking = False
        self._answer_due = None
        log = Log("warning", "model_connection_lost", {"code": code, "reason": reason, "lived_s": round(lived, 3)})
        if self._pending_connect is not None:  # a recycle is already connecting: it becomes the replacement
            self._pending_connect = ConnectPurpose.RECONNECT
            return [log]
        if unconfirmed or lived < self.options.short_session_seconds:
            # a server that accepts and then hangs up must not be redialled in a tight loop
            why = "closed before confirming the session" if unconfirmed else f"closed after {lived:.1f} s"
            return [log, *self._failed_attempt(ConnectPurpose.RECONNECT, why, now)]
        self._connects.lived()
        return [log, *self._connect(ConnectPurpose.RECONNECT, now)]

    def model_event(self, event: ev.ModelEvent, now: float) -> list[Action]:
        if self.phase is CallPhase.ENDED:
            return []
        match event:
            case ev.AudioDelta():
                actions = self._audio_delta(event, now)
            case ev.AgentTranscriptDelta(item_id=item_id, delta=delta):
                item = self._playback.item(item_id, self._session)
                if not item.truncated and not item.text_done:
                    item.text += delta
                actions = []
            case ev.AudioDone(response_id=response_id, item_id=item_id):
                item = self._item_of_response(item_id, response_id)
                item.audio_done = True
                actions = self._maybe_record(item)
            case ev.AgentTranscriptDone(item_id=item_id, transcript=transcript):
                item = self._playback.item(item_id, self._session)
                actions = []
                if not item.truncated:
                    item.text, item.text_done = transcript, True
                    actions = self._maybe_record(item)
            case ev.SpeechStarted():
                actions = self._barge_in(now)
            case ev.SpeechStopped():
                self._caller_speaking = False
                self._last_activity = self.figures.caller_stopped_at = now
                if self.options.answer_timeout_seconds is not None:
                    self._answer_due = now + self.options.answer_timeout_seconds
                actions = []
            case ev.ResponseCreated(response_id=response_id):
                self._live_response = response_id
                self._answer_due = None
                if self.phase is CallPhase.GOODBYE_REQUESTED:
                    self.phase = CallPhase.GOODBYE_SPEAKING
                actions = []
            case ev.ResponseDone():
                actions = self._response_done(event, now)
            case ev.CallerTranscript(transcript=transcript):
                actions = self._caller_said(transcript.strip())
            case ev.CallerTranscriptFailed(message=message):
                self.figures.transcription_failures += 1
                failed = Log("warning", "caller_transcription_failed", {"error": message})
                actions = [failed, *self._caller_said(UNINTELLIGIBLE)]
            case ev.TextDelta(response_id=response_id, delta=delta):
                self._text_answers[response_id] = self._text_answers.get(response_id, "") + delta
                actions = []
            case ev.FunctionCall(response_id=response_id, call_id=call_id, name=name, arguments=arguments):
                actions = self._function_call(response_id, call_id, name, arguments, now)
            case ev.SessionRejected(code=code, message=message):
                rejected = Log("error", "model_session_rejected", {"code": code, "message": message})
                actions = [
                    rejected,
                    *self._end(f"the model refused the session: {message}", now, farewell=Farewell.UNAVAILABLE),
                ]
            case ev.SessionUpdated():
                actions = self._session_updated(event, now)
            case ev.ModelError(code=code, message=message, routine=routine):
                # logged, never fatal: a session that is really gone closes its socket
                actions = [Log("warning" if routine else "error", "model_error", {"code": code, "message": message})]
            case ev.Ignored():
                actions = []
            case _:
                assert_never(event)
        return actions + self._maybe_recycle(now)

    def _session_updated(self, event: ev.SessionUpdated, now: float) -> list[Action]:
        if event.input_format != ev.PCMU or event.output_format != ev.PCMU:
            formats = {"input_format": event.input_format, "output_format": event.output_format}
            reason = f"the model will not use μ-law (input {event.input_format}, output {event.output_format})"
            return [Log("error", "model_audio_format_refused", formats), *self._end(reason, now)]
        if self.model_phase is not ModelPhase.CONFIGURING:
            return []
        self.model_phase = ModelPhase.READY
        self._configuring_since = None
        actions: list[Action] = [Log("info", "model_session_ready", {"session": self._session})]
        actions += self._deliver_backlog()
        if self.options.greeting and self._session == 1:
            prompt = self.options.session.instructions
            actions.append(SendToModel(ev.CreateResponse(greeting_instructions(prompt, self.options.greeting))))
        return actions + self._maybe_say_goodbye()

    def _barge_in(self, now: float) -> list[Action]:
        """The caller speaks: stop the agent at once and tell the model exactly how much was heard."""
        self._caller_speaking = True
        self._last_activity = now
        self.figures.caller_stopped_at = self._answer_due = None
        self._tool_calls.caller_spoke()
        actions: list[Action] = []
        speaking = self._playback.speaking()
        if speaking:
            self.figures.barge_ins += 1
            if self.phase is not CallPhase.AWAITING_STREAM:
                actions.append(ClearPlayback())
            self._playback.held.clear()
            heard = [self._playback.heard(item, now) for item in speaking]  # all before any cut
            for item, heard_bytes in zip(speaking, heard, strict=True):
                actions += self._truncate(item, heard_bytes)
        if self._live_response is not None and not self.options.server_interrupts:
            actions.append(SendToModel(ev.CancelResponse()))
        return actions + self._maybe_hang_up(now)  # talking over a finished goodbye: nothing left to hear

    def _truncate(self, item: AgentItem, heard_bytes: int) -> list[Action]:
        self._playback.truncate(item, heard_bytes)
        heard_ms = item.heard_ms(self.options.bytes_per_ms)
        if item.session != self._session:
            # the item lives in a model session that is gone: nothing to truncate there
            facts = {"item_id": item.item_id, "heard_ms": heard_ms, "previous_session": True}
            return [Log("info", "barge_in", facts), *self._record_agent(item)]
        self.figures.truncations += 1
        produced_ms = item.received // self.options.bytes_per_ms
        return [
            SendToModel(ev.Truncate(item.item_id, heard_ms)),
            Log("info", "barge_in", {"item_id": item.item_id, "heard_ms": heard_ms, "produced_ms": produced_ms}),
            *self._record_agent(item),
        ]

    def _audio_delta(self, event: ev.AudioDelta, now: float) -> list[Action]:
        item = self._item_of_response(event.item_id, event.response_id)
        if item.truncated:
            return []  # a late delta of an item the caller talked over
        if self.model_phase is not ModelPhase.READY:
            return [Log("warning", "model_audio_before_session_ready", {"item_id": item.item_id})]
        self._responses_with_audio.add(event.response_id)
        item.received += b64_decoded_length(event.audio)
        if self.phase is CallPhase.AWAITING_STREAM:
            self._playback.held.append((item.item_id, event.audio))
            return []
        return self._play(item, event.audio, now)

    def _play(self, item: AgentItem, payload: str, now: float) -> list[Action]:
        size = b64_decoded_length(payload)
        self._playback.sent(item, size, now)
        self.figures.bytes_out += size
        self.figures.agent_audio(now)
        return [PlayAudio(item.item_id, payload, item.sent)]

    def _response_done(self, event: ev.ResponseDone, now: float) -> list[Action]:
        if self._live_response == event.response_id:
            self._live_response = None
        self.figures.add_usage(event.usage)
        facts = {"status": event.status, "usage": event.usage} | ({"detail": event.detail} if event.detail else {})
        level = "warning" if event.status in ("failed", "incomplete") else "info"
        actions: list[Action] = [Log(level, "response_done", facts), *self._answered_in_text(event.response_id)]
        for item_id in self._response_items.pop(event.response_id, []):
            item = self._playback.items[item_id]
            item.audio_done = item.text_done = True
            actions += self._maybe_record(item)
        self._tool_calls.response_done(event.response_id)
        actions += self._send_tool_outputs(event.response_id) + self._say_operator_lines()
        return actions + self._maybe_say_goodbye() + self._maybe_hang_up(now)

    def _answered_in_text(self, response_id: str) -> list[Action]:
        """A response that produced text and no audio: the caller heard silence. Say so, and once per call
        ask again for speech (re-sending the session's audio configuration first)."""
        text = self._text_answers.pop(response_id, None)
        had_audio = response_id in self._responses_with_audio
        self._responses_with_audio.discard(response_id)
        if text is None or had_audio:
            return []
        actions: list[Action] = [Log("warning", "model_answered_in_text", {"text": text[:500]})]
        if self._text_recoveries == 0 and self.model_phase is ModelPhase.READY:
            self._text_recoveries += 1
            actions += [SendToModel(ev.UpdateSession(self._session_config)), SendToModel(ev.CreateResponse())]
        return actions

    def _item_of_response(self, item_id: str, response_id: str) -> AgentItem:
        item = self._playback.item(item_id, self._session)
        items = self._response_items.setdefault(response_id, [])
        if item_id not in items:
            items.append(item_id)
        return item

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
        self._history.append(line)
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
        self._history.append(line)
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

    # ------------------------------------------------------------ transcripts

    def _caller_said(self, text: str) -> list[Action]:
        if not text:
            return []
        line = TranscriptLine(self.call_sid, "caller", text)
        self._history.append(line)
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
        line = TranscriptLine(self.call_sid, "agent", text, interrupted, heard_ms)
        if text:
            self._history.append(line)
        return [RecordLine(line)]

    # ------------------------------------------------------------ time

    @property
    def _quiet(self) -> bool:
        """Nobody is talking and nothing is being generated: a safe moment to swap model sessions."""
        return (
            self._live_response is None
            and not self._caller_speaking
            and not self._playback.agent_audible
            and not self._tool_calls.running
        )

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` next has something to do (monotonic seconds), or None."""
        options = self.options
        deadlines: list[float] = []
        if self.phase is CallPhase.AWAITING_STREAM and options.stream_wait_seconds is not None:
            deadlines.append(self._created_at + options.stream_wait_seconds)
        elif self.phase is CallPhase.IN_CALL:
            started = self.figures.stream_started_at or self._created_at
            if options.max_call_seconds is not None:
                deadlines.append(started + options.max_call_seconds)
            if options.caller_silence_seconds is not None and self._quiet:
                deadlines.append(self._last_activity + options.caller_silence_seconds)
            if self._recycle_at is not None and self._pending_connect is None and self._quiet:
                deadlines.append(self._recycle_at)
        elif self.phase in GOODBYE_PHASES and self._goodbye_deadline is not None:
            deadlines.append(self._goodbye_deadline)
        if self.model_phase is ModelPhase.RETRY_WAIT and self._retry_at is not None:
            deadlines.append(self._retry_at)
        if self.model_phase is ModelPhase.CONFIGURING and self._configuring_since is not None:
            deadlines.append(self._configuring_since + options.session_ready_seconds)
        if self.phase is not CallPhase.AWAITING_STREAM and self.phase is not CallPhase.ENDED:
            if options.stream_silence_seconds is not None:
                deadlines.append(self._last_caller_audio + options.stream_silence_seconds)
            if options.playback_report_grace_seconds is not None and self._playback.in_flight:
                deadlines.append(self._playback.playing_until + options.playback_report_grace_seconds)
        if self._answer_due is not None and self.model_phase is ModelPhase.READY:
            deadlines.append(self._answer_due)
        return min(deadlines, default=None)

    def handle_timer(self, now: float) -> list[Action]:
        """Do what is due at ``now``: limits, goodbyes cut short, connect retries, session recycling."""
        options = self.options
        if self.phase is CallPhase.ENDED:
            return []
        actions: list[Action] = []
        if self.phase is not CallPhase.AWAITING_STREAM:
            silent = options.stream_silence_seconds
            if silent is not None and now >= self._last_caller_audio + silent:
                gone = Log("warning", "stream_stopped_sending", {"silent_s": round(now - self._last_caller_audio, 3)})
                return [gone, *self._end("the media stream stopped sending audio", now)]
            grace = options.playback_report_grace_seconds
            if grace is not None and self._playback.in_flight and now >= self._playback.playing_until + grace:
                actions += [Log("warning", "playback_reports_missing", {"late_s": grace})]
                for item in self._playback.assume_played():
                    actions += self._maybe_record(item)
                actions += self._maybe_hang_up(now)
        if self._answer_due is not None and self.model_phase is ModelPhase.READY and now >= self._answer_due:
            waited = Log("error", "model_unresponsive", {"waited_s": options.answer_timeout_seconds})
            return [*actions, waited, *self._end("the model stopped answering", now, farewell=Farewell.UNAVAILABLE)]
        if any(isinstance(action, EndCall) for action in actions):
            return actions  # the missing reports ended a goodbye: nothing else is due
        if self.phase is CallPhase.AWAITING_STREAM:
            if options.stream_wait_seconds is not None and now >= self._created_at + options.stream_wait_seconds:
                return actions + self._end("no media stream arrived for the pre-warmed session", now)
        elif self.phase in GOODBYE_PHASES:
            if self._goodbye_deadline is not None and now >= self._goodbye_deadline:
                return actions + self._end_closing(now)
        else:
            started = self.figures.stream_started_at or self._created_at
            if options.max_call_seconds is not None and now >= started + options.max_call_seconds:
                return actions + self.wind_down("the call reached its maximum length", now)
            silence = options.caller_silence_seconds
            if silence is not None and self._quiet and now >= self._last_activity + silence:
                return actions + self.wind_down("the caller was silent", now)
        if self.model_phase is ModelPhase.CONFIGURING and self._configuring_since is not None:
            if now >= self._configuring_since + options.session_ready_seconds:
                unconfirmed = Log("error", "model_session_unconfirmed", {"waited_s": options.session_ready_seconds})
                return [
                    unconfirmed,
                    *self._end("the model never confirmed the session", now, farewell=Farewell.UNAVAILABLE),
                ]
        if self.model_phase is ModelPhase.RETRY_WAIT and self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
            actions += self._connect(self._pending_connect or ConnectPurpose.RECONNECT, now)
        return actions + self._maybe_recycle(now)

    def _maybe_recycle(self, now: float) -> list[Action]:
        if self._recycle_at is None or now < self._recycle_at:
            return []  # the common case, checked after every input: one comparison
        if self.phase is not CallPhase.IN_CALL or self.model_phase is not ModelPhase.READY:
            return []
        if self._pending_connect is not None or not self._quiet:
            return []
        self._recycle_at = None
        return self._connect(ConnectPurpose.RECYCLE, now)

    def _connect(self, purpose: ConnectPurpose, now: float) -> list[Action]:
        self._pending_connect = purpose
        wait_until = self._connects.next_allowed(now)
        if wait_until is not None:
            if purpose is ConnectPurpose.RECYCLE:
                self._pending_connect, self._recycle_at = None, wait_until
                return []
            self.model_phase, self._retry_at = ModelPhase.RETRY_WAIT, wait_until
            return self._warn("model_connects_rate_limited", {"per_minute": self.options.max_connects_per_minute})
        if purpose is not ConnectPurpose.RECYCLE:
            self.model_phase = ModelPhase.CONNECTING
        return [ConnectModel(purpose)]

    # ------------------------------------------------------------ goodbyes and the end

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
        """The one way out: record every agent line not recorded yet, sum the call up, end it."""
        if self.phase is CallPhase.ENDED:
            return []
        self.phase = CallPhase.ENDED
        actions: list[Action] = []
        for item in self._playback.items.values():
            actions += self._record_agent(item)
        duration = round(now - (self.figures.stream_started_at or self._created_at), 3)
        summary = {"reason": reason, "duration_s": duration, **self.figures.summary()}
        if not_logged := self._warnings.not_logged():
            summary["warnings_not_logged"] = not_logged
        return [*actions, Log("info", "call_ended", summary), EndCall(reason, farewell, transfer_to, summary)]
