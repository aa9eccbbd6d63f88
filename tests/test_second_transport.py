"""The call core is transport-neutral: a second, minimal transport drives a whole call through it.

The transport here is a "PCM playback clock": 16-bit 16 kHz audio (32 bytes per ms), played at exactly
that rate of injected time, with no marks and no wire at all. It reports how far the caller has heard
an item whenever it likes (``PlayedUpTo(item, offset)`` at any byte, not at chunk ends), and forgets what
is queued on ``ClearPlayback``. Nothing of Twilio is involved; and the core's modules import nothing of
Twilio either (checked on their source).
"""

from __future__ import annotations

import ast
import base64
from collections import deque
from pathlib import Path

import pytest
from core_helpers import CALL, Clock, b64, commands, of

import voiceagent
from voiceagent.call import (
    CallCore,
    CallerAudio,
    CallerHungUp,
    CallOptions,
    ClearPlayback,
    ConnectModel,
    ConnectPurpose,
    EndCall,
    PlayAudio,
    PlayedUpTo,
    RecordLine,
    StreamStarted,
)
from voiceagent.call.actions import Action
from voiceagent.prompts import greeting_instructions
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

BYTES_PER_MS = 32  # 16-bit samples at 16 kHz
GREETING = "Welcome to the bistro"


class PcmPlaybackClock:
    """A transport that plays what it is given at 32 bytes per ms of injected time, and says so."""

    def __init__(self, now: float) -> None:
        self._queue: deque[list[str | int]] = deque()  # [item, bytes of this chunk still to play]
        self._last = now
        self.heard: dict[str, int] = {}  # item -> bytes the caller heard: the ground truth
        self.current: str | None = None  # the item at the playhead (or last heard)
        self.received: list[PlayAudio] = []

    def carry_out(self, actions: list[Action], now: float) -> None:
        self.advance(now)
        for action in actions:
            if isinstance(action, PlayAudio):
                self.received.append(action)
                self._queue.append([action.item_id, len(base64.b64decode(action.payload, validate=True))])
            elif isinstance(action, ClearPlayback):
                self._queue.clear()

    def advance(self, now: float) -> None:
        assert now >= self._last, "time only moves forward"
        budget = round((now - self._last) * 1000 * BYTES_PER_MS)
        self._last = now
        while budget > 0 and self._queue:
            chunk = self._queue[0]
            item, left = str(chunk[0]), int(chunk[1])
            step = min(left, budget)
            self.heard[item] = self.heard.get(item, 0) + step
            self.current = item
            budget -= step
            if step == left:
                self._queue.popleft()
            else:
                chunk[1] = left - step

    def report(self, now: float) -> PlayedUpTo:
        """How far the caller has heard the item at the playhead, to the byte."""
        self.advance(now)
        assert self.current is not None
        return PlayedUpTo(self.current, self.heard[self.current])

    @property
    def idle(self) -> bool:
        return not self._queue


class Call:
    """The core and the PCM transport, with an injected clock in seconds."""

    def __init__(self, options: CallOptions) -> None:
        self.clock = Clock()
        self.core = CallCore(options, call_sid=CALL, now=self.clock.now)
        self.transport = PcmPlaybackClock(self.clock.now)
        self.lines: list[TranscriptLine] = []
        self.last_report: PlayedUpTo | None = None

    def at(self, seconds_later: float) -> float:
        return self.clock.tick(seconds_later)

    def model(self, event: ev.ModelEvent, seconds_later: float = 0.001) -> list[Action]:
        now = self.at(seconds_later)
        return self._carry_out(self.core.model_event(event, now), now)

    def transport_event(self, event, seconds_later: float = 0.001) -> list[Action]:
        now = self.at(seconds_later)
        return self._carry_out(self.core.transport_event(event, now), now)

    def heard_so_far(self, seconds_later: float) -> list[Action]:
        now = self.at(seconds_later)
        self.last_report = self.transport.report(now)
        return self._carry_out(self.core.transport_event(self.last_report, now), now)

    def _carry_out(self, actions: list[Action], now: float) -> list[Action]:
        self.transport.carry_out(actions, now)
        self.lines += [action.line for action in of(actions, RecordLine)]
        return actions


def pcm(ms: int, fill: int = 0x10) -> str:
    return b64(ms * BYTES_PER_MS, fill)


