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

import binascii
from dataclasses import replace
from typing import assert_never

from voiceagent.audio import b64_decoded_length
from voiceagent.call.actions import (
    Action,
    ClearPlayback,
    ConnectPurpose,
    DropNewModel,
    Farewell,
    Log,
    PlayAudio,
    SendToModel,
    UseNewModel,
)
from voiceagent.call.acts import AgentActs
from voiceagent.call.inputs import (
    BadInput,
    CallerAudio,
    CallerHungUp,
    Digit,
    PlayedUpTo,
    StreamStarted,
    TransportEvent,
)
from voiceagent.call.options import CallOptions
from voiceagent.call.phases import CallPhase, ModelPhase
from voiceagent.call.playback import AgentItem
from voiceagent.call.timers import Timers
from voiceagent.prompts import conversation_so_far, greeting_instructions
from voiceagent.realtime import events as ev

__all__ = ["CallCore", "CallOptions"]

UNINTELLIGIBLE = "(unintelligible)"  # a caller turn whose transcription failed


class CallCore(AgentActs, Timers):
    """The decisions of one call. Feed it inputs with ``now``; carry out the actions it returns, in order."""

    # ------------------------------------------------------------ lifecycle

    def start(self, now: float) -> list[Action]:
        """The call exists (webhook or stream): open the first model session."""
        return self._connect(ConnectPurpose.FIRST, now)

    def hang_up(self, reason: str, now: float) -> list[Action]:
        """End the call at once (internal error, shutdown of a call nobody is on, an operator)."""
        return self._end(reason, now)

    # ------------------------------------------------------------ the transport (caller) side

    def transport_event(self, event: TransportEvent, now: float) -> list[Action]:
        if self.phase is CallPhase.ENDED:
            return []
        match event:
            case CallerAudio(size=size):
                self.figures.bytes_in += size
                self._last_caller_audio = now
                if self._pace is not None and not self._pace.admit(size, now):
                    self.figures.caller_bytes_dropped += size
                    return self._warn("caller_audio_too_fast", {"dropped_bytes": self._pace.dropped})
                if self.model_phase is ModelPhase.READY:
                    return self._send_caller_audio(event, now)  # the hot path: nothing else to check
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

    def _send_caller_audio(self, audio: CallerAudio, now: float) -> list[Action]:
        try:
            payload = self._batch.add(audio)
        except binascii.Error:
            return self._bad_input("caller audio that is not base64", now)
        return [] if payload is None else [SendToModel(ev.AppendAudio(payload))]

    def _keep_for_later(self, audio: CallerAudio) -> list[Action]:
        """No session is ready (connecting, configuring, reconnecting): hold the caller's audio, bounded."""
        self.figures.caller_bytes_dropped += self._backlog.keep(audio)
        return []

    def _deliver_backlog(self) -> list[Action]:
        """The session is ready: what the caller said meanwhile goes to it, in order."""
        dropped_ms = self._backlog.dropped // self.options.bytes_per_ms
        gathered = self._batch.take()  # the part-filled batch from before the session was lost comes first
        earlier = [] if gathered is None else [gathered]
        payloads = earlier + [audio.payload for audio in self._backlog.take()]
        actions: list[Action] = [SendToModel(ev.AppendAudio(payload)) for payload in payloads]
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
            item = self._playback.item(item_id, self._session)
            if not item.truncated:  # cut before the caller could hear any of it: nothing to play
                actions += self._play(item, payload, now)
        return actions

    def _played(self, item_id: str, offset: int, now: float) -> list[Action]:
        item = self._playback.items.get(item_id)
        if item is None:
            if self._playback.forgot(item_id):
                return []  # a late report (after reports were given up on) for an item that is over
            return self._bad_input("a playback report for an unknown item", now)
        self._playback.played(item, offset, now)
        self._last_activity = now
        actions = self._maybe_record(item)
        self._playback.forget_if_over(item)
        return actions + self._maybe_hang_up(now)

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
        said = conversation_so_far(prompt, self._history, left_out=self._history.left_out)
        self._session_config = replace(self.options.session, instructions=said)
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
            item = self._playback.item(item_id, self._session)
            item.audio_done = item.text_done = True
            actions += self._maybe_record(item)
            self._playback.forget_if_over(item)
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
