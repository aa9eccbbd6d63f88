"""Property tests: random interleavings of model deltas, Twilio playback, mark echoes, clears and caller
speech, through the real call core and the real Twilio adapter, checked against the truncate rule
(docs/protocol.md §2) and the mark semantics (§1, "Outbound messages and marks").

A tiny Twilio model plays what the adapter sends (JSON frames, parsed), echoes marks exactly as Twilio
does (once the audio queued ahead of them has played; every pending one at once on ``clear``) and keeps
the ground truth of how many bytes of each agent item the caller actually heard.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from core_helpers import (
    STREAM,
    Clock,
    b64,
    commands,
    decoded_size,
    mark_frame,
    media_frame,
    of,
    ready_core,
    start_frame,
)
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from voiceagent.call import (
    CallerAudio,
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
from voiceagent.realtime import events as ev
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter

BYTES_PER_MS = 8  # μ-law, 8 kHz


@dataclass
class TwilioModel:
    """Twilio's side of a bidirectional stream, as far as playback goes."""

    queue: deque[tuple[str, str, int]] = field(default_factory=deque)  # ("audio", item, n) | ("mark", name, 0)
    heard: dict[str, int] = field(default_factory=dict)  # item -> bytes the caller heard (ground truth)
    in_flight: deque[str] = field(default_factory=deque)  # mark echoes sent, not yet read by the adapter
    at_mark: dict[str, tuple[str, int] | None] = field(default_factory=dict)  # mark -> (item, heard) or cleared
    mark_items: dict[str, str] = field(default_factory=dict)  # mark -> item of the audio just before it
    clears: int = 0

    def accept(self, frame: str, item: str | None) -> None:
        message = json.loads(frame)
        assert message["streamSid"] == STREAM
        if message["event"] == "media":
            assert set(message) == {"event", "streamSid", "media"} and set(message["media"]) == {"payload"}
            assert item is not None
            self.queue.append(("audio", item, decoded_size(message["media"]["payload"])))
        elif message["event"] == "mark":
            assert set(message) == {"event", "streamSid", "mark"} and set(message["mark"]) == {"name"}
            self.queue.append(("mark", message["mark"]["name"], 0))
            self._echo_reached()
        elif message["event"] == "clear":
            assert set(message) == {"event", "streamSid"}
            self.clears += 1
            for kind, name, _ in self.queue:
                if kind == "mark":
                    self.at_mark[name] = None  # echoed because cleared, not because played
                    self.in_flight.append(name)
            self.queue.clear()
        else:
            raise AssertionError(f"a message Twilio does not accept: {frame}")

    def play(self, budget: int) -> None:
        """The caller hears up to ``budget`` more bytes of the queue."""
        while budget > 0 and self.queue:
            kind, item, size = self.queue[0]
            assert kind == "audio"
            step = min(size, budget)
            self.heard[item] = self.heard.get(item, 0) + step
            budget -= step
            if step == size:
                self.queue.popleft()
            else:
                self.queue[0] = ("audio", item, size - step)
            self._echo_reached()

    def _echo_reached(self) -> None:
        while self.queue and self.queue[0][0] == "mark":
            _, name, _ = self.queue.popleft()
            self.at_mark[name] = self._heard_at(name)
            self.in_flight.append(name)

    def _heard_at(self, name: str) -> tuple[str, int]:
        item = self.mark_items[name]
        return (item, self.heard.get(item, 0))


