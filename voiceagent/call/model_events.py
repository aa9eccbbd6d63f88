"""The model's events, routed to the parts of the call core that act on them: agent audio and words
(``AgentAudio``), the caller's turns (barge-in, transcripts), responses (``Responses``, tool calls) and the
session itself (``ModelLink``). ``CallCore.model_event`` is the input; the audio delta, its hot path, goes
straight to ``AgentAudio`` from there."""

from __future__ import annotations

from typing import assert_never

from voiceagent.call.actions import Action, Log, LogLevel
from voiceagent.call.agent_audio import AgentAudio
from voiceagent.call.agent_tools import AgentTools, Closes
from voiceagent.call.caller_input import CallerInput
from voiceagent.call.closing import Closing, EndTerms
from voiceagent.call.endings import EndReason, Farewell
from voiceagent.call.figures import CallFigures
from voiceagent.call.link import ModelLink
from voiceagent.call.observations import AgentClosing
from voiceagent.call.phases import CallPhase, ModelPhase
from voiceagent.call.responses import Responses
from voiceagent.call.transcript import Transcript
from voiceagent.realtime import events as ev

__all__ = ["UNINTELLIGIBLE", "ModelEvents"]

UNINTELLIGIBLE = "(unintelligible)"  # a caller turn whose transcription failed
REFUSED_RESPONSE = "conversation_already_has_active_response"


