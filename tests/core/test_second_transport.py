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

import voiceagent
from tests.core_helpers import ANY_ATTEMPT, CALL, Clock, b64, commands, of, under_way
from voiceagent.call import (
    CallCore,
    CallerAudio,
    CallerHungUp,
    CallOptions,
    ClearPlayback,
    ConnectModel,
    ConnectPurpose,
    EndCall,
    EndReason,
    PlayAudio,
    PlayedUpTo,
    RecordLine,
    StreamStarted,
    UseNewModel,
)
from voiceagent.call.actions import Action
from voiceagent.prompts import greeting_instructions
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine

BYTES_PER_MS = 32  # 16-bit samples at 16 kHz
UNITS = 1000  # playback is counted in thousandths of a byte: one µs plays BYTES_PER_MS of them, exactly
GREETING = "Welcome to the bistro"


class PcmPlaybackClock:
    """A transport that plays what it is given at exactly 32 bytes per ms of injected time (µs), from when
    it arrives or once what is queued ahead has played, and says how far it got."""

    def __init__(self, us: int) -> None:
        self._queue: deque[list[str | int]] = deque()  # [item, units of this chunk still to play]
        self._at = us
        self._units: dict[str, int] = {}  # item -> thousandths of bytes heard (the ground truth), in play order
        self._reported: dict[str, int] = {}  # item -> bytes last reported
        self.received: list[PlayAudio] = []

    @property
    def heard(self) -> dict[str, int]:
        """Item -> bytes the caller has heard."""
        return {item: units // UNITS for item, units in self._units.items()}

    def carry_out(self, actions: list[Action], us: int) -> None:
        self.advance(us)
        for action in actions:
            if isinstance(action, PlayAudio):
                self.received.append(action)
                self._queue.append([action.item_id, len(base64.b64decode(action.payload, validate=True)) * UNITS])
            elif isinstance(action, ClearPlayback):
                self._queue.clear()

    def advance(self, us: int) -> None:
        assert us >= self._at, "time only moves forward"
        budget = (us - self._at) * BYTES_PER_MS
        self._at = us
        while budget > 0 and self._queue:
            chunk = self._queue[0]
            item, left = str(chunk[0]), int(chunk[1])
            step = min(left, budget)
            self._units[item] = self._units.get(item, 0) + step
            budget -= step
            if step == left:
                self._queue.popleft()
            else:
                chunk[1] = left - step

    def report(self, us: int) -> list[PlayedUpTo]:
        """How far the caller has heard each item heard further since the last report, to the byte, in
        play order: the last one is the item at the playhead."""
        self.advance(us)
        reports = [PlayedUpTo(item, heard) for item, heard in self.heard.items() if heard > self._reported.get(item, 0)]
        self._reported.update((report.item_id, report.offset) for report in reports)
        return reports

    @property
    def idle(self) -> bool:
        return not self._queue


class Call:
    """The core and the PCM transport, with an injected clock (µs; the core sees seconds)."""

    def __init__(self, options: CallOptions) -> None:
        self.clock = Clock()
        self.core = CallCore(options, call_sid=CALL, now=self.clock.now)
        self.transport = PcmPlaybackClock(self.clock.us)
        self.lines: list[TranscriptLine] = []
        self.last_report: PlayedUpTo | None = None

    def at(self, seconds_later: float) -> float:
        return self.clock.tick(seconds_later)

    def model(self, event: ev.ModelEvent, seconds_later: float = 0.001) -> list[Action]:
        now = self.at(seconds_later)
        return self._carry_out(self.core.model_event(event, now))

    def transport_event(self, event, seconds_later: float = 0.001) -> list[Action]:
        now = self.at(seconds_later)
        return self._carry_out(self.core.transport_event(event, now))

    def heard_so_far(self, seconds_later: float) -> list[Action]:
        """The transport reports; its reports reach the core one µs apart (time only moves forward)."""
        now = self.at(seconds_later)
        actions: list[Action] = []
        for n, report in enumerate(self.transport.report(self.clock.us)):
            self.last_report = report
            actions += self._carry_out(self.core.transport_event(report, now if n == 0 else self.at(0.000001)))
        return actions

    def _carry_out(self, actions: list[Action]) -> list[Action]:
        self.transport.carry_out(actions, self.clock.us)
        self.lines += [action.line for action in of(actions, RecordLine)]
        return actions


def pcm(ms: int, fill: int = 0x10) -> str:
    return b64(ms * BYTES_PER_MS, fill)


def truncates(actions: list[Action]) -> list[ev.Truncate]:
    return [command for command in commands(actions) if isinstance(command, ev.Truncate)]


def ready_call() -> Call:
    call = Call(CallOptions(greeting=GREETING, bytes_per_ms=BYTES_PER_MS))
    core, now = call.core, call.clock.now
    assert core.start(call.at(0.001)) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.FIRST)]
    connected = core.model_connected(under_way(core), call.at(0.05))
    assert connected[0] == UseNewModel() and commands(connected) == [ev.UpdateSession(core.options.session)]
    # The core knows the model side only as "μ-law confirmed" (see the report on this file's commit).
    ready = core.model_event(ev.SessionUpdated(ev.PCMU, ev.PCMU), call.at(0.05))
    greeting = greeting_instructions(core.options.session.instructions, GREETING)
    assert commands(ready) == [ev.CreateResponse(greeting)]
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

    # the answer: three chunks (100, 200, 100 ms), buffered at once; a report 137.4 ms into it, mid-chunk
    answer = ("resp_answer", "item_answer")
    call.model(ev.ResponseCreated(answer[0]))
    call.model(ev.AgentTranscriptDelta("item_answer", "Certainly, for what time would"))
    for ms in (100, 200, 100):
        call.model(ev.AudioDelta(*answer, pcm(ms, 0x20)), seconds_later=0.0001)
    assert not of(call.heard_so_far(0.1374 - 0.0002), RecordLine)  # 137.4 ms after the first chunk began
    reported = call.transport.heard["item_answer"]
    assert call.last_report == PlayedUpTo("item_answer", reported)
    assert reported == 4396  # 137.4 ms × 32, to the whole byte
    # the caller barges in 25.3 ms after that report, still within the second chunk (it ends at 300 ms)
    barge_in = call.model(ev.SpeechStarted("item_caller_2", 3000), seconds_later=0.0253)
    heard = call.transport.heard["item_answer"]  # played up to the barge-in, then cleared
    assert heard == 5206  # 162.7 ms
    estimate = reported + 25300 * BYTES_PER_MS // 1000  # the report, plus the time since at 32 bytes/ms
    heard_ms = estimate // BYTES_PER_MS
    assert heard_ms == heard // BYTES_PER_MS == 162, "the caller heard 162 ms, and the model is told so"
    assert of(barge_in, ClearPlayback) == [ClearPlayback()]
    assert commands(barge_in) == [ev.Truncate("item_answer", heard_ms)]
    [line] = [action.line for action in of(barge_in, RecordLine)]
    assert line == TranscriptLine(CALL, "agent", "Certainly,", True, heard_ms)  # the words of the audio heard
    assert call.transport.idle, "the transport dropped what was queued"

    # late deltas of the truncated item are dropped; the caller hears nothing more of it
    assert call.model(ev.AudioDelta(*answer, pcm(100, 0x21))) == []
    call.model(ev.ResponseDone(answer[0], "cancelled"))
    call.heard_so_far(0.5)
    assert call.transport.heard["item_answer"] == heard
    assert [play.item_id for play in call.transport.received].count("item_answer") == 3

    ended = call.transport_event(CallerHungUp())
    assert of(ended, EndCall) == [EndCall(EndReason.CALLER_HUNG_UP, "caller hung up")]
    assert [(line.role, line.interrupted) for line in call.lines] == [
        ("agent", False),
        ("caller", False),
        ("agent", True),
    ]