@dataclass
class Harness:
    """The core, the real adapter and the Twilio model wired together, with the test's own books."""

    server_interrupts: bool = True
    drop_void_echoes: bool = False  # deliver void echoes to the adapter, or lose them on the way
    clock: Clock = field(default_factory=Clock)
    twilio: TwilioModel = field(default_factory=TwilioModel)
    adapter: MediaStreamAdapter | None = None
    log: list[Action] = field(default_factory=list)  # every action of the core, in order
    # the test's books
    item_no: int = 1
    session: int = 1
    sessions: dict[str, int] = field(default_factory=dict)  # item -> model session that produced it
    response: str | None = None
    received: dict[str, int] = field(default_factory=dict)  # item -> bytes the model sent (before its truncate)
    expected_end: dict[str, int] = field(default_factory=dict)  # item -> bytes handed to the transport
    largest_chunk: dict[str, int] = field(default_factory=dict)
    acked: dict[str, int] = field(default_factory=dict)  # item -> offset of the latest live echo
    truncated: dict[str, int | None] = field(default_factory=dict)  # item -> audio_end_ms (None: old session)
    held: list[tuple[str, str]] = field(default_factory=list)  # deltas before the stream started
    outstanding: set[str] = field(default_factory=set)  # marks sent and not yet echoed to the adapter
    void: set[str] = field(default_factory=set)  # marks whose echo a clear made void
    lines: dict[str, RecordLine] = field(default_factory=dict)  # item -> its transcript line
    ending: bool = False

    def __post_init__(self) -> None:
        self.core = ready_core(CallOptions(server_interrupts=self.server_interrupts), self.clock, stream=False)

    @property
    def item(self) -> str:
        return f"item_{self.item_no}"

    def text_of(self, item: str) -> str:
        return f"words of {item}"

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
                self.twilio.accept(mark, action.item_id)
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
        assert line.role == "agent"
        [item] = [item for item in self.received if self.text_of(item) == line.text]
        assert item not in self.lines, "an agent line is recorded once"
        self.lines[item] = record
        heard_in_full = self.acked.get(item, 0) >= self.received[item]
        if item in self.truncated:
            assert line.interrupted
            ms = self.truncated[item]
            if ms is not None:
                assert line.heard_ms == ms
        else:
            assert line.interrupted is not heard_in_full
        if not line.interrupted:
            assert self.twilio.heard.get(item, 0) >= self.received[item], "recorded before it was heard"
        else:
            assert line.heard_ms is not None
            assert line.heard_ms * BYTES_PER_MS <= self.twilio.heard.get(item, 0)

    # -------------------------------------------------------------- the operations

    def start_stream(self) -> None:
        start = tw.parse_received(start_frame())
        assert isinstance(start, tw.Start)
        self.adapter = MediaStreamAdapter(start)
        flush = [(item, payload) for item, payload in self.held if item not in self.truncated]
        self.held.clear()
        actions = self.run(self.core.transport_event(StreamStarted(), self.clock.tick()))
        expected = []
        for item, payload in flush:
            self.expected_end[item] = self.expected_end.get(item, 0) + decoded_size(payload)
            expected.append(PlayAudio(item, payload, self.expected_end[item]))
        assert of(actions, PlayAudio) == expected, "held audio is flushed in order, untouched"

    def delta(self, size: int, fill: int) -> None:
        if self.response is None:
            self.response = f"resp_{self.item_no}"
            self.run(self.core.model_event(ev.ResponseCreated(self.response), self.clock.tick()))
        item, payload = self.item, b64(size, fill)
        if item not in self.sessions:
            self.sessions[item] = self.session
            self.run(self.core.model_event(ev.AgentTranscriptDelta(item, self.text_of(item)), self.clock.tick()))
        actions = self.run(self.core.model_event(ev.AudioDelta(self.response, item, payload), self.clock.tick()))
        if item in self.truncated:
            assert actions == [], "a late delta of a truncated item is dropped"
            return
        self.received[item] = self.received.get(item, 0) + size
        self.largest_chunk[item] = max(self.largest_chunk.get(item, 0), size)
        if self.adapter is None:
            assert of(actions, PlayAudio) == []
            self.held.append((item, payload))
        else:
            self.expected_end[item] = self.expected_end.get(item, 0) + size
            assert of(actions, PlayAudio) == [PlayAudio(item, payload, self.expected_end[item])]

    def item_done(self) -> None:
        if self.response is None or self.item not in self.sessions:
            return
        self.run(self.core.model_event(ev.AudioDone(self.response, self.item), self.clock.tick()))
        done = ev.AgentTranscriptDone(self.item, self.text_of(self.item))
        self.run(self.core.model_event(done, self.clock.tick()))
        self.item_no += 1

    def response_done(self) -> None:
        if self.response is None:
            return
        self.run(self.core.model_event(ev.ResponseDone(self.response, "completed"), self.clock.tick()))
        self.response = None
        if self.item in self.sessions:
            self.item_no += 1

    def play(self, budget: int) -> None:
        self.twilio.play(budget)

    def echo(self, count: int) -> None:
        for _ in range(min(count, len(self.twilio.in_flight))):
            self._deliver(self.twilio.in_flight.popleft())

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
        actions = self.run(self.core.transport_event(event, self.clock.tick()))
        assert not of(actions, PlayAudio) and not of(actions, ClearPlayback) and not commands(actions)

    def speech(self) -> None:
        now = self.clock.tick()
        unplayed = [
            item
            for item in self.received
            if item not in self.truncated and self.received[item] > self.acked.get(item, 0)
        ]
        clears_before = self.twilio.clears
        heard_at_clear = dict(self.twilio.heard)  # the clear goes out with the truncate: nothing plays between
        echo_due = {self.twilio.mark_items[name] for name in self.twilio.in_flight if name not in self.void}
        response_live = self.response is not None
        actions = self.run(self.core.model_event(ev.SpeechStarted("item_caller", 0), now))

        cleared = self.twilio.clears - clears_before
        assert cleared == (1 if unplayed and self.adapter is not None else 0), "clear exactly when audio is unplayed"
        truncates = [command for command in commands(actions) if isinstance(command, ev.Truncate)]
        assert [t.item_id for t in truncates] == [item for item in unplayed if self.sessions[item] == self.session]
        if not unplayed:
            assert truncates == [], "no truncate when nothing was unplayed"
        for truncate in truncates:
            item, ms = truncate.item_id, truncate.audio_end_ms
            heard, acked = heard_at_clear.get(item, 0), self.acked.get(item, 0)
            assert ms >= 0
            assert ms * BYTES_PER_MS <= self.received[item], "never past the audio the model produced"
            assert ms * BYTES_PER_MS <= heard, "never past what the caller heard"
            assert ms * BYTES_PER_MS > min(acked, self.received[item]) - BYTES_PER_MS, "at least what marks acked"
            assert ms == min(acked, self.received[item]) // BYTES_PER_MS
            if item not in echo_due:
                # every echo of its audio that had played was in: within one chunk of what was heard
                assert heard - ms * BYTES_PER_MS < self.largest_chunk[item] + BYTES_PER_MS
        for item in unplayed:
            old_session = self.sessions[item] != self.session
            self.truncated[item] = None if old_session else next(t.audio_end_ms for t in truncates if t.item_id == item)
        if self.adapter is None:
            self.held = [(item, payload) for item, payload in self.held if item not in self.truncated]
        cancels = [command for command in commands(actions) if isinstance(command, ev.CancelResponse)]
        assert len(cancels) == (1 if response_live and not self.server_interrupts else 0)

    def speech_stopped(self) -> None:
        actions = self.run(self.core.model_event(ev.SpeechStopped("item_caller", 0), self.clock.tick()))
        assert not commands(actions) and not of(actions, PlayAudio)

    def caller_audio(self, size: int) -> None:
        if self.adapter is None:
            return
        payload = b64(size, 0x7F)
        event = self.adapter.receive(media_frame(payload))
        assert event == CallerAudio(payload, size)
        actions = self.run(self.core.transport_event(event, self.clock.tick()))
        assert commands(actions) == [ev.AppendAudio(payload)], "caller audio reaches the model untouched"

    def reconnect(self) -> None:
        """The model session drops and a new one takes over; items of the old one can no longer be truncated."""
        actions = self.run(self.core.model_lost(1006, "dropped", self.clock.tick()))
        assert of(actions, ConnectModel) == [ConnectModel(ConnectPurpose.RECONNECT)]
        actions = self.run(self.core.model_connected(self.clock.tick()))
        assert commands(actions)[0] == ev.UpdateSession(self.core.options.session)
        self.run(self.core.model_event(ev.SessionUpdated(ev.PCMU, ev.PCMU), self.clock.tick()))
        self.session += 1
        self.response = None
        if self.item in self.sessions:
            self.item_no += 1

    def finish(self) -> None:
        """Every echo comes in, the queue plays out, the caller hangs up: all is recorded, nothing leaks."""
        self.echo(len(self.twilio.in_flight))
        if self.adapter is not None:
            self.play(10**9)
            self.echo(len(self.twilio.in_flight))
            assert not self.outstanding, "every live mark was echoed"
        self.ending = True
        actions = self.run(self.core.hang_up("caller hung up", self.clock.tick()))
        assert len(of(actions, EndCall)) == 1
        assert set(self.lines) == set(self.received), "every agent item with audio has exactly one line"
        for item, ms in self.truncated.items():
            assert self.lines[item].line.interrupted
            if ms is not None:
                assert self.lines[item].line.heard_ms == ms