class ModelEvents:
    """Routes each model event; owns no state of its own (the parts do)."""

    def __init__(
        self,
        *,
        figures: CallFigures,
        closing: Closing,
        link: ModelLink,
        caller: CallerInput,
        responses: Responses,
        audio: AgentAudio,
        transcript: Transcript,
        tools: AgentTools,
    ) -> None:
        self.figures = figures
        self._closing, self._link, self._caller = closing, link, caller
        self._responses, self._audio, self._transcript, self._tools = responses, audio, transcript, tools

    def handle(self, event: ev.ModelEvent, now: float) -> list[Action]:
        match event:
            case ev.AudioDelta():
                link = self._link
                stream_up = self._closing.phase is not CallPhase.AWAITING_STREAM
                return self._audio.delta(event, link.session, link.phase is ModelPhase.READY, stream_up, now)
            case ev.AgentTranscriptDelta() | ev.AudioDone() | ev.AgentTranscriptDone():
                return self._agent_item(event)
            case ev.SpeechStarted() | ev.SpeechStopped() | ev.CallerTranscript() | ev.CallerTranscriptFailed():
                return self._caller_turn(event, now)
            case ev.ResponseCreated() | ev.ResponseDone() | ev.TextDelta() | ev.FunctionCall():
                return self._response(event, now)
            case ev.SessionRejected() | ev.SessionUpdated() | ev.ModelError() | ev.Ignored():
                return self._session(event, now)
            case _:
                assert_never(event)

    def _agent_item(self, event: ev.AgentTranscriptDelta | ev.AudioDone | ev.AgentTranscriptDone) -> list[Action]:
        session = self._link.session
        match event:
            case ev.AgentTranscriptDelta(item_id=item_id, delta=delta):
                self._audio.words(item_id, delta, session)
                return []
            case ev.AudioDone(response_id=response_id, item_id=item_id):
                return self._audio.audio_done(item_id, response_id, session)
            case ev.AgentTranscriptDone(item_id=item_id, transcript=transcript):
                return self._audio.words_done(item_id, transcript, session)
            case _:
                assert_never(event)

    def _caller_turn(
        self, event: ev.SpeechStarted | ev.SpeechStopped | ev.CallerTranscript | ev.CallerTranscriptFailed, now: float
    ) -> list[Action]:
        match event:
            case ev.SpeechStarted():
                return self._barge_in(now)
            case ev.SpeechStopped():
                self._responses.speech_stopped(now)
                self._closing.last_activity = self.figures.caller_stopped_at = now
                return []
            case ev.CallerTranscript(transcript=transcript):
                return self._transcript.caller_said(transcript.strip())
            case ev.CallerTranscriptFailed(message=message):
                self.figures.transcription_failures += 1
                failed = Log("warning", "caller_transcription_failed", {"error": message})
                return [failed, *self._transcript.caller_said(UNINTELLIGIBLE)]
            case _:
                assert_never(event)

    def _barge_in(self, now: float) -> list[Action]:
        """The caller speaks: stop the agent at once (``AgentAudio.barge_in``) and any live response."""
        self._responses.speech_started()
        self._closing.last_activity = now
        self.figures.caller_stopped_at = None
        stream_up = self._closing.phase is not CallPhase.AWAITING_STREAM
        actions = self._audio.barge_in(self._link.session, stream_up=stream_up, now=now)
        # talking over a finished goodbye: nothing left to hear
        return actions + self._responses.barge_in() + self._closing.end_if_goodbye_heard(now)

    def _response(
        self, event: ev.ResponseCreated | ev.ResponseDone | ev.TextDelta | ev.FunctionCall, now: float
    ) -> list[Action]:
        match event:
            case ev.ResponseCreated(response_id=response_id):
                answered, closing_words = self._responses.created(response_id, now)
                self._closing.response_started(closing_words)
                return answered
            case ev.ResponseDone():
                return self._response_done(event, now)
            case ev.TextDelta(response_id=response_id, delta=delta):
                self._responses.text_delta(response_id, delta)
                return []
            case ev.FunctionCall():
                self._tools.called(event)  # carried out once its response has completed
                return []
            case _:
                assert_never(event)

    def _response_done(self, event: ev.ResponseDone, now: float) -> list[Action]:
        """The response ended: its function calls carried out (if it completed), the closing words or the
        next reason asked for, a failed one asked again or the call ended with the apology."""
        response_id, link, responses = event.response_id, self._link, self._responses
        said = response_id in responses.with_audio
        handled, give_up = responses.done(response_id, event.status, event.detail, now)
        self.figures.add_usage(event.usage)
        facts = {"status": event.status, "usage": event.usage} | ({"detail": event.detail} if event.detail else {})
        level: LogLevel = "warning" if event.status in ("failed", "incomplete") else "info"
        actions: list[Action] = [Log(level, "response_done", facts), *handled]
        if give_up:
            failed = EndTerms(EndReason.MODEL_FAILED, "the model failed to answer", Farewell.UNAVAILABLE)
            return actions + self._closing.end(failed, now)
        actions += responses.answered_in_text(response_id, link.session_config, now)
        actions += self._audio.response_done(response_id, link.session)
        decided = self._tools.response_done(response_id, event.status, now, model_ready=link.ready)
        if isinstance(decided, Closes):
            actions += self._agent_closes(decided, now, said=said)
        else:
            actions += decided
        actions += self._closing.say_goodbye(now) + responses.pump(now)
        return actions + self._closing.end_if_goodbye_heard(now)

    def _session(
        self, event: ev.SessionRejected | ev.SessionUpdated | ev.ModelError | ev.Ignored, now: float
    ) -> list[Action]:
        match event:
            case ev.SessionRejected(code=code, message=message):
                rejected = Log("error", "model_session_rejected", {"code": code, "message": message})
                detail = f"the model refused the session: {message}"
                return [
                    rejected,
                    *self._closing.end(EndTerms(EndReason.MODEL_REFUSED, detail, Farewell.UNAVAILABLE), now),
                ]
            case ev.SessionUpdated():
                return self._session_updated(event, now)
            case ev.ModelError(code=code, message=message) if code == REFUSED_RESPONSE:
                return self._responses.refused(message, now)  # by construction a bug of ours
            case ev.ModelError(code=code, message=message, routine=routine):
                # logged, never fatal: a session that is really gone closes its socket
                return [Log("warning" if routine else "error", "model_error", {"code": code, "message": message})]
            case ev.Ignored():
                return []
            case _:
                assert_never(event)

    def _session_updated(self, event: ev.SessionUpdated, now: float) -> list[Action]:
        if event.input_format != ev.PCMU or event.output_format != ev.PCMU:
            formats = {"input_format": event.input_format, "output_format": event.output_format}
            detail = f"the model will not use μ-law (input {event.input_format}, output {event.output_format})"
            refused = Log("error", "model_audio_format_refused", formats)
            return [refused, *self._closing.end(EndTerms(EndReason.MODEL_AUDIO_FORMAT, detail), now)]
        if not self._link.confirmed():
            return []
        session = self._link.session
        actions: list[Action] = [Log("info", "model_session_ready", {"session": session}), *self._caller.deliver()]
        actions += self._responses.greet(session, now) + self._closing.say_goodbye(now)
        return actions + self._responses.session_ready(now)

    def _agent_closes(self, closes: Closes, now: float, *, said: bool) -> list[Action]:
        """The model hung up or transferred: its closing words (asked for, if it said none) are heard in
        full, then the call ends."""
        asked = self._closing.agent_closes(closes.end, now, said=said)
        if asked is None:
            return []
        return [AgentClosing(closes.end.farewell), *self._transcript.tool_line(closes.line), *asked]
