"""Property tests: random interleavings of model deltas, Twilio playback, mark echoes, clears, caller
speech, caller audio and model reconnects, through the real call core and the real Twilio adapter,
checked against the truncate rule (docs/protocol.md §2) and the mark semantics (§1, "Outbound messages
and marks").

A tiny Twilio model plays what the adapter sends (JSON frames, parsed) at exactly 8 bytes per ms of the
injected clock, from the moment it arrives or once the audio queued ahead of it has played. It echoes
each mark once the audio before it has played, and every pending one at once on ``clear``, over one
ordered channel, each echo arriving a chosen number of µs after its moment (none: "exact" echoes). It
keeps the ground truth of how many bytes of each agent item the caller had heard at any instant.

Between echoes the core estimates what was heard from the clock (``voiceagent/call/playback.py``), so a
truncate is checked against that ground truth: never past it, never below what the echoes acknowledged,
and with exact echoes equal to it up to the rounding to whole ms.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.core_helpers import (
    ANY_ATTEMPT,
    CALL,
    STREAM,
    Clock,
    b64,
    commands,
    decoded_size,
    log_lines,
    mark_frame,
    media_frame,
    of,
    ready_core,
    start_frame,
    under_way,
)
from voiceagent.call import (
    CallerAudio,
    CallOptions,
    ClearPlayback,
    ConnectModel,
    ConnectPurpose,
    DropNewModel,
    EndCall,
    EndReason,
    Log,
    PlayAudio,
    PlayedUpTo,
    RecordLine,
    SendToModel,
    StreamStarted,
    UseNewModel,
)
from voiceagent.call.actions import Action
from voiceagent.prompts import conversation_so_far
from voiceagent.realtime import events as ev
from voiceagent.transcripts import TranscriptLine
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter

BYTES_PER_MS = 8  # μ-law, 8 kHz
UNITS = 1000  # playback is counted in thousandths of a byte: one µs plays BYTES_PER_MS of them, exactly


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class TwilioModel:
    """Twilio's side of a bidirectional stream, as far as playback goes, on the injected clock (µs)."""

    at: int  # everything due up to this µs has played
    queue: deque[list[Any]] = field(default_factory=deque)  # ["audio", item, units left] | ["mark", name, delay]
    units: dict[str, int] = field(default_factory=dict)  # item -> thousandths of bytes heard (ground truth)
    echoes: deque[tuple[int, str]] = field(default_factory=deque)  # (due µs, mark), in the order Twilio sends
    last_due: int = 0
    at_mark: dict[str, tuple[str, int] | None] = field(default_factory=dict)  # mark -> (item, heard) or cleared
    mark_items: dict[str, str] = field(default_factory=dict)  # mark -> item of the audio just before it
    clears: int = 0

    def heard(self, item: str) -> int:
        return self.units.get(item, 0) // UNITS

    def accept(self, frame: str, item: str | None, delay: int = 0) -> None:
        """A frame from the adapter, at ``self.at`` (the harness has played up to now first)."""
        message = json.loads(frame)
        assert message["streamSid"] == STREAM
        if message["event"] == "media":
            assert set(message) == {"event", "streamSid", "media"} and set(message["media"]) == {"payload"}
            assert item is not None
            self.queue.append(["audio", item, decoded_size(message["media"]["payload"]) * UNITS])
        elif message["event"] == "mark":
            assert set(message) == {"event", "streamSid", "mark"} and set(message["mark"]) == {"name"}
            self.queue.append(["mark", message["mark"]["name"], delay])
        elif message["event"] == "clear":
            assert set(message) == {"event", "streamSid"}
            self.clears += 1
            for kind, name, delay_of_mark in self.queue:
                if kind == "mark":
                    self.at_mark[name] = None  # echoed because cleared, not because played
                    self._echo(name, self.at + delay_of_mark)
            self.queue.clear()
        else:
            raise AssertionError(f"a message Twilio does not accept: {frame}")

    def play_until(self, until: int) -> None:
        """The caller hears the queue, at exactly BYTES_PER_MS, from ``self.at`` to ``until``."""
        assert until >= self.at
        budget, used = (until - self.at) * BYTES_PER_MS, 0
        while self.queue:
            kind, what, amount = self.queue[0]
            if kind == "mark":  # the audio before it has played: reached at that very instant
                self.queue.popleft()
                item = self.mark_items[what]
                self.at_mark[what] = (item, self.heard(item))
                self._echo(what, self.at + ceil_div(used, BYTES_PER_MS) + amount)
                continue
            step = min(amount, budget - used)
            if step == 0:
                break
            self.units[what] = self.units.get(what, 0) + step
            used += step
            if step == amount:
                self.queue.popleft()
            else:
                self.queue[0][2] = amount - step
        self.at = until  # a buffer that ran dry plays new audio from when it arrives

    def _echo(self, name: str, due: int) -> None:
        self.last_due = max(self.last_due, due)  # one ordered channel: an echo never overtakes another
        self.echoes.append((self.last_due, name))


