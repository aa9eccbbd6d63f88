"""A fake model that follows the operator's configuration, so trying a prompt, tools and ``say`` text
without an account is honest (``FakeRealtimeServer(director=ConfiguredModel(...))``).

Without a director the fake speaks the bundled bistro recordings whatever it is asked. With one:

* it speaks what it is asked to say exactly — the greeting and the operator's ``say`` text, which the
  service sends as response instructions (``voiceagent.prompts``, ``AgentActs.operator_say``) — and a
  short goodbye when the call is ending, through espeak-ng (``voiceagent.testing.speech``); without
  espeak-ng it falls back to the bundled recordings (``fell_back`` says so) and its transcript still
  carries the configured words;
* it "hears" the caller's words: whoever plays the caller tells it, out of band, what each piece of
  audio said (``register``); a committed turn containing that audio is heard as those words (and
  transcribed so). Keypad presses arrive as text items and are read as they are;
* it answers a caller turn by the first ``Rule`` whose pattern the words match: optional words said
  first, then a function call with fixed arguments. No rule matches: it says ``fallback_reply``;
* after a function's output it speaks the result (``speak_result``).

It cannot do more than that: no language understanding, no arguments taken from what was said, no
following the prompt's instructions beyond the exact words it is given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from voiceagent.testing.audio import FIXTURE_TEXTS, FRAME_BYTES, load_fixture, rms_dbfs
from voiceagent.testing.fake_realtime.script import ScriptedCall
from voiceagent.testing.speech import Speech, SpeechUnavailable

if TYPE_CHECKING:
    from voiceagent.testing.fake_realtime.session import FakeModelSession

__all__ = ["ConfiguredModel", "Director", "Plan", "Rule", "speak_result"]

# how the service asks for exact words: the greeting (prompts.greeting_instructions) and an operator's say
_EXACT = re.compile(r"(?:saying exactly this|Say exactly this to the caller now), and nothing else: (.*)\Z", re.S)
_ENDING = "The call is ending now"
GOODBYE = "Thank you for calling. Goodbye."
_SIGNATURE_FRAMES = 8
_HEARD_FRACTION = 0.5


@dataclass(frozen=True)
class Rule:
    """When the caller's words match ``when`` (a regular expression, case-insensitive): say ``say`` (if
    any), then call ``call`` (if any) with ``arguments``."""

    when: str
    call: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    say: str | None = None

    def matches(self, words: str) -> bool:
        return re.search(self.when, words, re.IGNORECASE) is not None


@dataclass(frozen=True)
class Plan:
    """What one response does: say ``text`` (``audio``: μ-law 8 kHz; ``text`` None: say nothing), then
    make ``calls``."""

    text: str | None
    audio: bytes
    calls: tuple[ScriptedCall, ...] = ()


class Director(Protocol):
    """What a fake model follows instead of the bundled recordings: the agent's side (``ConfiguredModel``)
    or a caller's (``persona.PersonaCaller``)."""

    fell_back: bool  # espeak-ng failed: a bundled recording stood in for some words

    def hear(self, segment: bytes) -> str | None:
        """The words of a committed input segment, if the director knows them."""
        ...

    def plan(self, session: FakeModelSession, request: dict[str, Any] | None) -> Plan:
        """What the response about to start does (``request``: the ``response.create``, None for the
        server's own response at the end of a turn)."""
        ...


def speak_result(output: str) -> str:
    """A function's output as a sentence: its ``message`` (or ``say``) if it has one, else its fields."""
    try:
        value = json.loads(output)
    except ValueError:
        return output[:300]
    if isinstance(value, dict):
        for key in ("message", "say", "result", "error"):
            if isinstance(value.get(key), str):
                return str(value[key])[:300]
        return "; ".join(f"{key.replace('_', ' ')}: {_plain(item)}" for key, item in value.items())[:300]
    return _plain(value)[:300]


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_plain(item) for item in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{key} {_plain(item)}" for key, item in value.items())
    return str(value)


class ConfiguredModel:
    """The director of a fake model's responses (see the module docstring). One may serve many sessions
    at once: it keeps only what it was told (utterances) and what it spoke (for ``fell_back``)."""

    def __init__(
        self,
        rules: tuple[Rule, ...] = (),
        *,
        speech: Speech | None = None,
        fallback_reply: str = "Sorry, I did not understand that. Could you say it again?",
    ) -> None:
        self.rules = rules
        self.speech = speech if speech is not None else Speech()
        self.fallback_reply = fallback_reply
        self.fell_back = False  # espeak-ng was missing: a bundled recording stood in for some words
        self._utterances: list[tuple[tuple[bytes, ...], str]] = []

    # -------------------------------------------------------------- hearing

    def register(self, audio: bytes, words: str) -> None:
        """Out of band: ``audio`` (μ-law, as the caller will send it) says ``words``."""
        loud = [
            audio[i : i + FRAME_BYTES]
            for i in range(0, len(audio) - FRAME_BYTES + 1, FRAME_BYTES)
            if rms_dbfs(audio[i : i + FRAME_BYTES]) >= -40 and len(set(audio[i : i + FRAME_BYTES])) > 16
        ]
        step = max(1, len(loud) // _SIGNATURE_FRAMES)
        signature = tuple(loud[::step][:_SIGNATURE_FRAMES])
        if signature and all(known != signature for known, _ in self._utterances):
            self._utterances.append((signature, words))

    def hear(self, segment: bytes) -> str | None:
        """The words of the registered utterances in ``segment``, in order; None if it holds none."""
        data = bytes(segment)
        found: list[tuple[int, str]] = []
        for signature, words in self._utterances:
            positions = [pos for pos in (data.find(frame) for frame in signature) if pos >= 0]
            if len(positions) >= _HEARD_FRACTION * len(signature):
                found.append((min(positions), words))
        return " ".join(words for _, words in sorted(found)) if found else None

    # -------------------------------------------------------------- responding

    def plan(self, session: FakeModelSession, request: dict[str, Any] | None) -> Plan:
        """What the response about to start does, given the client's ``response.create`` (None: the
        server's own response at the end of a caller turn)."""
        instructions = ((request or {}).get("response") or {}).get("instructions")
        if isinstance(instructions, str):
            exact = _EXACT.search(instructions)
            if exact is not None:
                return self._say(exact.group(1).strip(), "agent_greeting")
            if _ENDING in instructions:
                return self._say(GOODBYE, "agent_goodbye")
        items = session.conversation
        last = items[-1] if items else {}
        if last.get("type") == "function_call_output":
            return self._say(speak_result(str(last.get("output", ""))), "agent_reply_long")
        words = self._words_of(session, last)
        for rule in self.rules:
            if rule.matches(words):
                calls = (ScriptedCall(rule.call, json.dumps(rule.arguments)),) if rule.call else ()
                said = self._say(rule.say, "agent_reply_long") if rule.say else Plan(None, b"")
                return Plan(said.text, said.audio, calls)
        return self._say(self.fallback_reply, "agent_reply_long")

    @staticmethod
    def _words_of(session: FakeModelSession, item: dict[str, Any]) -> str:
        if item.get("role") != "user":
            return ""
        heard = session.heard_words.get(str(item.get("id")))
        if heard is not None:
            return heard
        parts = item.get("content") or []
        return " ".join(str(part.get("text") or part.get("transcript") or "") for part in parts).strip()

    def _say(self, text: str, fallback: str) -> Plan:
        try:
            return Plan(text, self.speech.ulaw(text))
        except SpeechUnavailable:
            self.fell_back = True
            return Plan(text, load_fixture(fallback if FIXTURE_TEXTS.get(fallback) else "agent_reply_long"))
