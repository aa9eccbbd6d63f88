"""The fake caller model: a persona's side of an eval call, played by the fake Realtime server
(``FakeRealtimeServer(director=PersonaCaller(lines))``) where a real run uses a second Realtime session.

The eval runner connects to it with the service's own Realtime client, exactly as to a real model: a
``session.update`` with the persona's instructions, μ-law audio and server VAD, then the agent's audio as
heard on the phone line (silence included). The fake's server VAD hears each of the agent's turns end
and answers it, as the real service does, with the persona's next line — spoken by espeak-ng, or by the
bundled caller recordings when espeak-ng fails (``fell_back``; the transcript keeps the line's words).
Once the lines are said it answers with silence.

It cannot do more: it does not understand the agent (it answers any turn with the next line, whatever
was said), ignores the instructions, and is interrupted like any fake response when the agent talks
over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from voiceagent.testing.audio import FIXTURE_TEXTS, load_fixture
from voiceagent.testing.fake_realtime.director import Plan
from voiceagent.testing.speech import Speech, SpeechUnavailable

if TYPE_CHECKING:
    from voiceagent.testing.fake_realtime.session import FakeModelSession

__all__ = ["PersonaCaller"]

_CALLER_RECORDINGS = tuple(sorted(name for name in FIXTURE_TEXTS if name.startswith("caller_")))


class PersonaCaller:
    """The persona's lines, said one per answer in each session (one instance serves many at once)."""

    def __init__(self, lines: tuple[str, ...], *, speech: Speech | None = None) -> None:
        self.lines = lines
        self.speech = speech if speech is not None else Speech()
        self.fell_back = False

    def hear(self, segment: bytes) -> str | None:
        """The agent's words are not known to the caller side: it reacts to turns, not to words."""
        return None

    def plan(self, session: FakeModelSession, request: dict[str, Any] | None) -> Plan:
        said = sum(1 for response in session.responses if response.text)
        if said >= len(self.lines):
            return Plan(None, b"")
        line = self.lines[said]
        try:
            return Plan(line, self.speech.ulaw(line))
        except SpeechUnavailable:
            self.fell_back = True
            return Plan(line, load_fixture(_CALLER_RECORDINGS[said % len(_CALLER_RECORDINGS)]))
