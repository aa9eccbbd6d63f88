"""The per-call state machine: sans-I/O, in the manner of h11, wsproto and aioquic's ``QuicConnection``.

``CallCore`` is the only class with public inputs: from the caller's transport
(``voiceagent.call.inputs``), from the model (``voiceagent.realtime.events``), from the driver (connect
results, tool results, operators) and from the clock, each with ``now``. It returns the actions to carry
out and the facts it observed (``voiceagent.call.actions``, ``voiceagent.call.observations``). It never
touches a socket or reads a clock: it says when it next wants to be woken (``next_deadline()``, the
earliest of its parts' deadlines) and does what is due in ``handle_timer(now)``.

The decisions live in parts that own their state (aioquic style): ``ModelLink`` (sessions, connect
attempts, retries, recycling), ``Closing`` (the call's phase, goodbyes, limits), ``CallerInput`` (pace,
batches, backlog), ``AgentAudio`` (playing, barge-in; accounting in ``Playback``), ``AgentTools``,
``Transcript`` and ``Responses`` (whether a response is live, when to ask for one). The core routes each
input to them and composes what they decide.

Vocabulary: a call *ends* (``EndCall``, once): ``end`` ends it at once, ``wind_down`` after a goodbye.
"""

from __future__ import annotations

import binascii
from typing import assert_never

from voiceagent.call.actions import (
    Action,
    ConnectPurpose,
    DropNewModel,
    Log,
    SendToModel,
    UseNewModel,
)
from voiceagent.call.agent_audio import AgentAudio
from voiceagent.call.agent_tools import AgentTools
from voiceagent.call.caller_input import CallerInput
from voiceagent.call.closing import Closing, Due, EndTerms, Sources, earliest
from voiceagent.call.endings import EndReason, Farewell
from voiceagent.call.figures import CallFigures
from voiceagent.call.guards import WarningLimiter
from voiceagent.call.inputs import (
    BadInput,
    CallerAudio,
    CallerHungUp,
    Digit,
    PlayedUpTo,
    StreamStarted,
    TransportEvent,
)
from voiceagent.call.keypad import KeypadEntry
from voiceagent.call.link import ModelLink
from voiceagent.call.model_events import ModelEvents
from voiceagent.call.observations import Accepted, OperatorAnswer, ReasonDropped, Refused
from voiceagent.call.options import CallOptions
from voiceagent.call.phases import CallPhase, ModelPhase
from voiceagent.call.reasons import ReasonKind
from voiceagent.call.responses import Responses
from voiceagent.call.transcript import Transcript
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

__all__ = ["CallCore", "CallOptions"]

ENDED, IN_CALL, AWAITING_STREAM = CallPhase.ENDED, CallPhase.IN_CALL, CallPhase.AWAITING_STREAM
READY = ModelPhase.READY