def ready_call() -> Call:
    call = Call(CallOptions(greeting=GREETING, bytes_per_ms=BYTES_PER_MS))
    core, now = call.core, call.clock.now
    assert core.start(call.at(0.001)) == [ConnectModel(ConnectPurpose.FIRST)]
    assert commands(core.model_connected(call.at(0.05))) == [ev.UpdateSession(core.options.session)]
    # The core knows the model side only as "μ-law confirmed" (see the report on this file's commit).
    ready = core.model_event(ev.SessionUpdated(ev.PCMU, ev.PCMU), call.at(0.05))
    assert commands(ready) == [ev.CreateResponse(greeting_instructions(GREETING))]
    assert call.clock.now > now
    return call


def test_a_whole_call_over_a_pcm_playback_clock():
    call = ready_call()
    greeting = ("resp_greeting", "item_greeting")

    # the greeting starts before the caller's stream is up: held, then flushed untouched
    call.model(ev.ResponseCreated(greeting[0]))
    first = pcm(300, 0x01)
    assert call.model(ev.AudioDelta(*greeting, first)) == []
    flushed = call.transport_event(StreamStarted(), seconds_later=0.2)
    assert of(flushed, PlayAudio) == [PlayAudio("item_greeting", first, 300 * BYTES_PER_MS)]
    for ms, fill in ((500, 0x02), (200, 0x03)):
        call.model(ev.AudioDelta(*greeting, pcm(ms, fill)))
    call.model(ev.AgentTranscriptDelta("item_greeting", GREETING))
    call.model(ev.AudioDone(*greeting))
    call.model(ev.AgentTranscriptDone("item_greeting", GREETING))
    call.model(ev.ResponseDone(greeting[0], "completed"))
    assert [play.end for play in call.transport.received] == [9600, 25600, 32000]  # one second of audio
    assert call.lines == [], "nothing is recorded before it was heard"

    # progress reports at arbitrary bytes, none of them a chunk end
    mid = call.heard_so_far(0.4113)
    assert call.transport.heard["item_greeting"] not in (9600, 25600, 32000)
    assert not of(mid, RecordLine) and call.lines == []
    assert not of(call.heard_so_far(0.3), RecordLine)
    done = call.heard_so_far(1.0)  # well past the end: the greeting has been heard in full
    assert call.transport.heard["item_greeting"] == 32000 and call.transport.idle
    assert [action.line for action in of(done, RecordLine)] == [TranscriptLine(CALL, "agent", GREETING)]

    # the caller answers; audio passes through untouched
    caller = pcm(20, 0x7E)
    assert commands(call.transport_event(CallerAudio(caller, 20 * BYTES_PER_MS))) == [ev.AppendAudio(caller)]
    assert call.model(ev.SpeechStarted("item_caller", 1000)) == [], "nothing unplayed: no clear, no truncate"
    call.model(ev.SpeechStopped("item_caller", 1800), seconds_later=0.8)
    call.model(ev.CallerTranscript("item_caller", " A table for two, please. "))
    assert call.lines[-1] == TranscriptLine(CALL, "caller", "A table for two, please.")

    # the answer: three chunks (100, 200, 100 ms); the caller barges in 137.4 ms into it
    answer = ("resp_answer", "item_answer")
    call.model(ev.ResponseCreated(answer[0]))
    call.model(ev.AgentTranscriptDelta("item_answer", "Certainly, for what time would"))
    for ms in (100, 200, 100):
        call.model(ev.AudioDelta(*answer, pcm(ms, 0x20)), seconds_later=0.0001)
    assert not of(call.heard_so_far(0.1374 - 0.0002), RecordLine)  # 137.4 ms after the first chunk began
    heard = call.transport.heard["item_answer"]
    assert call.last_report == PlayedUpTo("item_answer", heard)
    assert 137 * BYTES_PER_MS < heard < 138 * BYTES_PER_MS and heard % BYTES_PER_MS != 0
    barge_in = call.model(ev.SpeechStarted("item_caller_2", 3000), seconds_later=0.00001)  # 0.3 bytes later
    heard_ms = heard // BYTES_PER_MS
    assert heard_ms == 137
    assert of(barge_in, ClearPlayback) == [ClearPlayback()]
    assert commands(barge_in) == [ev.Truncate("item_answer", heard_ms)]
    [line] = [action.line for action in of(barge_in, RecordLine)]
    assert line == TranscriptLine(CALL, "agent", "Certainly, for what time would", True, heard_ms)
    assert call.transport.idle, "the transport dropped what was queued"

    # late deltas of the truncated item are dropped; the caller hears nothing more of it
    assert call.model(ev.AudioDelta(*answer, pcm(100, 0x21))) == []
    call.model(ev.ResponseDone(answer[0], "cancelled"))
    call.heard_so_far(0.5)
    assert call.transport.heard["item_answer"] == heard
    assert [play.item_id for play in call.transport.received].count("item_answer") == 3

    ended = call.transport_event(CallerHungUp())
    assert of(ended, EndCall) == [EndCall("caller hung up")]
    assert [(line.role, line.interrupted) for line in call.lines] == [
        ("agent", False),
        ("caller", False),
        ("agent", True),
    ]