# (µs after the first chunk began at which the transport reports, µs from that report to the barge-in)
REPORTS_AND_BARGE_INS = [
    (32, 1),  # 1 byte in (1.024), and 0.032 bytes later: still 1 byte, 0 ms
    (32, 31),  # 1 byte, then 0.992 more: still 1 byte
    (32, 1_000),  # 1 byte, then 32: 1 ms
    (1_000, 999_000),  # at 1 ms; a second later the estimate has stopped at the end of the first chunk
    (37_123, 12_345),  # 1187 bytes, then 395: 1582, 49 ms
    (99_969, 31),  # a byte before the first chunk's end (3199.008), then 0.992 more: 3199, 99 ms
    (99_969, 32),  # ... then 1.024 more: the first chunk's end, 100 ms
    (99_969, 5_000),  # capped at the first chunk's end until a report says more (the caller is at 105 ms)
    (100_000, 1),  # exactly at the first chunk's end: the second is playing, from the report on
    (100_000, 137_000),  # 237 ms
    (250_000, 149_999),  # 399.999 ms: 12799 bytes, 399 ms
    (250_000, 150_000),  # all of it: 400 ms
    (399_969, 1_000_000),  # a byte before the end, a second later: never past what was produced
]


@pytest.mark.parametrize(("report_us", "elapsed_us"), REPORTS_AND_BARGE_INS)
def test_the_truncate_is_the_last_report_plus_the_time_since_capped_at_the_chunk_end(report_us, elapsed_us):
    call = ready_call()
    call.transport_event(StreamStarted())
    call.model(ev.ResponseCreated("resp_1"))
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(100)))  # plays from now
    began = call.clock.us
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(300)), seconds_later=0.000001)  # queued behind it
    call.heard_so_far((began + report_us - call.clock.us) / 1_000_000)
    assert call.last_report is not None
    offset = call.last_report.offset
    assert offset == report_us * BYTES_PER_MS // 1000, "the transport plays by the clock"
    barge_in = call.model(ev.SpeechStarted("item_caller", 0), seconds_later=elapsed_us / 1_000_000)
    heard = call.transport.heard["item_1"]  # the truth at the barge-in

    chunk_end = 3200 if offset < 3200 else 12800  # the end of the chunk the report fell in (or after)
    estimate = min(offset + elapsed_us * BYTES_PER_MS // 1000, chunk_end)
    assert truncates(barge_in) == [ev.Truncate("item_1", estimate // BYTES_PER_MS)]
    assert of(barge_in, ClearPlayback) == [ClearPlayback()]
    assert estimate <= heard, "never past what the caller heard"
    if estimate < chunk_end:  # the report was exact, and the caller still in that chunk: the truth, to the byte
        assert heard - estimate <= 1


def test_after_the_buffer_ran_dry_the_estimate_starts_when_the_audio_was_sent():
    call = ready_call()
    call.transport_event(StreamStarted())
    call.model(ev.ResponseCreated("resp_1"))
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(100)))
    call.heard_so_far(0.120)  # all of it, 20 ms ago: the transport has nothing left to play
    assert call.last_report == PlayedUpTo("item_1", 3200) and call.transport.idle
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(100)), seconds_later=0.080)  # plays from now
    barge_in = call.model(ev.SpeechStarted("item_caller", 0), seconds_later=0.050)
    assert call.transport.heard["item_1"] == 150 * BYTES_PER_MS
    assert truncates(barge_in) == [ev.Truncate("item_1", 150)], "not 100 + the 130 ms since the report"