def echo_delay(fill: int) -> int:
    """µs between a mark's moment and its echo reaching us: often none, up to a quarter second."""
    return 0 if fill % 4 == 0 else fill * 997


@dataclass
class Harness:
    """The core, the real adapter and the Twilio model wired together, with the test's own books."""

    server_interrupts: bool = True
    exact_echoes: bool = True  # every echo arrives the µs its audio finished (else: echo_delay)
    drop_void_echoes: bool = False  # deliver void echoes to the adapter, or lose them on the way
    clock: Clock = field(default_factory=Clock)
    adapter: MediaStreamAdapter | None = None
    log: list[Action] = field(default_factory=list)  # every action of the core, in order
    # the test's books
    item_no: int = 1
    session: int = 1
    model: str = "ready"  # "ready" | "connecting" | "configuring"
    drops: int = 0
    early: int = 0  # deltas of a session not confirmed yet
    turns: int = 0
    sessions: dict[str, int] = field(default_factory=dict)  # item -> model session that produced it
    response: str | None = None
    received: dict[str, int] = field(default_factory=dict)  # item -> bytes the model sent (before its truncate)
    expected_end: dict[str, int] = field(default_factory=dict)  # item -> bytes handed to the transport
    sends: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # item -> (end, µs) per chunk sent
    reports: list[tuple[str, int, int]] = field(default_factory=list)  # live echoes in: (item, offset, µs)
    acked: dict[str, int] = field(default_factory=dict)  # item -> offset of the latest live echo
    truncated: dict[str, int] = field(default_factory=dict)  # item -> heard_ms at its barge-in
    barge_ins: list[int] = field(default_factory=list)  # µs of each barge-in that truncated something
    held: list[tuple[str, str]] = field(default_factory=list)  # deltas before the stream started
    backlog: list[str] = field(default_factory=list)  # caller audio while no session was ready
    outstanding: set[str] = field(default_factory=set)  # marks sent and not yet echoed to the adapter
    void: set[str] = field(default_factory=set)  # marks whose echo a clear made void
    lines: dict[str, RecordLine] = field(default_factory=dict)  # item -> its transcript line
    history: list[TranscriptLine] = field(default_factory=list)  # every line with words, in order
    unplayed_at_barge_in: set[str] = field(default_factory=set)  # items the latest barge-in had to cut
    delay: int = 0  # µs the echo of the mark being sent will lag behind the end of its audio
    ending: bool = False

    def __post_init__(self) -> None:
        self.options = CallOptions(server_interrupts=self.server_interrupts)
        self.core = ready_core(self.options, self.clock, stream=False)
        self.twilio = TwilioModel(at=self.clock.us)

    @property
    def item(self) -> str:
        return f"item_{self.item_no}"

    def text_of(self, item: str) -> str:
        return f"{item} said these words"  # the id first: a line cut to what was heard still names its item

    # -------------------------------------------------------------- time

    def at(self, gap: int = 1) -> float:
        """Move ``gap`` µs on: Twilio plays meanwhile, and the echoes due before then come in, each at its
        own strictly later µs. The new ``now``, for the next input."""
        target = self.clock.us + gap
        self.twilio.play_until(target)  # echoes never change what plays (checked in _deliver)
        while self.twilio.echoes:
            due, name = self.twilio.echoes[0]
            when = max(due, self.clock.us + 1)
            if when >= target:
                break
            self.twilio.echoes.popleft()
            self.clock.to(when)  # lost or not, the echo had its moment: the two void-echo runs stay in step
            self._deliver(name)
        return self.clock.to(target)

    # -------------------------------------------------------------- carrying out the core's actions

    def run(self, actions: list[Action]) -> list[Action]:
        self.log += actions
        for action in actions:
            if isinstance(action, PlayAudio):
                assert action.item_id not in self.truncated, "audio of a truncated item reached the transport"
                assert self.adapter is not None, "agent audio played before the stream started"
                media, mark = self.adapter.send(action)
                self.twilio.accept(media, action.item_id)
                name = json.loads(mark)["mark"]["name"]
                assert name not in self.twilio.mark_items, "mark names are unique"
                self.twilio.mark_items[name] = action.item_id
                self.outstanding.add(name)
                self.twilio.accept(mark, action.item_id, self.delay)
                self.sends.setdefault(action.item_id, []).append((action.end, self.clock.us))
            elif isinstance(action, ClearPlayback):
                assert self.adapter is not None
                [clear] = self.adapter.send(action)
                self.void |= self.outstanding  # what the adapter had pending: Twilio echoes it now
                self.outstanding.clear()
                self.twilio.accept(clear, None)
            elif isinstance(action, RecordLine):
                self._check_line(action)
            else:
                assert self.ending or not isinstance(action, EndCall), "nothing but the hang-up ends the call"
        return actions

    def _check_line(self, record: RecordLine) -> None:
        line = record.line
        if line.text:  # an utterance cut to nothing is not part of the conversation a new session is told
            self.history.append(line)
        if line.role == "caller":
            assert line == TranscriptLine(CALL, "caller", f"caller turn {self.turns}")
            return
        assert line.role == "agent"
        item = record.item_id
        assert item is not None and item in self.received
        assert self.text_of(item).startswith(line.text), "an interrupted line keeps a prefix of the words"
        assert item not in self.lines, "an agent line is recorded once"
        self.lines[item] = record
        heard_in_full = self.acked.get(item, 0) >= self.received[item]
        assert line.interrupted is not heard_in_full
        if not line.interrupted:
            assert line.heard_ms is None
            assert self.twilio.heard(item) >= self.received[item], "recorded before it was heard"
        else:
            assert item in self.unplayed_at_barge_in, "only a barge-in interrupts (its bounds: in speech)"

    # -------------------------------------------------------------- the operations

    def start_stream(self, gap: int = 1) -> None:
        start = tw.parse_received(start_frame())
        assert isinstance(start, tw.Start)
        self.adapter = MediaStreamAdapter(start)
        flush = [(item, payload) for item, payload in self.held if item not in self.truncated]
        self.held.clear()
        self.delay = 0
        actions = self.run(self.core.transport_event(StreamStarted(), self.at(gap)))
        expected = []
        for item, payload in flush:
            self.expected_end[item] = self.expected_end.get(item, 0) + decoded_size(payload)
            expected.append(PlayAudio(item, payload, self.expected_end[item]))
        assert of(actions, PlayAudio) == expected, "held audio is flushed in order, untouched"

    def delta(self, size: int, fill: int, gap: int = 1, delay: int | None = None) -> None:
        if self.model == "connecting":
            return  # no session to speak
        payload = b64(size, fill)
        if self.model == "configuring":
            self.early += 1
            item = f"item_early_{self.early}"
            actions = self.run(self.core.model_event(ev.AudioDelta("resp_early", item, payload), self.at(gap)))
            assert [(a.level, a.event) for a in log_lines(actions)] == [("warning", "model_audio_before_session_ready")]
            assert actions == log_lines(actions), "audio before the session is confirmed is dropped"
            return
        if self.response is None:
            self.response = f"resp_{self.item_no}"
            self.run(self.core.model_event(ev.ResponseCreated(self.response), self.at(gap)))
            gap = 1
        item = self.item
        if item not in self.sessions:
            self.sessions[item] = self.session
            self.run(self.core.model_event(ev.AgentTranscriptDelta(item, self.text_of(item)), self.at(gap)))
            gap = 1
        if delay is None:
            delay = 0 if self.exact_echoes else echo_delay(fill)
        self.delay = delay
        actions = self.run(self.core.model_event(ev.AudioDelta(self.response, item, payload), self.at(gap)))
        if item in self.truncated:
            assert actions == [], "a late delta of a truncated item is dropped"
            return
        self.received[item] = self.received.get(item, 0) + size
        if self.adapter is None:
            assert of(actions, PlayAudio) == []
            self.held.append((item, payload))
        else:
            self.expected_end[item] = self.expected_end.get(item, 0) + size
            assert of(actions, PlayAudio) == [PlayAudio(item, payload, self.expected_end[item])]

    def item_done(self, gap: int = 1) -> None:
        if self.response is None or self.item not in self.sessions:
            return
        self.run(self.core.model_event(ev.AudioDone(self.response, self.item), self.at(gap)))
        done = ev.AgentTranscriptDone(self.item, self.text_of(self.item))
        self.run(self.core.model_event(done, self.at()))
        self.item_no += 1

    def response_done(self, gap: int = 1) -> None:
        if self.response is None:
            return
        self.run(self.core.model_event(ev.ResponseDone(self.response, "completed"), self.at(gap)))
        self.response = None
        if self.item in self.sessions:
            self.item_no += 1

    def wait(self, us: int) -> None:
        self.at(us)

    def _deliver(self, name: str) -> None:
        assert self.adapter is not None
        if name in self.void:
            if self.drop_void_echoes:
                return
            assert self.adapter.receive(mark_frame(name)) is None, "a void echo means nothing to the core"
            return
        self.outstanding.discard(name)
        played = self.twilio.at_mark[name]
        assert played is not None, "only a clear makes Twilio echo unplayed marks, and a clear voids them"
        event = self.adapter.receive(mark_frame(name))
        assert event == PlayedUpTo(*played), "the echo reports exactly what the caller had heard of the item"
        item, offset = played
        self.acked[item] = max(self.acked.get(item, 0), offset)
        self.reports.append((item, offset, self.clock.us))
        actions = self.run(self.core.transport_event(event, self.clock.now))
        assert not of(actions, PlayAudio) and not of(actions, ClearPlayback) and not commands(actions)

    def speech(self, gap: int = 1) -> None:
        if self.model == "connecting":
            return  # no session to hear the caller
        now = self.at(gap)
        unplayed = [
            item
            for item in self.received
            if item not in self.truncated and self.received[item] > self.acked.get(item, 0)
        ]
        # the items with audio at the transport not all acknowledged, in play order: the first is playing
        at_transport = [
            item
            for item in self.received
            if item not in self.truncated and self.expected_end.get(item, 0) > self.acked.get(item, 0)
        ]
        clears_before = self.twilio.clears
        truth = {item: self.twilio.heard(item) for item in unplayed}  # the clear goes out at this very µs
        acked = {item: min(self.acked.get(item, 0), self.received[item]) for item in unplayed}
        response_live = self.response is not None
        self.unplayed_at_barge_in = set(unplayed)
        actions = self.run(self.core.model_event(ev.SpeechStarted("item_caller", 0), now))

        cleared = self.twilio.clears - clears_before
        assert cleared == (1 if unplayed and self.adapter is not None else 0), "clear exactly when audio is unplayed"
        truncates = {
            command.item_id: command.audio_end_ms for command in commands(actions) if isinstance(command, ev.Truncate)
        }
        assert list(truncates) == [item for item in unplayed if self.sessions[item] == self.session]
        if unplayed:
            self.barge_ins.append(self.clock.us)
        for item in unplayed:
            line = self.lines[item].line  # an item talked over is recorded at once, with what was heard
            assert line.interrupted and line.heard_ms is not None
            ms, heard, received = line.heard_ms, truth[item], self.received[item]
            if item in truncates:
                assert truncates[item] == ms, "the model is told what the transcript says"
            assert ms >= 0
            assert ms * BYTES_PER_MS <= received, "never past the audio the model produced"
            assert ms >= acked[item] // BYTES_PER_MS, "at least what the echoes acknowledged"
            if item in at_transport:
                chunk_end = next(end for end, _ in self.sends[item] if end > acked[item])
                assert ms * BYTES_PER_MS <= chunk_end, "never past the end of the chunk playing"
            if at_transport[:1] == [item]:  # the item playing: estimated from the clock
                assert ms * BYTES_PER_MS <= heard, "never past what the caller heard"
                if self.exact_echoes:
                    # every echo came the µs its audio ended: the estimate is the truth to the byte, in whole ms
                    assert ms >= (heard - 1) // BYTES_PER_MS, "with exact echoes, what the caller heard"
            else:
                # waiting behind the item playing, or not sent yet: only what was reported counts
                assert ms == acked[item] // BYTES_PER_MS, "an item not playing is cut where its echoes left it"
                assert ms * BYTES_PER_MS <= heard
            self.truncated[item] = ms
        if self.adapter is None:
            self.held = [(item, payload) for item, payload in self.held if item not in self.truncated]
        cancels = [command for command in commands(actions) if isinstance(command, ev.CancelResponse)]
        assert len(cancels) == (1 if response_live and not self.server_interrupts else 0)

    def speech_stopped(self, gap: int = 1) -> None:
        if self.model == "connecting":
            return
        actions = self.run(self.core.model_event(ev.SpeechStopped("item_caller", 0), self.at(gap)))
        assert not commands(actions) and not of(actions, PlayAudio)
        self.turns += 1
        said = ev.CallerTranscript(f"item_caller_{self.turns}", f"  caller turn {self.turns} ")
        actions = self.run(self.core.model_event(said, self.at()))
        assert len(of(actions, RecordLine)) == 1 and not commands(actions)

    def caller_audio(self, size: int, gap: int = 1) -> None:
        if self.adapter is None:
            return
        payload = b64(size, 0x7F)
        event = self.adapter.receive(media_frame(payload))
        assert event == CallerAudio(payload, size)
        actions = self.run(self.core.transport_event(event, self.at(gap)))
        if self.model == "ready":
            assert commands(actions) == [ev.AppendAudio(payload)], "caller audio reaches the model untouched"
        else:
            assert actions == [], "held until a session is ready"
            self.backlog.append(payload)

    def session_step(self, gap: int = 1) -> None:
        """The model session drops; a new one connects; it confirms μ-law: one step per call."""
        if self.model == "ready":
            if self.drops == 2:
                return  # a few sessions are enough
            self.drops += 1
            actions = self.run(self.core.model_lost(1006, "dropped", self.at(gap)))
            if not of(actions, ConnectModel):  # backing off: the reconnect is due at the core's deadline
                deadline = self.core.next_deadline()
                assert deadline is not None
                self.at(max(1, math.ceil(deadline * 1_000_000) - self.clock.us + 1))
                actions = self.run(self.core.handle_timer(self.clock.now))
            assert of(actions, ConnectModel) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.RECONNECT)]
            self.model = "connecting"
            self.response = None
            if self.item in self.sessions:
                self.item_no += 1
        elif self.model == "connecting":
            actions = self.run(self.core.model_connected(under_way(self.core), self.at(gap)))
            self.session += 1
            # the conversation so far goes in the new session's instructions: nothing is replayed as items
            prompt = self.options.session.instructions
            config = replace(self.options.session, instructions=conversation_so_far(prompt, self.history))
            assert actions[0] == UseNewModel() and isinstance(actions[1], Log)
            assert actions[2:] == [SendToModel(ev.UpdateSession(config))]
            self.model = "configuring"
        else:
            actions = self.run(self.core.model_event(ev.SessionUpdated(ev.PCMU, ev.PCMU), self.at(gap)))
            assert commands(actions) == [ev.AppendAudio(payload) for payload in self.backlog], "in order"
            assert not of(actions, DropNewModel) and not of(actions, PlayAudio)
            self.backlog.clear()
            self.model = "ready"

    def finish(self) -> None:
        """The queue plays out, every echo comes in, the caller hangs up: all is recorded, nothing leaks."""
        if self.adapter is None:
            self.start_stream()
        self.at(1_000_000_000)  # long enough for any queue and any echo delay
        assert not self.twilio.queue and not self.twilio.echoes
        assert not self.outstanding, "every live mark was echoed"
        self.ending = True
        actions = self.run(self.core.end(EndReason.OPERATOR_HUNG_UP, "caller hung up", self.at()))
        assert len(of(actions, EndCall)) == 1
        assert set(self.lines) == set(self.received), "every agent item with audio has exactly one line"
        for item, line in self.lines.items():
            assert line.line.interrupted is (item in self.truncated)
            if item in self.truncated:
                assert line.line.heard_ms == self.truncated[item]


