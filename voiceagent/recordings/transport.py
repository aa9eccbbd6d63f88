"""The recording tap: any caller transport, unchanged, with the audio that crosses it shown to a
``CallRecording`` (what the caller sent as it is decoded, what the agent plays as it is queued)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Coroutine
from typing import Any, Generic

from voiceagent.call.actions import ClearPlayback, PlayAudio
from voiceagent.call.inputs import CallerAudio, TransportEvent
from voiceagent.call.transport import Frame, Transport
from voiceagent.recordings.recording import CallRecording

__all__ = ["RecordingTransport"]


class RecordingTransport(Generic[Frame]):
    """A ``Transport`` decorator: ``inner`` does the work, ``recording`` sees both directions' audio."""

    def __init__(self, inner: Transport[Frame], recording: CallRecording) -> None:
        self._inner = inner
        self.recording = recording
        # passed through as they are: the tap adds nothing to reading, sending or closing
        self.receive: Callable[[], Coroutine[Any, Any, Frame]] = inner.receive
        self.flush: Callable[[], Coroutine[Any, Any, None]] = inner.flush
        self.close: Callable[[], Coroutine[Any, Any, None]] = inner.close

    @property
    def stream_id(self) -> str:
        return self._inner.stream_id

    def decode(self, frame: Frame) -> TransportEvent | None:
        event = self._inner.decode(frame)
        if isinstance(event, CallerAudio):
            self.recording.caller_audio(base64.b64decode(event.payload))
        return event

    def play(self, action: PlayAudio | ClearPlayback) -> None:
        self._inner.play(action)
        if isinstance(action, PlayAudio):
            self.recording.agent_audio(base64.b64decode(action.payload))
        else:
            self.recording.cleared()
