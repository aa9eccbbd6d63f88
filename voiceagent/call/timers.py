"""The core's deadlines (in the manner of aioquic's ``get_timer`` / ``handle_timer``): call length,
caller silence, goodbyes cut short, pre-warm expiry, dead streams and models, connect retries and
session recycling. The driver sleeps until ``next_deadline()`` and calls ``handle_timer(now)``."""

from __future__ import annotations

from voiceagent.call.actions import Action, ConnectModel, ConnectPurpose, EndCall, Farewell, Log
from voiceagent.call.phases import GOODBYE_PHASES, CallPhase, ModelPhase
from voiceagent.call.state import CallState

__all__ = ["Timers"]


class Timers(CallState):
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