def test_once_an_item_is_reported_heard_the_estimate_moves_on_to_the_next():
    call = ready_call()
    call.transport_event(StreamStarted())
    call.model(ev.ResponseCreated("resp_1"))
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(100)))
    began = call.clock.us
    call.model(ev.AudioDelta("resp_1", "item_2", pcm(100)), seconds_later=0.000001)  # queued behind item_1
    call.heard_so_far((began + 140_000 - call.clock.us) / 1_000_000)  # item_1 done, 40 ms of item_2
    assert call.last_report == PlayedUpTo("item_2", 40 * BYTES_PER_MS)
    barge_in = call.model(ev.SpeechStarted("item_caller", 0), seconds_later=0.010)  # 10 ms after that report
    assert call.transport.heard == {"item_1": 3200, "item_2": 50 * BYTES_PER_MS}
    assert truncates(barge_in) == [ev.Truncate("item_2", 50)], "item_1 was heard in full: only item_2 is cut"


@pytest.mark.parametrize(("elapsed", "expected_ms"), [(0.020, 170), (0.060, 200)])
def test_a_report_past_what_was_sent_counts_only_what_was_sent(elapsed, expected_ms):
    call = ready_call()
    call.transport_event(StreamStarted())
    call.model(ev.ResponseCreated("resp_1"))
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(100)))
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(50)))
    # a transport that overshoots (a clock running ahead) is believed only up to the 150 ms handed to it
    call.transport_event(PlayedUpTo("item_1", 10**6))
    assert call.model(ev.SpeechStarted("item_caller", 0)) == [], "everything sent was heard"
    call.model(ev.AudioDelta("resp_1", "item_1", pcm(50)))  # sent now, into an idle transport
    barge_in = call.model(ev.SpeechStarted("item_caller", 0), seconds_later=elapsed)
    assert truncates(barge_in) == [ev.Truncate("item_1", expected_ms)], "150 + the time since, to 200 at most"


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