WEIGHTS = {  # out of 100: mostly audio flowing, playing and being acknowledged
    "delta": 30,
    "play": 25,
    "echo": 20,
    "speech": 5,
    "speech_stopped": 2,
    "item_done": 6,
    "response_done": 4,
    "caller_audio": 6,
    "reconnect": 2,
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
    reconnects = 0
    for index, (kind, size, fill) in enumerate(operations):
        if index == stream_at:
            harness.start_stream()
        if kind == "delta":
            harness.delta(size, fill)
        elif kind == "play":
            if harness.adapter is not None:
                harness.play(1 + size // 2)
        elif kind == "echo":
            harness.echo(1 + fill % 5)
        elif kind == "caller_audio":
            harness.caller_audio(1 + size % 320)
        elif kind == "reconnect":
            reconnects += 1
            if reconnects <= 2:  # a few sessions are enough
                harness.reconnect()
        else:
            getattr(harness, kind)()
    if harness.adapter is None:
        harness.start_stream()
    harness.finish()


FAST = settings(
    deadline=None,
    derandomize=True,  # the same examples on every run: deterministic
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow],
)


@settings(FAST, max_examples=225)
@given(OPERATIONS, STREAM_START, st.booleans())
def test_truncation_invariants_hold_under_any_interleaving(operations, stream_at, server_interrupts):
    drive(Harness(server_interrupts=server_interrupts), decode(operations), stream_at)


@settings(FAST, max_examples=75)
@given(OPERATIONS, STREAM_START)
def test_void_echoes_change_nothing(operations, stream_at):
    """The same run with the echoes of cleared marks delivered or lost: the core does exactly the same."""
    delivered, lost = Harness(), Harness(drop_void_echoes=True)
    drive(delivered, decode(operations), stream_at)
    drive(lost, decode(operations), stream_at)
    assert delivered.log == lost.log
    assert delivered.core.figures == lost.core.figures


@settings(FAST, max_examples=100)
@given(
    st.lists(st.integers(1, 2000), min_size=1, max_size=8),
    st.data(),
)
def test_a_barge_in_mid_item_truncates_at_the_last_acknowledged_chunk(sizes, data):
    """One item, partly played, some of the echoes in: the truncate lands where the marks say, exactly."""
    harness = Harness()
    harness.start_stream()
    for size in sizes:
        harness.delta(size, 0x33)
    total = sum(sizes)
    heard = data.draw(st.integers(0, total - 1), label="bytes the caller heard")
    harness.play(heard)
    reached = len(harness.twilio.in_flight)  # marks whose audio has fully played
    delivered = data.draw(st.integers(0, reached), label="echoes in before the caller speaks")
    harness.echo(delivered)
    harness.speech()

    ends = [sum(sizes[: n + 1]) for n in range(len(sizes))]
    acknowledged = ends[delivered - 1] if delivered else 0
    assert ends[:reached] == [end for end in ends if end <= heard]
    truncates = [command for command in commands(harness.log) if isinstance(command, ev.Truncate)]
    assert truncates == [ev.Truncate("item_1", acknowledged // BYTES_PER_MS)]
    assert harness.twilio.clears == 1 and harness.twilio.queue == deque()

    harness.delta(160, 0x44)  # late: dropped (asserted inside)
    harness.response_done()
    harness.delta(320, 0x55)  # the next response's item plays with fresh marks
    assert harness.item == "item_2" and harness.expected_end["item_2"] == 320
    harness.play(320)
    harness.echo(len(harness.twilio.in_flight))
    assert harness.acked["item_2"] == 320
    harness.finish()


def test_a_recycle_completing_mid_response_is_dropped_so_the_heard_item_stays_truncatable():
    clock = Clock()
    core = ready_core(CallOptions(recycle_seconds=10), clock)
    assert core.handle_timer(clock.tick(11)) == [ConnectModel(ConnectPurpose.RECYCLE)]  # quiet: recycle
    # while the new session is connecting, the caller speaks and the old session answers
    core.model_event(ev.ResponseCreated("resp_1"), clock.tick())
    assert of(core.model_event(ev.AudioDelta("resp_1", "item_1", b64(800)), clock.tick()), PlayAudio)
    core.transport_event(PlayedUpTo("item_1", 400), clock.tick())  # 50 ms heard, 50 ms still to play
    core.model_connected(clock.tick())  # the recycled session is up: the driver routes to it from now on
    barge_in = core.model_event(ev.SpeechStarted("item_caller", 0), clock.tick())
    assert of(barge_in, ClearPlayback) == [ClearPlayback()]
    assert ev.Truncate("item_1", 50) in commands(barge_in), "what the caller heard never reaches the model"
