"""Bad input from the Twilio side: hypothesis throws malformed, oversized, out-of-order and foreign
messages at the media stream adapter, the call core and a whole call bridge; then a junk stream runs
next to a good call through the real app and the good call does not notice."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import GREETING, WAIT, call_stack, heard_in_full, played_more_than
from voiceagent.bridge import CallBridge
from voiceagent.call import CallCore, CallOptions, EndReason, StreamStarted
from voiceagent.realtime import events as ev
from voiceagent.testing import ScriptedModel, new_sid, wait_until
from voiceagent.transcripts import MemoryTranscriptSink
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter
from voiceagent.twilio.transport import TwilioTransport

STREAM = "MZ" + "c" * 32
CALL = "CA" + "d" * 32
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
events = st.sampled_from(["connected", "start", "media", "mark", "dtmf", "stop", "clear", "bogus", "", None, 7])
stream_sids = st.sampled_from([STREAM, "MZ" + "e" * 32, "", None, 3])


@st.composite
def twilio_frames(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return draw(st.text(max_size=80))
    if kind == 2:
        return json.dumps(draw(json_values))
    message: dict[str, Any] = {"event": draw(events), "streamSid": draw(stream_sids)}
    body = draw(st.sampled_from(["media", "mark", "start", "stop", "dtmf"]))
    if kind == 3:
        message[body] = draw(json_values)
    else:
        payload = base64.b64encode(draw(st.binary(max_size=400))).decode()
        message[body] = {
            "payload": payload,
            "name": draw(st.text(max_size=10)),
            "callSid": CALL,
            "digit": "5",
            "customParameters": draw(json_values),
        }
    if kind == 5:
        message["extra"] = "x" * draw(st.integers(0, 70_000))
    return json.dumps(message)


def asgi(frame: str | bytes) -> dict[str, Any]:
    """The ASGI message a server hands over for one WebSocket frame."""
    if isinstance(frame, bytes):
        return {"type": "websocket.receive", "bytes": frame}
    return {"type": "websocket.receive", "text": frame}


def start() -> tw.Start:
    return tw.Start(STREAM, CALL, "AC" + "e" * 32)


@settings(max_examples=100, deadline=None)
@given(st.lists(twilio_frames(), max_size=30))
def test_the_adapter_and_the_core_never_raise_on_junk(frames: list[str | bytes]) -> None:
    now = 1000.0
    core = CallCore(CallOptions(), call_sid=CALL, now=now)
    adapter = MediaStreamAdapter(start())
    core.start(now)
    core.transport_event(StreamStarted(), now)
    for frame in frames:
        now += 0.02
        event = adapter.receive(asgi(frame))
        if event is not None:
            core.transport_event(event, now)  # must not raise, whatever arrives
    assert adapter.stream_sid == STREAM  # a second start never hijacks the stream


class MemorySocket:
    """A stand-in for the Twilio WebSocket: yields given frames, then a disconnect."""

    def __init__(self, frames: list[str | bytes]) -> None:
        self._frames = list(frames)
        self.sent: list[str] = []
        self.closed = False

    async def receive(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        if not self._frames:
            return {"type": "websocket.disconnect", "code": 1000}
        return asgi(self._frames.pop(0))

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = True


def well_formed_media_before_stop(frames: list[str | bytes]) -> int:
    """How many frames are media for our stream before it stops: exactly what the model must be sent."""
    count = 0
    for frame in frames:
        try:
            message = tw.parse(frame)
        except tw.BadMessage:
            continue
        if isinstance(message, tw.Stop) and message.stream_sid == STREAM:
            break
        count += isinstance(message, tw.Media) and message.stream_sid == STREAM
    return count


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(twilio_frames(), max_size=25))
def test_a_call_bridge_survives_any_stream_of_junk(frames: list[str | bytes]) -> None:
    async def scenario() -> None:
        model = ScriptedModel()  # confirms the μ-law set-up and never speaks
        core = CallCore(CallOptions(), call_sid=CALL, now=asyncio.get_running_loop().time())
        bridge = CallBridge(core, connect=model, sink=MemoryTranscriptSink())
        bridge.start()
        await wait_until(lambda: model.connections and model.current.sent, WAIT)  # being set up: audio will flow
        socket = MemorySocket(frames)
        await asyncio.wait_for(bridge.run_stream(TwilioTransport(socket, MediaStreamAdapter(start()))), timeout=WAIT)
        assert bridge.ended is not None
        assert bridge.ended.reason is not EndReason.INTERNAL_ERROR, bridge.ended
        assert socket.closed and all(session.closed for session in model.connections)
        for data in socket.sent:  # whatever it sent back is one of the three shapes
            assert json.loads(data)["event"] in ("media", "mark", "clear")
        appended = sum(len(session.commands(ev.AppendAudio)) for session in model.connections)
        assert appended == well_formed_media_before_stop(frames)

    asyncio.run(scenario())


def junk_frames(seed: int, count: int) -> list[str | bytes]:
    """Deterministic junk for the end-to-end run (the generative search happens above)."""
    rng = random.Random(seed)
    stream = new_sid("MZ")
    samples: list[str | bytes] = [
        b"\x00\x01binary",
        "not json at all",
        "[]",
        json.dumps({"event": "media", "streamSid": stream}),
        json.dumps({"event": "media", "streamSid": "MZ" + "0" * 32, "media": {"payload": "AAAA"}}),
        json.dumps({"event": "mark", "streamSid": stream, "mark": {}}),
        json.dumps({"event": "mark", "streamSid": stream, "mark": {"name": "never-sent"}}),
        json.dumps({"event": "unknown", "streamSid": stream}),
        json.dumps({"event": "start", "streamSid": stream, "start": {"callSid": "CA" + "9" * 32}}),
        json.dumps({"event": "media", "streamSid": stream, "media": {"payload": 12}}),
    ]
    return [rng.choice(samples) for _ in range(count)]


async def test_a_junk_stream_leaves_a_concurrent_good_call_untouched() -> None:
    async with call_stack(replies=("agent_goodbye",)) as stack:
        model, app = stack.model, stack.app
        good, bad = stack.caller(), stack.caller()
        async with good, bad:
            assert await good.dial() and await bad.dial()
            for frame in junk_frames(seed=7, count=40) + ["x" * 70_000]:  # the last one is oversized
                if not await bad.send_frame(frame):
                    break  # the app has had enough of it
            await good.wait_until(heard_in_full(good, len(GREETING)), timeout=WAIT)
            await good.say("caller_book_table")
            await good.wait_until(played_more_than(good, len(GREETING) + 8000), timeout=WAIT)
            await bad.wait_closed(timeout=WAIT)
            assert good.streaming
            await good.hangup()
        assert bytes(good.played[: len(GREETING)]) == GREETING
        assert good.violations == [] and bad.violations == []
        assert model.violations == []
        good_lines = [line for line in app.transcripts.lines if line.call_sid == good.call_sid]
        assert any(line.role == "caller" for line in good_lines)
