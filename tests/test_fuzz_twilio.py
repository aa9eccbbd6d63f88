"""Bad input from the Twilio side: hypothesis throws malformed, oversized, out-of-order and foreign
messages at the parser, the call core and a whole call session; then a junk stream runs next to a
good call through the real app and the good call does not notice."""

from __future__ import annotations

import asyncio
import base64
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voiceagent.bridge import CallSession
from voiceagent.call import CallCore
from voiceagent.realtime import events as ev
from voiceagent.testing.audio import load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller, new_sid
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment, serve_app
from voiceagent.transcripts import MemoryTranscriptSink
from voiceagent.twilio import messages as tw

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
def twilio_frames(draw) -> str | bytes:
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return draw(st.text(max_size=80))
    if kind == 2:
        return json.dumps(draw(json_values))
    message = {"event": draw(events), "streamSid": draw(stream_sids)}
    body = draw(st.sampled_from(["media", "mark", "start", "stop", "dtmf"]))
    if kind == 3:
        message[body] = draw(json_values)
    else:
        payload = base64.b64encode(draw(st.binary(max_size=400))).decode()
        message[body] = {"payload": payload, "name": draw(st.text(max_size=10)), "callSid": CALL,
                         "digit": "5", "customParameters": draw(json_values)}
    if kind == 5:
        message["extra"] = "x" * draw(st.integers(0, 70_000))
    return json.dumps(message)


@settings(max_examples=500, deadline=None)
@given(st.lists(twilio_frames(), max_size=30))
def test_the_parser_and_the_core_never_raise_on_junk(frames):
    core = CallCore(call_sid=CALL)
    core.twilio_event(tw.Start(STREAM, CALL, "AC", {}))
    for frame in frames:
        try:
            message = tw.parse(frame)
        except tw.BadMessage:
            continue
        core.twilio_event(message)  # must not raise, whatever arrives
    assert core.stream_sid == STREAM  # a second start never hijacks the stream


class MemorySocket:
    """A stand-in for the Twilio WebSocket: yields given frames, then a disconnect."""

    def __init__(self, frames: list[str | bytes]) -> None:
        self._frames = list(frames)
        self.sent: list[str] = []
        self.closed = False

    async def receive(self) -> dict:
        await asyncio.sleep(0)
        if not self._frames:
            return {"type": "websocket.disconnect", "code": 1000}
        frame = self._frames.pop(0)
        return {"type": "websocket.receive", "bytes": frame} if isinstance(frame, bytes) else {
            "type": "websocket.receive", "text": frame}

    async def send_text(self, data: str) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = True


class RecordingModel:
    """A stand-in model connection that records commands and never speaks."""

    def __init__(self) -> None:
        self.commands: list = []
        self.closed = asyncio.Event()
        self.dialect = type("D", (), {"name": "ga"})()
        self.close_code = None
        self.close_reason = None

    async def send(self, command) -> None:
        self.commands.append(command)

    def __aiter__(self):
        return self._events()

    async def _events(self):
        await self.closed.wait()
        return
        yield  # pragma: no cover

    async def close(self) -> None:
        self.closed.set()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(twilio_frames(), max_size=25))
def test_a_call_session_survives_any_stream_of_junk(frames):
    async def scenario() -> None:
        model = RecordingModel()

        async def connect():
            return model

        session = CallSession(CALL, connect=connect, session=ev.SessionConfig("hi", "alloy"),
                              sink=MemoryTranscriptSink(), recycle_seconds=None)
        session.start_model()
        socket = MemorySocket(frames)
        await asyncio.wait_for(session.run_stream(socket, tw.Start(STREAM, CALL, "AC", {})), timeout=30)
        assert session.end_reason is not None
        assert not session.end_reason.text.startswith("internal error"), session.end_reason
        assert socket.closed and model.closed.is_set()
        for data in socket.sent:  # whatever it sent back is one of the three shapes
            assert json.loads(data)["event"] in ("media", "mark", "clear")
        appended = [c for c in model.commands if isinstance(c, ev.AppendAudio)]
        well_formed_media = 0
        for frame in frames:
            try:
                message = tw.parse(frame)
            except tw.BadMessage:
                continue
            if isinstance(message, tw.Stop) and message.stream_sid == STREAM:
                break
            well_formed_media += isinstance(message, tw.Media) and message.stream_sid == STREAM
        assert len(appended) == well_formed_media

    asyncio.run(scenario())


def junk_frames(seed: int, count: int) -> list[str | bytes]:
    """Deterministic junk for the end-to-end run (the generative search happens above)."""
    rng = random.Random(seed)
    stream = new_sid("MZ")
    samples = [
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


async def test_a_junk_stream_leaves_a_concurrent_good_call_untouched():
    async with FakeRealtimeServer(speed=8.0, replies=("agent_goodbye",)) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            good = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            bad = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with good, bad:
                assert await good.dial() and await bad.dial()
                for frame in junk_frames(seed=7, count=40) + ["x" * 70_000]:  # the last one is oversized
                    if bad.closed:
                        break
                    await bad._ws.send(frame)  # noqa: SLF001 - a fake Twilio gone rogue
                greeting = load_fixture("agent_greeting")
                await good.wait_until(lambda: len(good.played) >= len(greeting) and not good.pending_marks,
                                      timeout=60)
                await good.say("caller_book_table")
                await good.wait_until(lambda: len(good.played) > len(greeting) + 8000, timeout=60)
                await bad.wait_closed(timeout=30)
                assert good.streaming
                await good.hangup()
            assert bytes(good.played[: len(greeting)]) == greeting
            assert good.violations == [] and bad.violations == []
            assert model.violations == []
            good_lines = [line for line in app.transcripts.lines if line.call_sid == good.call_sid]
            assert any(line.role == "caller" for line in good_lines)
