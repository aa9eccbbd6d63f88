"""What a call may do and how patient it is: the core's options (the service builds them from the settings)."""

from __future__ import annotations

from dataclasses import dataclass, field

from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

__all__ = ["CallOptions"]


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
    history_chars: int = 16_000  # the conversation a replacing session is told: its latest this many characters
    caller_audio_batch_ms: int = 0  # caller audio sent to the model in chunks of at least this (0: as it comes)
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
    earlier: tuple[TranscriptLine, ...] = ()  # the conversation so far (a call back from a transfer nobody took)
    dtmf_pause_seconds: float = 2.0  # a keypad entry ends at ``#``, after this pause, or at its length cap
    response_done_seconds: float | None = None  # a response created and not done by then: the model is stuck
    response_retry_seconds: float = 1.0  # a failed response is asked again after this (or the server's hint)
