"""The caller's audio on its way to the model: paced (a stream far faster than real time is dropped),
batched into fewer appends, held (bounded) while no session is ready, and watched: a stream that stops
sending is dead. Time is an argument.

The hot path (a caller frame while the session is ready) reads ``pace`` and ``batch`` and sets
``last_audio`` straight from ``CallCore.transport_event``: no method call of this part's own in between.
"""

from __future__ import annotations

from voiceagent.call.actions import Action, Log, SendToModel
from voiceagent.call.guards import CallerAudioBatch, CallerBacklog, CallerPace
from voiceagent.call.inputs import CallerAudio
from voiceagent.call.options import CallOptions
from voiceagent.realtime import events as ev

__all__ = ["CallerInput"]


class CallerInput:
    def __init__(self, options: CallOptions, now: float) -> None:
        bytes_per_ms = options.bytes_per_ms
        self.batch = CallerAudioBatch(options.caller_audio_batch_ms * bytes_per_ms)
        pace = options.caller_audio_pace
        self.pace = None if pace is None else CallerPace(pace, bytes_per_ms, now)
        self.last_audio = now
        self._bytes_per_ms = bytes_per_ms
        self._silence = options.stream_silence_seconds
        self._backlog = CallerBacklog(int(options.caller_backlog_seconds * 1000 * bytes_per_ms))

    def stream_started(self, now: float) -> None:
        self.last_audio = now
        if self.pace is not None:
            self.pace.restart(now)

    def keep(self, audio: CallerAudio) -> int:
        """No session is ready (connecting, configuring, reconnecting): hold the audio; the bytes dropped."""
        return self._backlog.keep(audio)

    def deliver(self) -> list[Action]:
        """The session is ready: what the caller said meanwhile goes to it, in order."""
        dropped_ms = self._backlog.dropped // self._bytes_per_ms
        gathered = self.batch.take()  # the part-filled batch from before the session was lost comes first
        earlier = [] if gathered is None else [gathered]
        payloads = earlier + [audio.payload for audio in self._backlog.take()]
        actions: list[Action] = [SendToModel(ev.AppendAudio(payload)) for payload in payloads]
        if dropped_ms:
            actions.append(Log("warning", "caller_audio_dropped", {"ms": dropped_ms, "reason": "backlog full"}))
        return actions

    def last_words(self) -> list[Action]:
        """The part-filled batch, sent as the call ends."""
        gathered = self.batch.take()
        return [] if gathered is None else [SendToModel(ev.AppendAudio(gathered))]

    def deadline(self) -> float | None:
        return None if self._silence is None else self.last_audio + self._silence

    def stopped_by(self, now: float) -> Log | None:
        """The stream stopped sending audio by ``now``: its warning, else None."""
        if self._silence is None or now < self.last_audio + self._silence:
            return None
        return Log("warning", "stream_stopped_sending", {"silent_s": round(now - self.last_audio, 3)})