@pytest.mark.parametrize("offset", [1, 31, 32, 33, 1000, 3199, 3200, 3201, 6399, 12799])
def test_the_truncate_is_the_reported_offset_in_the_transport_own_ms(offset):
    call = ready_call()
    call.transport_event(StreamStarted())
    call.model(ev.ResponseCreated("resp_1"))
    for ms in (100, 300):
        call.model(ev.AudioDelta("resp_1", "item_1", pcm(ms)))
    call.transport_event(PlayedUpTo("item_1", offset))
    barge_in = call.model(ev.SpeechStarted("item_caller", 0))
    assert commands(barge_in) == [ev.Truncate("item_1", offset // BYTES_PER_MS)]
    assert of(barge_in, ClearPlayback) == [ClearPlayback()]


def test_a_report_past_what_was_sent_counts_only_what_was_sent():
    call = ready_call()
    call.transport_event(StreamStarted())
    call.model(ev.ResponseCreated("resp_1"))
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(100)))
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(50)))
    # a transport that overshoots (a clock running ahead) is believed only up to the 150 ms handed to it
    call.transport_event(PlayedUpTo("item_1", 10**6))
    assert call.model(ev.SpeechStarted("item_caller", 0)) == [], "everything sent was heard"
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(50)))
    barge_in = call.model(ev.SpeechStarted("item_caller", 0))
    assert commands(barge_in) == [ev.Truncate("item_1", 150)]


# ---------------------------------------------------------------- the core's source knows no Twilio

CALL_PACKAGE = Path(voiceagent.__file__).parent / "call"


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module a source file imports, absolute, including ``from X import name`` as ``X.name``."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def is_twilio(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in ("twilio", "voiceagent.twilio"))


def source_of(module: str) -> tuple[Path, str] | None:
    """The file of a voiceagent module (or package), and the package it lives in; None outside voiceagent."""
    if module != "voiceagent" and not module.startswith("voiceagent."):
        return None
    base = Path(voiceagent.__file__).parent.joinpath(*module.split(".")[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py"), module.rpartition(".")[0]
    if (base / "__init__.py").is_file():
        return base / "__init__.py", module
    return None  # ``from package import name`` where name is not a module


def test_the_call_modules_import_nothing_of_twilio():
    modules = sorted(CALL_PACKAGE.glob("*.py"))
    assert {path.name for path in modules} >= {"core.py", "inputs.py", "actions.py", "playback.py", "phases.py"}
    for path in modules:
        imported = imported_modules(path, "voiceagent.call")
        assert "voiceagent.realtime.events" in imported or path.name != "core.py"  # the walk sees imports
        assert not [name for name in imported if is_twilio(name)], f"{path.name} imports Twilio"


def test_nothing_the_call_modules_import_reaches_twilio_either():
    """Transitively, through voiceagent's own modules (package ``__init__`` files included)."""
    seen: set[str] = set()
    todo = [f"voiceagent.call.{path.stem}" for path in CALL_PACKAGE.glob("*.py") if path.stem != "__init__"]
    todo.append("voiceagent.call")
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        assert not is_twilio(module), f"the call core reaches {module}"
        found = source_of(module)
        if found is None:
            continue
        path, package = found
        parents = [".".join(module.split(".")[:n]) for n in range(1, module.count(".") + 1)]
        todo += parents + sorted(imported_modules(path, package))
    assert {"voiceagent.realtime.events", "voiceagent.transcripts", "voiceagent.audio"} <= seen


def test_the_import_walk_would_see_a_twilio_import(tmp_path):
    """The checker itself can fail: a module importing Twilio, in each spelling, is caught."""
    for source in (
        "import twilio\n",
        "from twilio.rest import Client\n",
        "from voiceagent.twilio import messages\n",
        "from voiceagent import twilio\n",
        "from ..twilio.media_stream import MediaStreamAdapter\n",
        "def f():\n    import voiceagent.twilio.messages\n",
    ):
        path = tmp_path / "module.py"
        path.write_text(source, encoding="utf-8")
        assert any(is_twilio(name) for name in imported_modules(path, "voiceagent.call")), source
