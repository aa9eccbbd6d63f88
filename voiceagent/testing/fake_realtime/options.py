"""The knobs of the fake Realtime server, shared by all its sessions: what it says, how fast, and how
the real service misbehaves (see ``server`` for each; docs/protocol.md §2).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from voiceagent.testing.fake_realtime.director import Director
from voiceagent.testing.fake_realtime.outcomes import Outcome
from voiceagent.testing.fake_realtime.script import TurnScript


@dataclass(frozen=True)
class SessionOptions:
    """How the fake behaves; set on ``FakeRealtimeServer`` and shared by its sessions."""

    delta_ms: tuple[int, int] = (40, 240)  # audio delta lengths: drawn at random in this range (seeded)
    speed: float = 4.0
    greeting: str = "agent_greeting"
    replies: tuple[str, ...] = ("agent_reply_long", "agent_goodbye")
    speech_dbfs: float = -38.0
    ignore_audio_format: bool = False
    session_max_seconds: float | None = None
    seed: int = 0
    voices: tuple[str, ...] | None = None  # the voices the deployment offers (None: the dialect's own list)
    confirm_session: bool = True  # False: a session.update is never answered with session.updated
    fail_transcription: bool = False  # caller turns get input_audio_transcription.failed
    text_after_assistant_text: bool = False  # assistant text items switch the session to text answers
    function_calls: Mapping[str, TurnScript] = field(default_factory=dict)  # caller fixture -> what answers it
    # The real service's timing and rules (docs/protocol.md §2, "### Responses: one at a time"), in its ms
    # (divided by ``speed`` like the audio): request or end of turn -> response.created; response.done ->
    # rate_limits.updated; between two pieces of a function call's arguments.
    response_delay_ms: float = 150.0
    rate_limits_delay_ms: float = 40.0
    argument_delta_ms: float = 50.0
    # The silence that ends a turn for the fake's energy VAD when the client leaves silence_duration_ms to
    # the service (which reports 200 ms): the bundled caller fixtures pause up to 340 ms mid-sentence, and
    # tests want whole utterances. None: listen with the reported default, as the service does.
    heard_silence_ms: int | None = 500
    refuse_overlap: bool = True  # False: an overlapping response.create is held until the active one is done
    outcomes: tuple[Outcome, ...] = ()  # each new session's first responses fail / end incomplete, in order
    director: Director | None = None  # follows the operator's configuration instead of the fixtures
