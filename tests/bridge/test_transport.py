"""The driver against the ``Transport`` protocol alone: a whole call over ``MemoryTransport``, which
speaks only the core's words (no Twilio, no marks, no JSON), and the recording tap around it."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

from voiceagent.bridge import CallBridge
from voiceagent.call import CallCore, CallerAudio, CallerHungUp, CallOptions, ClearPlayback, PlayAudio, PlayedUpTo
from voiceagent.realtime import events as ev
from voiceagent.recordings import CallRecording, RecordingTransport
from voiceagent.testing.seams import ManualClock, MemoryTransport, ScriptedModel
from voiceagent.testing.waiting import wait_until
from voiceagent.transcripts import MemoryTranscriptSink

WAIT = 5.0  # in memory: generous for a loaded machine, never reached when it works
CALL = "CA" + "1" * 32


def b64(n: int, fill: int = 0x55) -> str:
    return base64.b64encode(bytes([fill]) * n).decode()


async def test_a_whole_call_runs_over_a_transport_that_is_not_twilio() -> None:
    clock, model, sink, transport = ManualClock(), ScriptedModel(), MemoryTranscriptSink(), MemoryTransport()
    core = CallCore(CallOptions(greeting="Welcome"), call_sid=CALL, now=clock.now())
    bridge = CallBridge(core, connect=model, sink=sink, clock=clock)
    bridge.start()
    running = asyncio.create_task(bridge.run_stream(transport))
    await wait_until(lambda: model.connections and model.current.commands(ev.CreateResponse), WAIT)
    session = model.current
    session.emit(ev.ResponseCreated("r1"), ev.AudioDelta("r1", "g", b64(800)), ev.AudioDone("r1", "g"))
    session.emit(ev.AgentTranscriptDone("g", "Welcome"), ev.ResponseDone("r1", "completed"))
    await wait_until(lambda: transport.sent, WAIT)
    assert transport.sent == [PlayAudio("g", b64(800), 800)] and not transport.queued
    transport.push(PlayedUpTo("g", 800))
    await wait_until(lambda: sink.lines, WAIT)
    assert (sink.lines[0].role, sink.lines[0].text) == ("agent", "Welcome")
    transport.push(CallerAudio(b64(160, 0x7F), 160))
    await wait_until(lambda: session.commands(ev.AppendAudio), WAIT)
    assert session.commands(ev.AppendAudio) == [ev.AppendAudio(b64(160, 0x7F))]
    transport.push(CallerHungUp())
    await asyncio.wait_for(running, WAIT)
    assert bridge.ended is not None and bridge.ended.detail == "caller hung up"
    assert transport.closed and session.closed


class Files:
    """Where a ``CallRecording`` hands its writes: kept in memory."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, Path, bytes]] = []

    def put(self, op: str, path: Path, data: bytes = b"") -> None:
        self.ops.append((op, path, data))


def test_the_recording_tap_sees_both_directions_and_changes_nothing() -> None:
    inner, files = MemoryTransport(), Files()
    recording = CallRecording(Path("call.wav"), files)  # type: ignore[arg-type]  # the writer, in memory
    tapped = RecordingTransport(inner, recording)
    assert tapped.stream_id == inner.stream_id
    assert (tapped.receive, tapped.flush, tapped.close) == (inner.receive, inner.flush, inner.close)
    caller = CallerAudio(b64(8000, 0x10), 8000)  # a second of the caller: written at once
    play = PlayAudio("a", b64(400, 0x20), 400)
    tapped.play(play)
    tapped.play(ClearPlayback())  # nothing of it heard yet: cleared from the recording too
    assert tapped.decode(caller) == caller and inner.queued == [play, ClearPlayback()]
    assert [op for op, _, _ in files.ops] == ["open", "append"]
    stereo = files.ops[1][2]
    assert len(stereo) == 8000 * 4
    tapped.play(PlayAudio("b", b64(400, 0x20), 400))  # played from the caller's "now": the next second
    tapped.decode(caller)
    second = files.ops[2][2]
    assert stereo[2:4] == bytes(2) and second[2:4] != bytes(2)  # the agent's channel: silence, then "b"
