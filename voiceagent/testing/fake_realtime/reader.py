"""The fake model as the caller's voice (``voiceagent eval --caller-voice model`` with no account): a
``FakeRealtimeServer(director=LineReader())`` that speaks the line a ``response.create`` asks it to read
verbatim (``READ_LINE``), through espeak-ng — the text-to-speech path the fake agent model speaks with.

It proves the code path a real model takes (a second Realtime session, ``response.create`` with
instructions, μ-law audio back), not the voice: the audio is espeak-ng's, or a bundled caller recording
when espeak-ng fails (``fell_back``; the transcript keeps the line's words). Anything else it is asked it
answers with silence.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from voiceagent.testing.audio import FIXTURE_TEXTS, load_fixture
from voiceagent.testing.fake_realtime.director import Plan
from voiceagent.testing.speech import Speech, SpeechUnavailable

if TYPE_CHECKING:
    from voiceagent.testing.fake_realtime.session import FakeModelSession

__all__ = ["READ_LINE", "LineReader"]

READ_LINE = "Read this line aloud, word for word, as the caller on this phone call, and nothing else: {line}"
_ASKED = re.compile(r"word for word, as the caller on this phone call, and nothing else: (.*)\Z", re.S)
_CALLER_RECORDINGS = tuple(sorted(name for name in FIXTURE_TEXTS if name.startswith("caller_")))


class LineReader:
    """Reads the asked line aloud (see the module docstring); one instance serves many sessions."""

    def __init__(self, *, speech: Speech | None = None) -> None:
        self.speech = speech if speech is not None else Speech()
        self.fell_back = False

    def hear(self, segment: bytes) -> str | None:
        return None  # a reader is sent no audio

    def plan(self, session: FakeModelSession, request: dict[str, Any] | None) -> Plan:
        instructions = ((request or {}).get("response") or {}).get("instructions")
        asked = _ASKED.search(instructions) if isinstance(instructions, str) else None
        if asked is None:
            return Plan(None, b"")
        line = asked.group(1).strip()
        try:
            return Plan(line, self.speech.ulaw(line))
        except SpeechUnavailable:
            self.fell_back = True
            return Plan(line, load_fixture(_CALLER_RECORDINGS[len(line) % len(_CALLER_RECORDINGS)]))