class CallCore:
    """The decisions of one call. Feed it inputs with ``now``; carry out the actions it returns, in order."""

    def __init__(self, options: CallOptions, *, call_sid: str, now: float) -> None:
        self.options = options
        self.call_sid = call_sid
        self.figures = CallFigures()
        warnings = self._warnings = WarningLimiter(options.warnings_per_kind)
        link = self._link = ModelLink(options, seed=call_sid, warnings=warnings)
        caller = self._caller = CallerInput(options, now)
        self._keys = KeypadEntry(options.dtmf_pause_seconds)
        responses = self._responses = Responses(options)
        transcript = Transcript(call_sid, history_chars=options.history_chars, bytes_per_ms=options.bytes_per_ms)
        self._transcript = transcript
        for line in options.earlier:
            transcript.history.add(line)
        audio = self._audio = AgentAudio(options, transcript=transcript, responses=responses, figures=self.figures)
        self._tools = AgentTools(options, transcript=transcript, responses=responses)
        sources = Sources(link, responses, audio, caller, self.figures, warnings)
        self._closing = Closing(options, now, sources)
        self._model_events = ModelEvents(
            figures=self.figures,
            closing=self._closing,
            link=link,
            caller=caller,
            responses=responses,
            audio=audio,
            transcript=transcript,
            tools=self._tools,
        )

    @property
    def phase(self) -> CallPhase:
        return self._closing.phase

    @property
    def model_phase(self) -> ModelPhase:
        return self._link.phase

    @property
    def conversation(self) -> tuple[TranscriptLine, ...]:
        """What was said so far, as a replacing session is told it (a transfer that comes back carries it)."""
        return tuple(self._transcript.history)

    @property
    def _quiet(self) -> bool:
        """Nobody is talking and nothing is being generated: a safe moment to swap model sessions."""
        responses = self._responses
        return responses.idle and not self._audio.playback.agent_audible and not self._tools.calls.running

    # ------------------------------------------------------------ lifecycle

    def start(self, now: float) -> list[Action]:
        """The call exists (webhook or stream): open the first model session."""
        return self._link.connect(ConnectPurpose.FIRST, now)

    def end(self, reason: EndReason, detail: str, now: float) -> list[Action]:
        """End the call at once (internal error, shutdown of a call nobody is on, an operator)."""
        return self._closing.end(EndTerms(reason, detail), now)

    def wind_down(self, reason: EndReason, detail: str, now: float) -> list[Action]:
        """End the call politely: the agent says goodbye (``detail`` tells it why), then the call ends, or
        at the grace deadline. At once if there is nobody to say it to, or no model to say it."""
        return self._closing.wind_down(reason, detail, now)

    # ------------------------------------------------------------ the transport (caller) side

    def transport_event(self, event: TransportEvent, now: float) -> list[Action]:
        """What the caller's transport reported. A caller frame while the session is ready is the hot path."""
        if self._closing.phase is ENDED:
            return []
        match event:
            case CallerAudio(size=size):
                self.figures.bytes_in += size
                caller = self._caller
                caller.last_audio = now
                if caller.pace is not None and not caller.pace.admit(size, now):
                    return self._too_fast(size)
                if self._link.phase is READY:
                    return self._send_caller_audio(event, now)  # the hot path: nothing else to check
                self.figures.caller_bytes_dropped += caller.keep(event)
                actions: list[Action] = []
            case PlayedUpTo(item_id=item_id, offset=offset):
                actions = self._played(item_id, offset, now)
            case StreamStarted():
                actions = self._stream_started(now)
            case CallerHungUp(detail=detail):
                return self._closing.end(EndTerms(EndReason.CALLER_HUNG_UP, detail), now)
            case Digit(digit=digit):
                actions = self._keypad(digit, now)
            case BadInput(reason=reason):
                actions = self._bad_input(reason, now)
            case _:
                assert_never(event)
        return actions + self._maybe_recycle(now)

    def _send_caller_audio(self, audio: CallerAudio, now: float) -> list[Action]:
        try:
            payload = self._caller.batch.add(audio)
        except binascii.Error:
            return self._bad_input("caller audio that is not base64", now)
        return [] if payload is None else [SendToModel(ev.AppendAudio(payload))]

    def _too_fast(self, size: int) -> list[Action]:
        self.figures.caller_bytes_dropped += size
        pace = self._caller.pace
        return self._warnings.warning("caller_audio_too_fast", {"dropped_bytes": pace.dropped if pace else size})

    def _stream_started(self, now: float) -> list[Action]:
        if not self._closing.stream_started(now):
            return self._bad_input("a second stream start", now)
        self.figures.stream_started_at = now
        self._caller.stream_started(now)
        return self._audio.stream_started(self._link.session, now)

    def _played(self, item_id: str, offset: int, now: float) -> list[Action]:
        actions = self._audio.played(item_id, offset, now)
        if actions is None:
            if self._audio.playback.forgot(item_id):
                return []  # a late report (after reports were given up on) for an item that is over
            return self._bad_input("a playback report for an unknown item", now)
        self._closing.last_activity = now
        return actions + self._closing.end_if_goodbye_heard(now)

    def _bad_input(self, reason: str, now: float) -> list[Action]:
        self.figures.bad_inputs += 1
        logged = self._warnings.warning("transport_bad_input", {"reason": reason})
        if self.figures.bad_inputs >= self.options.max_bad_inputs:
            too_many = EndTerms(EndReason.BAD_INPUT, "too many malformed messages on the media stream")
            return [*logged, *self._closing.end(too_many, now)]
        return logged

    def _keypad(self, digit: str, now: float) -> list[Action]:
        actions: list[Action] = [Log("info", "dtmf", {"key": "*"})]  # which key is the caller's secret
        if not self.options.dtmf_to_model or not self._link.ready:
            return actions
        entry = self._keys.press(digit, now)
        return [*actions, *self._transcript.key_pressed(), *self._keyed(entry, now)]

    def _keyed(self, entry: str | None, now: float) -> list[Action]:
        """A whole keypad entry: one item for the model, one answer (``KeypadEntry``)."""
        if entry is None:
            return []
        if not self._link.ready:
            return [ReasonDropped(ReasonKind.KEYPAD.value, "no model session")]
        keyed = SendToModel(ev.CreateTextItem("user", f"(The caller keyed {entry}.)"))
        return [*self._transcript.keyed(entry), keyed, *self._responses.add(ReasonKind.KEYPAD, now)]

    # ------------------------------------------------------------ the model link

    def model_connected(self, attempt: int, now: float) -> list[Action]:
        """Connect ``attempt`` opened a session: use it (configure it, and replay the conversation so far if
        it replaces another), or drop it if it was a recycle and the call is no longer quiet. Raises
        ``CallCoreError`` if that attempt is not under way."""
        purpose = self._link.answered(attempt)
        if self._closing.phase is ENDED:
            return [DropNewModel()]
        if purpose is ConnectPurpose.RECYCLE and not (self._closing.phase is IN_CALL and self._quiet):
            # swapping now would strand what is playing in a session that can no longer truncate it
            return [*self._link.recycle_deferred(now), DropNewModel()]
        dropped = self._responses.session_opened()
        self._closing.session_replaced()  # a goodbye under way is asked of the new session
        self._tools.calls.orphan_all()
        self._tools.forget_held()
        configure = self._link.opened(self._transcript.conversation(self.options.session.instructions), now)
        session = self.figures.model_sessions = self._link.session
        return [
            UseNewModel(),
            Log("info", "model_connected", {"purpose": purpose.value, "session": session}),
            *dropped,
            *configure,
        ]

    def model_connect_failed(self, attempt: int, error: str, now: float) -> list[Action]:
        """Connect ``attempt`` failed (``error``, safe to log): retry later, or give up and apologise.
        Raises ``CallCoreError`` if that attempt is not under way."""
        purpose = self._link.answered(attempt)
        if self._closing.phase is ENDED:
            return []
        if purpose is ConnectPurpose.RECYCLE:
            return self._link.recycle_failed(error, now)
        return self._failed_attempt(purpose, error, now)

    def _failed_attempt(self, purpose: ConnectPurpose, error: str, now: float) -> list[Action]:
        failed, give_up = self._link.failed(purpose, error, now)
        if give_up:
            unreachable = EndTerms(EndReason.MODEL_UNREACHABLE, "the model could not be reached", Farewell.UNAVAILABLE)
            return [failed, *self._closing.end(unreachable, now)]
        return [failed]

    def model_lost(self, code: int | None, reason: str, now: float) -> list[Action]:
        """The current model session closed (dropped, or the server's cap): open another."""
        if self._closing.phase is ENDED:
            return []
        recycling = self._link.pending is not None  # a recycle already connecting becomes the replacement
        unconfirmed, lived = self._link.lost(now)
        dropped = self._responses.session_lost()
        log = Log("warning", "model_connection_lost", {"code": code, "reason": reason, "lived_s": round(lived, 3)})
        if recycling:
            return [log, *dropped]
        if unconfirmed or lived < self.options.short_session_seconds:
            # a server that accepts and then hangs up must not be redialled in a tight loop
            why = "closed before confirming the session" if unconfirmed else f"closed after {lived:.1f} s"
            return [log, *dropped, *self._failed_attempt(ConnectPurpose.RECONNECT, why, now)]
        self._link.lived_long()
        return [log, *dropped, *self._link.connect(ConnectPurpose.RECONNECT, now)]

    def _maybe_recycle(self, now: float) -> list[Action]:
        link = self._link
        if link.recycle_at is None or now < link.recycle_at:
            return []  # the common case, checked after every input: one comparison
        if self._closing.phase is not IN_CALL or link.phase is not READY:
            return []
        if link.pending is not None or not self._quiet:
            return []
        return link.recycle(now)

    # ------------------------------------------------------------ the model's events

    def model_event(self, event: ev.ModelEvent, now: float) -> list[Action]:
        """What the model said or did (routed by ``ModelEvents``). An audio delta is the hot path."""
        if self._closing.phase is ENDED:
            return []
        if type(event) is ev.AudioDelta:  # straight to its part, without a second dispatch
            link = self._link
            stream_up = self._closing.phase is not AWAITING_STREAM
            actions = self._audio.delta(event, link.session, link.phase is READY, stream_up, now)
        else:
            actions = self._model_events.handle(event, now)
        return actions + self._maybe_recycle(now)

    # ------------------------------------------------------------ the agent's tools and the operators

    def tool_finished(self, call_id: str, output: str, now: float, *, error: str | None = None) -> list[Action]:
        """An operator's tool answered (``error``: it failed, and ``output`` says so to the model)."""
        if self._closing.phase is ENDED:
            return []
        return self._tools.finished(call_id, output, now, model_ready=self._link.ready, error=error)

    def operator_say(self, text: str, now: float) -> tuple[OperatorAnswer, list[Action]]:
        """The agent says ``text`` now (after the response under way, if any). Refused unless in call with
        a ready model."""
        if self._closing.phase is not IN_CALL or not self._link.ready:
            refused = Refused("operator_say", self._closing.phase.name.lower())
            return refused, [refused]
        said = self._responses.operator_line(text, now)  # after the caller's turn and any response live
        return Accepted(), [Log("info", "operator_say", {"chars": len(text)}), *said]

    def operator_note(self, text: str, now: float) -> tuple[OperatorAnswer, list[Action]]:
        """Context for the model, without a response. Refused unless the model is ready."""
        if not self._link.ready:
            refused = Refused("operator_note", self._link.phase.name.lower())
            return refused, [refused]
        note = SendToModel(
            ev.CreateTextItem("system", f"(A note from the human operator, not said by the caller: {text})")
        )
        self._transcript.operator_note(text)  # a replacing session is told it too
        return Accepted(), [Log("info", "operator_note", {"chars": len(text)}), note]

    def operator_transfer(self, destination: str, now: float) -> tuple[OperatorAnswer, list[Action]]:
        """Hand the caller to ``destination`` (a phone number or a SIP URI) at once."""
        detail = "an operator transferred the call"
        terms = EndTerms(EndReason.OPERATOR_TRANSFERRED, detail, Farewell.TRANSFER, destination)
        return Accepted(), self._closing.end(terms, now)

    # ------------------------------------------------------------ deadlines

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` next has something to do (monotonic seconds), or None: the earliest of the
        parts' deadlines. The driver asks after every input, so this is on the hot path: no lists."""
        closing, link = self._closing, self._link
        phase = closing.phase
        quiet = phase is IN_CALL and self._quiet
        due = closing.deadline(quiet, self.figures.stream_started_at)
        if link.phase is READY:
            due = earliest(earliest(due, self._responses.deadline()), self._keys.deadline())
        else:
            due = earliest(due, link.deadline())
        if quiet and link.pending is None:
            due = earliest(due, link.recycle_at)
        if phase is not AWAITING_STREAM and phase is not ENDED:
            due = earliest(earliest(due, self._caller.deadline()), self._audio.deadline())
        return due

    def handle_timer(self, now: float) -> list[Action]:
        """Do what is due at ``now``: dead streams and models, limits, goodbyes cut short, connect retries,
        session recycling."""
        if self._closing.phase is ENDED:
            return []
        actions: list[Action] = []
        if self._closing.phase is not AWAITING_STREAM:
            stopped = self._caller.stopped_by(now)
            if stopped is not None:
                gone = EndTerms(EndReason.STREAM_SILENT, "the media stream stopped sending audio")
                return [stopped, *self._closing.end(gone, now)]
            missing = self._audio.reports_missing_by(now)
            if missing:
                actions += missing + self._closing.end_if_goodbye_heard(now)
                if self._closing.phase is ENDED:
                    return actions  # the missing reports ended a goodbye: nothing else is due
        unanswered = self._responses.unanswered_by(now)
        if unanswered is not None:
            waited = Log("error", "model_unresponsive", {"waiting_for": unanswered})
            quiet = EndTerms(EndReason.MODEL_UNRESPONSIVE, "the model stopped answering", Farewell.UNAVAILABLE)
            return [*actions, waited, *self._closing.end(quiet, now)]
        actions += self._keyed(self._keys.paused_by(now), now) + self._responses.pump(now)
        due = self._closing.due(now, self._quiet, self.figures.stream_started_at)
        if due is not None:
            return actions + self._carry_out(due, now)
        if self._link.unconfirmed_by(now):
            unconfirmed = Log("error", "model_session_unconfirmed", {"waited_s": self.options.session_ready_seconds})
            never = EndTerms(EndReason.MODEL_UNCONFIRMED, "the model never confirmed the session", Farewell.UNAVAILABLE)
            return [*actions, unconfirmed, *self._closing.end(never, now)]
        return actions + self._link.retry_if_due(now) + self._maybe_recycle(now)

    def _carry_out(self, due: Due, now: float) -> list[Action]:
        match due.kind:
            case "end":
                return self._closing.end(EndTerms(due.reason, due.detail), now)
            case "wind_down":
                return self.wind_down(due.reason, due.detail, now)
            case "goodbye_over":
                return self._closing.end_after_goodbye(now)
            case _:
                assert_never(due.kind)
