"""The per-call driver through the project's own seams: a scripted model, an in-memory Twilio socket and
a manual clock. Reconnects, retries, recycling, limits and teardown in milliseconds, no real time."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from voiceagent.bridge import CallBridge, TimerHandle
from voiceagent.call import CallCore, CallOptions, EndReason
from voiceagent.realtime import events as ev
from voiceagent.testing import (
    ManualClock,
    MemoryTwilioSocket,
    ModelStep,
    ScriptedModel,
    ScriptedModelConnection,
    UnexpectedCommand,
    wait_until,
)
from voiceagent.transcripts import MemoryTranscriptSink

WAIT = 5.0  # everything here is in memory: generous for a loaded machine, never reached when it works
CALL = "CA" + "1" * 32


def b64(n: int, fill: int = 0x55) -> str:
    return base64.b64encode(bytes([fill]) * n).decode()


@dataclass
class Rig:
    clock: ManualClock
    model: ScriptedModel
    socket: MemoryTwilioSocket
    sink: MemoryTranscriptSink
    bridge: CallBridge
    ended: list[CallBridge]
    stream: asyncio.Task[None] | None = None

    def attach(self) -> None:
        self.stream = asyncio.create_task(self.bridge.run_stream(self.socket.transport()))

    async def connected(self, count: int = 1) -> ScriptedModelConnection:
        """The newest model session, once there are ``count`` and the bridge has sent the newest something."""
        await wait_until(lambda: len(self.model.connections) >= count and self.model.connections[-1].sent, WAIT)
        return self.model.current

    async def armed(self) -> None:
        """Once the bridge has a timer armed on the manual clock."""
        await wait_until(lambda: self.clock.next_due is not None, WAIT)


RigFactory = Callable[..., Rig]


@pytest.fixture
async def rig_factory() -> AsyncIterator[RigFactory]:
    made: list[Rig] = []

    def build(options: CallOptions | None = None, *, attach: bool = True, script: tuple[ModelStep, ...] = ()) -> Rig:
        clock, model, socket, sink = ManualClock(), ScriptedModel(), MemoryTwilioSocket(), MemoryTranscriptSink()
        if script:
            model.script(*script)
        ended: list[CallBridge] = []
        core = CallCore(options or CallOptions(), call_sid=CALL, now=clock.now())
        bridge = CallBridge(core, connect=model, sink=sink, clock=clock, on_end=ended.append)
        rig = Rig(clock, model, socket, sink, bridge, ended)
        made.append(rig)
        bridge.start()
        if attach:
            rig.attach()
        return rig

    yield build
    for rig in made:  # never leave a call running behind a test
        await asyncio.wait_for(rig.bridge.end(EndReason.OPERATOR_HUNG_UP, "test over"), WAIT)
        rig.model.assert_complete()  # a scripted session saw exactly its script


async def test_a_call_from_greeting_to_hang_up(rig_factory: RigFactory) -> None:
    rig = rig_factory(CallOptions(greeting="Welcome"))
    session = await rig.connected()
    await wait_until(lambda: session.commands(ev.CreateResponse), WAIT)  # greeting asked once ready
    session.emit(ev.ResponseCreated("r1"), ev.AudioDelta("r1", "g", b64(800)), ev.AudioDone("r1", "g"))
    session.emit(ev.AgentTranscriptDone("g", "Welcome"), ev.ResponseDone("r1", "completed"))
    await wait_until(lambda: rig.socket.marks, WAIT)
    assert rig.socket.payloads == [b64(800)] and rig.sink.lines == []  # not heard yet: no line
    rig.socket.echo_all()
    await wait_until(lambda: rig.sink.lines, WAIT)
    assert (rig.sink.lines[0].role, rig.sink.lines[0].text) == ("agent", "Welcome")
    rig.socket.media(b64(160, 0x7F))
    await wait_until(lambda: session.commands(ev.AppendAudio), WAIT)
    assert session.commands(ev.AppendAudio) == [ev.AppendAudio(b64(160, 0x7F))]
    rig.socket.stop()
    await wait_until(lambda: rig.ended, WAIT)
    assert rig.bridge.ended is not None and rig.bridge.ended.detail == "caller hung up"
    assert session.closed and rig.socket.close_code == 1000


async def test_a_scripted_session_is_sent_exactly_the_setup_the_greeting_and_the_callers_audio(
    rig_factory: RigFactory,
) -> None:
    greeting = (ev.ResponseCreated("r1"), ev.AudioDelta("r1", "g", b64(800)), ev.AudioDone("r1", "g"))
    spoken = (ev.AgentTranscriptDone("g", "Welcome"), ev.ResponseDone("r1", "completed"))
    rig = rig_factory(
        CallOptions(greeting="Welcome"),
        script=(
            ModelStep(ev.UpdateSession),
            ModelStep(ev.CreateResponse, *greeting, *spoken),
            ModelStep(ev.AppendAudio(b64(160, 0x7F))),
        ),
    )
    await wait_until(lambda: rig.socket.marks, WAIT)
    rig.socket.echo_all()
    await wait_until(lambda: rig.sink.lines, WAIT)
    rig.socket.media(b64(160, 0x7F))
    await wait_until(lambda: rig.model.current.commands(ev.AppendAudio), WAIT)
    rig.socket.stop()
    await wait_until(lambda: rig.ended, WAIT)
    rig.model.assert_complete()


async def test_the_scripted_model_fails_on_a_send_it_did_not_expect_and_on_a_step_left_unsent() -> None:
    session = ScriptedModelConnection(steps=(ModelStep(ev.UpdateSession), ModelStep(ev.CreateResponse)))
    with pytest.raises(UnexpectedCommand, match="expected UpdateSession"):
        await session.send(ev.AppendAudio(b64(160)))
    with pytest.raises(UnexpectedCommand):
        session.assert_complete()  # the unexpected send is kept, whoever caught it
    unfinished = ScriptedModelConnection(steps=(ModelStep(None, ev.SpeechStarted("u", 0)), ModelStep(ev.Truncate)))
    with pytest.raises(UnexpectedCommand, match="not played out"):
        unfinished.assert_complete()
    never_connected = ScriptedModel()
    never_connected.script(ModelStep(ev.UpdateSession))
    with pytest.raises(UnexpectedCommand, match="never connected"):
        never_connected.assert_complete()


async def test_a_clear_never_overtakes_the_media_decided_before_it(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    await rig.connected()
    rig.model.current.emit(ev.AudioDelta("r1", "a", b64(1600)), ev.SpeechStarted("u", 0))
    await wait_until(lambda: rig.socket.clears, WAIT)
    assert [frame["event"] for frame in rig.socket.sent] == ["media", "mark", "clear"]
    await wait_until(lambda: rig.model.current.commands(ev.Truncate), WAIT)
    assert rig.model.current.commands(ev.Truncate) == [ev.Truncate("a", 0)]


async def test_a_dropped_session_is_replaced_with_the_conversation_replayed(rig_factory: RigFactory) -> None:
    rig = rig_factory()
    first = await rig.connected()
    first.emit(ev.CallerTranscript("u1", "A table for two."))
    await wait_until(lambda: rig.sink.lines, WAIT)
    rig.clock.advance(1800)
    first.drop(1001, "Your session hit the maximum duration of 30 minutes.")
    second = await rig.connected(2)
    await wait_until(lambda: second.sent, WAIT)
    [update] = second.commands(ev.UpdateSession)
    assert "Caller: A table for two." in update.config.instructions
    rig.socket.media(b64(160))
    await wait_until(lambda: second.commands(ev.AppendAudio), WAIT)
    assert rig.bridge.ended is None


async def test_an_unreachable_model_is_retried_on_the_clock_then_the_call_ends_with_the_apology() -> None:
    options = CallOptions(connect_attempts=3, retry_delay_seconds=0.5)
    clock, model, sink = ManualClock(), ScriptedModel(), MemoryTranscriptSink()
    model.fail_next(3)
    ended: list[CallBridge] = []
    bridge = CallBridge(
        CallCore(options, call_sid=CALL, now=clock.now()), connect=model, sink=sink, clock=clock, on_end=ended.append
    )
    bridge.start()
    await wait_until(lambda: model.attempts == 1 and clock.next_due is not None, WAIT)
    retry_at = clock.next_due
    assert retry_at is not None and 0.5 <= retry_at - clock.now() <= 0.625  # back-off with jitter
    clock.advance(retry_at - clock.now() - 0.001)
    await asyncio.sleep(0)
    assert model.attempts == 1  # not before its time
    clock.advance(0.001)
    await wait_until(lambda: model.attempts == 2 and clock.next_due is not None, WAIT)
    clock.advance(1.25)
    await wait_until(lambda: ended, WAIT)
    assert model.attempts == 3 and bridge.ended is not None and bridge.ended.model_unreachable


async def test_the_session_is_recycled_make_before_break(rig_factory: RigFactory) -> None:
    rig = rig_factory(CallOptions(recycle_seconds=60))
    first = await rig.connected()
    await rig.armed()
    rig.clock.advance(60)
    second = await rig.connected(2)
    await wait_until(lambda: first.closed, WAIT)
    assert isinstance(second.sent[0], ev.UpdateSession) and not second.closed
    rig.socket.media(b64(160))
    await wait_until(lambda: second.commands(ev.AppendAudio), WAIT)
    assert first.commands(ev.AppendAudio) == []


async def test_caller_silence_brings_a_goodbye_then_the_hang_up_once_it_was_heard(rig_factory: RigFactory) -> None:
    rig = rig_factory(CallOptions(caller_silence_seconds=30))
    session = await rig.connected()
    await rig.armed()
    rig.clock.advance(30)
    await wait_until(lambda: session.commands(ev.CreateResponse), WAIT)
    session.emit(ev.ResponseCreated("bye"), ev.AudioDelta("bye", "b", b64(400)), ev.ResponseDone("bye", "completed"))
    await wait_until(lambda: rig.socket.marks, WAIT)
    assert not rig.ended  # the goodbye has not been heard yet
    rig.socket.echo_all()
    await wait_until(lambda: rig.ended, WAIT)
    assert rig.bridge.ended is not None and rig.bridge.ended.detail == "the caller was silent"


async def test_caller_frames_do_not_re_arm_the_timer_yet_a_dead_stream_is_noticed_on_time(
    rig_factory: RigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig = rig_factory(CallOptions(stream_silence_seconds=20))
    armed: list[float] = []
    schedule = rig.clock.call_at

    def record_then_schedule(when: float, callback: Callable[[], None]) -> TimerHandle:
        armed.append(when)
        return schedule(when, callback)

    monkeypatch.setattr(rig.clock, "call_at", record_then_schedule)
    session = await rig.connected()
    await rig.armed()
    rig.clock.advance(6)  # past the session-ready deadline: the stream's deadline is the only one left
    before = len(armed)
    for frames in range(1, 11):  # a frame a second, each pushing the stream's deadline a second later
        rig.clock.advance(1)
        rig.socket.media(b64(160))

        def all_forwarded(count: int = frames) -> bool:
            return len(session.commands(ev.AppendAudio)) == count

        await wait_until(all_forwarded, WAIT)
    assert len(armed) == before  # the timer armed for the first deadline stays armed
    last_frame = rig.clock.now()
    rig.clock.advance(10)  # that timer fires early, finds nothing due and is armed for the real deadline
    assert armed[before:] == [last_frame + 20] and not rig.ended
    rig.clock.advance(10)
    await wait_until(lambda: rig.ended, WAIT)
    assert rig.bridge.ended is not None and rig.bridge.ended.detail == "the media stream stopped sending audio"


async def test_junk_on_the_stream_ends_that_call_at_the_limit(rig_factory: RigFactory) -> None:
    rig = rig_factory(CallOptions(max_bad_inputs=5))
    await rig.connected()
    for _ in range(4):
        rig.socket.push("not json")
    rig.socket.push(b"\x00binary")
    await wait_until(lambda: rig.ended, WAIT)
    assert rig.bridge.ended is not None and "malformed" in rig.bridge.ended.detail


async def test_a_prewarmed_call_without_a_stream_is_given_up_on_the_clock(rig_factory: RigFactory) -> None:
    rig = rig_factory(CallOptions(stream_wait_seconds=10), attach=False)
    await rig.connected()
    rig.clock.advance(10)
    await wait_until(lambda: rig.ended, WAIT)
    assert rig.model.current.closed


async def test_ending_from_outside_while_connecting_leaves_nothing_open(rig_factory: RigFactory) -> None:
    rig = rig_factory(attach=False)
    await asyncio.wait_for(rig.bridge.end(EndReason.SHUTDOWN, "the service is shutting down"), WAIT)
    await asyncio.sleep(0)
    assert all(connection.closed for connection in rig.model.connections)
    assert rig.ended == [rig.bridge]


async def test_a_recycle_that_finds_the_call_busy_is_closed_and_the_current_session_kept(
    rig_factory: RigFactory,
) -> None:
    rig = rig_factory(CallOptions(recycle_seconds=60))
    first = await rig.connected()
    rig.model.hold_connects()
    await rig.armed()
    rig.clock.advance(60)  # quiet: the recycle starts connecting...
    await wait_until(lambda: rig.model.attempts == 2, WAIT)
    first.emit(ev.ResponseCreated("r1"), ev.AudioDelta("r1", "a", b64(800)))  # ...and the agent starts talking
    await wait_until(lambda: rig.socket.payloads, WAIT)
    rig.model.release_connects()
    await wait_until(lambda: len(rig.model.connections) == 2 and rig.model.connections[1].closed, WAIT)
    assert not first.closed and rig.model.connections[1].sent == []
    rig.socket.media(b64(160))
    await wait_until(lambda: first.commands(ev.AppendAudio), WAIT)