WEIGHTS = {  # out of 100: mostly audio flowing, time passing and echoes coming back
    "delta": 32,
    "wait": 26,
    "speech": 7,
    "speech_stopped": 3,
    "item_done": 7,
    "response_done": 5,
    "caller_audio": 12,
    "session": 8,
}
KINDS = [kind for kind, weight in WEIGHTS.items() for _ in range(weight)]
# An interleaving is drawn as bytes, three per operation, and decoded here: one cheap draw per example
# keeps ~400 examples of up to 100 operations well under the time budget (drawing a list of tuples costs
# more than running the call).
OPERATIONS = st.binary(min_size=3 * 30, max_size=3 * 100)
STREAM_START = st.one_of(st.just(0), st.just(0), st.integers(0, 20))  # before which operation the stream starts


def decode(data: bytes) -> list[tuple[str, int, int]]:
    """(kind, size, fill) per three bytes. Sizes: often tiny, often hundreds of bytes (deltas vary a lot)."""
    operations = []
    for i in range(0, len(data) - 2, 3):
        which, high, low = data[i : i + 3]
        size = 1 + low % 40 if high & 1 else 1 + (high << 8 | low) % 2000
        operations.append((KINDS[which * len(KINDS) // 256], size, low))
    return operations


def drive(harness: Harness, operations: list[tuple[str, int, int]], stream_at: int) -> None:
    note(f"stream starts before operation {stream_at} of {operations}")
    for index, (kind, size, fill) in enumerate(operations):
        gap = 1 + fill * 7  # µs since the previous input: up to ~1.8 ms
        if index == stream_at:
            harness.start_stream(gap)
        if kind == "delta":
            harness.delta(size, fill, gap)
        elif kind == "wait":
            harness.wait(size * 100)  # 0.1 ms to 200 ms: chunks last 0.125 ms to 250 ms
        elif kind == "caller_audio":
            harness.caller_audio(1 + size % 320, gap)
        elif kind == "session":
            harness.session_step(gap)
        else:
            getattr(harness, kind)(gap)
    harness.finish()


FAST = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: deterministic
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(FAST, max_examples=225)
@given(OPERATIONS, STREAM_START, st.booleans(), st.booleans())
def test_truncation_invariants_hold_under_any_interleaving(operations, stream_at, server_interrupts, exact):
    harness = Harness(server_interrupts=server_interrupts, exact_echoes=exact)
    drive(harness, decode(operations), stream_at)


@settings(FAST, max_examples=75)
@given(OPERATIONS, STREAM_START, st.booleans())
def test_void_echoes_change_nothing(operations, stream_at, exact):
    """The same run with the echoes of cleared marks delivered or lost: the core does exactly the same."""
    delivered, lost = Harness(exact_echoes=exact), Harness(exact_echoes=exact, drop_void_echoes=True)
    drive(delivered, decode(operations), stream_at)
    drive(lost, decode(operations), stream_at)
    assert delivered.log == lost.log
    assert delivered.core.figures == lost.core.figures


CHUNK = st.tuples(
    st.integers(1, 2000),  # bytes
    st.sampled_from([1, 1, 500, 20_000, 150_000, 400_000]),  # µs since the previous chunk: buffered or run dry
    st.sampled_from([0, 0, 0, 1, 3_000, 60_000, 250_000]),  # µs its echo lags behind the end of its audio
)


@settings(FAST, max_examples=100)
@given(st.lists(CHUNK, min_size=1, max_size=8), st.integers(1, 1_500_000))
def test_a_barge_in_mid_item_truncates_at_the_last_report_plus_the_time_since(chunks, listened):
    """One item, its chunks sent with gaps, played on the clock, echoes coming back late or not at all
    by the barge-in: the truncate is the last report plus the time since that report (or since the
    chunk playing was sent, if the buffer had run dry), capped at that chunk's end."""
    exact = all(delay == 0 for _, _, delay in chunks)
    harness = Harness(exact_echoes=exact)
    harness.start_stream()
    for size, gap, delay in chunks:
        harness.delta(size, 0x33, gap, delay)
    harness.wait(listened)
    harness.speech()

    # the expectation, from the test's own books (what was sent when, which echoes were in when)
    [barge_in] = harness.barge_ins or [harness.clock.us]
    total = sum(size for size, _, _ in chunks)
    acked = max((offset for _, offset, at in harness.reports if at < barge_in), default=0)
    last_report = max((at for _, _, at in harness.reports if at < barge_in), default=None)
    playing = [(end, sent) for end, sent in harness.sends["item_1"] if end > acked]
    if playing:  # the first chunk not acknowledged is the one playing
        end, sent = playing[0]
        started = sent if last_report is None else max(sent, last_report)
        estimate = min(acked + (barge_in - started) * BYTES_PER_MS // 1000, end, total)
        expected = [ev.Truncate("item_1", estimate // BYTES_PER_MS)]
    else:
        expected = []  # every echo was in: nothing left to cut
    truncates = [command for command in commands(harness.log) if isinstance(command, ev.Truncate)]
    assert truncates == expected
    assert harness.twilio.clears == (1 if playing else 0) and not harness.twilio.queue

    harness.delta(160, 0x44)  # late: dropped (asserted inside)
    harness.response_done()
    harness.delta(320, 0x55, delay=0)  # the next response's item plays with fresh marks
    assert harness.item == "item_2" and harness.expected_end["item_2"] == 320
    harness.wait(300_000)  # 40 ms of audio, and its echo (behind any void echo still on its way)
    assert harness.acked["item_2"] == 320
    harness.finish()


def test_exact_echoes_make_the_truncate_the_truth_to_the_ms():
    """A 250 ms chunk behind a 100 ms one, echoes exact: 10 ms into the second chunk is 110 ms heard."""
    harness = Harness(exact_echoes=True)
    harness.start_stream()
    harness.delta(800, 0x11)
    harness.delta(2000, 0x12)
    first_sent = harness.sends["item_1"][0][1]  # the buffer was empty: it started playing then
    harness.wait(first_sent + 110_000 - harness.clock.us - 1)
    assert harness.acked["item_1"] == 800
    harness.speech(1)  # exactly 110 ms after the first chunk began
    assert harness.clock.us == first_sent + 110_000
    assert [c for c in commands(harness.log) if isinstance(c, ev.Truncate)] == [ev.Truncate("item_1", 110)]
    assert harness.twilio.heard("item_1") == 110 * BYTES_PER_MS


def test_a_recycle_completing_mid_response_is_dropped_so_the_heard_item_stays_truncatable():
    clock = Clock()
    session = ev.SessionConfig(instructions="You take bookings for the bistro.", voice="alloy")
    core = ready_core(CallOptions(session=session, recycle_seconds=10), clock)
    assert core.handle_timer(clock.tick(11)) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.RECYCLE)]  # quiet: recycle
    # while the new session is connecting, the caller speaks and the old session answers
    core.model_event(ev.ResponseCreated("resp_1"), clock.tick())
    core.model_event(ev.AgentTranscriptDelta("item_1", "Your table is"), clock.tick())
    assert of(core.model_event(ev.AudioDelta("resp_1", "item_1", b64(800)), clock.tick()), PlayAudio)  # 100 ms
    core.transport_event(PlayedUpTo("item_1", 400), clock.tick(0.050))  # 50 ms heard, reported on time
    dropped = core.model_connected(
        under_way(core), clock.tick(0.010)
    )  # the recycled session is up, the call is not quiet
    assert isinstance(dropped[0], Log) and dropped[1:] == [DropNewModel()], "the old session stays"
    barge_in = core.model_event(ev.SpeechStarted("item_caller", 0), clock.tick(0.020))  # 80 ms in
    assert of(barge_in, ClearPlayback) == [ClearPlayback()]
    assert commands(barge_in) == [ev.Truncate("item_1", 80)], "the session that has the item truncates it"
    [line] = [action.line for action in of(barge_in, RecordLine)]
    assert line == TranscriptLine(CALL, "agent", "Your table", True, 80)  # 80 of 100 ms: the words heard

    # once the call is quiet again the recycle goes ahead, and the new session hears the conversation
    core.model_event(ev.SpeechStopped("item_caller", 0), clock.tick())
    core.model_event(ev.CallerTranscript("item_caller", "Seven, please."), clock.tick())
    quiet = core.model_event(ev.ResponseDone("resp_1", "cancelled"), clock.tick())
    assert of(quiet, ConnectModel) == [ConnectModel(ANY_ATTEMPT, ConnectPurpose.RECYCLE)]
    connected = core.model_connected(under_way(core), clock.tick())
    history = [line, TranscriptLine(CALL, "caller", "Seven, please.")]
    config = replace(session, instructions=conversation_so_far(session.instructions, history))
    assert connected[0] == UseNewModel() and isinstance(connected[1], Log)
    assert connected[2:] == [SendToModel(ev.UpdateSession(config))], "no replay of items, only instructions"
    assert "Seven, please." in (config.instructions or "")


def test_only_the_item_playing_is_estimated_at_a_barge_in():
    """Two items of one response, the second queued behind the first: 50 ms in, the caller has heard
    50 ms of the first and nothing of the second."""
    clock = Clock()
    core = ready_core(CallOptions(), clock)
    core.model_event(ev.ResponseCreated("resp_1"), clock.tick())
    core.model_event(ev.AudioDelta("resp_1", "item_a", b64(800)), clock.tick())  # 100 ms, playing from now
    core.model_event(ev.AudioDelta("resp_1", "item_b", b64(800)), clock.tick(0.000001))  # queued behind it
    barge_in = core.model_event(ev.SpeechStarted("item_caller", 0), clock.tick(0.050))
    assert commands(barge_in) == [ev.Truncate("item_a", 50), ev.Truncate("item_b", 0)]
