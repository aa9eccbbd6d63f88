"""The fake Twilio caller against a tiny app: the webhook, the signed upgrade, the media clock, marks,
clear, malformed messages and the ways a call ends.

Timing is asserted through the caller's media clock and byte accounting, never through wall clocks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse

from voiceagent.testing import (
    FRAME_BYTES,
    SILENCE_BYTE,
    FakeTwilioCaller,
    load_fixture,
    serve_asgi,
    wait_until,
    webhook_params,
)
from voiceagent.testing.twilio_dial import Dial, Hangup, OtherVerb, Say, TwimlRefused, parse_after_stream, parse_twiml
from voiceagent.testing.twilio_wire import (
    OutboundBuffer,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    ProtocolViolation,
    next_tick_at,
    parse_outbound,
)

AUTH_TOKEN = "test-auth-token"
WAIT = 10.0
SID = re.compile(r"^[A-Z]{2}[0-9a-f]{32}$")
STREAM_PARAMETERS = {"token": "secret-token", "greeting": "hello"}


# ------------------------------------------------------------------------------ the app under test


@dataclass
class WebhookCall:
    url: str
    form: dict[str, str]
    headers: dict[str, str]


class ServerPeer:
    """The app's end of one media stream; the test drives it directly."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.headers = dict(websocket.headers)
        self.received: list[dict[str, Any]] = []
        self.disconnected = False
        self._changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            self.received.append(json.loads(message["text"]))
            self._notify()
        self.disconnected = True
        self._notify()

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [message for message in self.received if message["event"] == kind]

    def echoed(self) -> list[str]:
        return [message["mark"]["name"] for message in self.events("mark")]

    async def send(self, message: dict[str, Any]) -> None:
        await self.websocket.send_text(json.dumps(message))

    async def send_media(self, stream_sid: str, audio: bytes) -> None:
        payload = base64.b64encode(audio).decode()
        await self.send({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})

    async def send_mark(self, stream_sid: str, name: str) -> None:
        await self.send({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})

    async def wait_for(self, predicate: Callable[[], Any]) -> None:
        await wait_until(predicate, WAIT, wake=lambda: self._changed.wait())

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()


def connect_stream_twiml(stream_url: str, **connect_attributes: str) -> str:
    response = VoiceResponse()
    connect = Connect(**connect_attributes)
    stream = connect.stream(url=stream_url)
    for name, value in STREAM_PARAMETERS.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


class FakeApp:
    """A minimal voice app: the webhook answers ``twiml(stream_url)``; streams are handed to the test."""

    def __init__(self) -> None:
        self.base_url = ""
        self.reset()

    def reset(self) -> None:
        """Forget the previous test: default TwiML, streams accepted, nothing received."""
        self.twiml: Callable[[str], str] = connect_stream_twiml
        self.accept_streams = True
        self.stream_url: str | None = None
        self.webhooks: list[WebhookCall] = []
        self.peers: asyncio.Queue[ServerPeer] = asyncio.Queue()
        self.actions: list[WebhookCall] = []  # requests to the <Connect action> (/twilio/after)
        self.action_answer = Response(
            '<?xml version="1.0"?><Response><Hangup/></Response>', media_type="application/xml"
        )

    def asgi(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/twilio/voice", self.voice, methods=["POST"]),
                Route("/twilio/after", self.after, methods=["GET", "POST"]),
                WebSocketRoute("/twilio/media", self.media),
            ]
        )

    async def after(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        self.actions.append(WebhookCall(str(request.url), form, dict(request.headers)))
        return self.action_answer

    async def voice(self, request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        self.webhooks.append(WebhookCall(str(request.url), form, dict(request.headers)))
        self.stream_url = f"ws://{request.url.netloc}/twilio/media"
        return Response(self.twiml(self.stream_url), media_type="application/xml")

    async def media(self, websocket: WebSocket) -> None:
        if not self.accept_streams:
            await websocket.close(code=1008)  # before accept: the upgrade is refused with HTTP 403
            return
        await websocket.accept()
        peer = ServerPeer(websocket)
        self.peers.put_nowait(peer)
        await peer.run()

    async def next_peer(self) -> ServerPeer:
        return await asyncio.wait_for(self.peers.get(), WAIT)


def serving(app: Starlette) -> AbstractAsyncContextManager[str]:
    """``app`` on loopback, over the sans-I/O websockets implementation, closing within 5 s."""
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", ws="websockets-sansio", timeout_graceful_shutdown=5
    )
    return serve_asgi(app, config=config, shutdown_seconds=WAIT)


# One fake app server for the whole module (starting and stopping uvicorn costs ~0.2 s): the tests that
# talk to it run on the module's event loop, and each starts from a fresh FakeApp state.
on_the_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served_app() -> AsyncIterator[FakeApp]:
    app = FakeApp()
    async with serving(app.asgi()) as app.base_url:
        yield app


@pytest.fixture
def fake_app(served_app: FakeApp) -> FakeApp:
    served_app.reset()
    return served_app


@asynccontextmanager
async def streaming(fake_app: FakeApp, speed: float = 1.0) -> AsyncIterator[tuple[FakeTwilioCaller, ServerPeer]]:
    """A caller whose stream has started, and the app's end of that stream."""
    async with FakeTwilioCaller(fake_app.base_url, auth_token=AUTH_TOKEN, speed=speed) as caller:
        assert await caller.dial(), caller.refusal
        peer = await fake_app.next_peer()
        await peer.wait_for(lambda: peer.events("start"))
        yield caller, peer


@pytest_asyncio.fixture(loop_scope="module")
async def call(fake_app: FakeApp) -> AsyncIterator[tuple[FakeTwilioCaller, ServerPeer]]:
    """A stream at real time: the timing tests below need the media clock's 20 ms of margin."""
    async with streaming(fake_app) as (caller, peer):
        yield caller, peer


def numbered(peer: ServerPeer) -> list[dict[str, Any]]:
    return [message for message in peer.received if "sequenceNumber" in message]


def timeline_ms(caller: FakeTwilioCaller, kind: str) -> list[int]:
    return [ms for ms, entry_kind, _ in caller.timeline if entry_kind == kind]


# ------------------------------------------------------------------------------ dialling


@on_the_module_loop
async def test_webhook_form_is_twilios_and_its_signature_validates(fake_app: FakeApp) -> None:
    async with FakeTwilioCaller(fake_app.base_url, auth_token=AUTH_TOKEN, from_number="+15550001111") as caller:
        assert await caller.dial()
    [webhook] = fake_app.webhooks
    url = fake_app.base_url + "/twilio/voice"
    validator = RequestValidator(AUTH_TOKEN)
    assert validator.validate(url, webhook.form, webhook.headers["x-twilio-signature"])
    assert not validator.validate(url, {**webhook.form, "From": "+15559999999"}, webhook.headers["x-twilio-signature"])
    assert webhook.headers["content-type"].startswith("application/x-www-form-urlencoded")
    form = webhook.form
    assert form["AccountSid"] == caller.account_sid and SID.match(form["AccountSid"]) and form["AccountSid"][:2] == "AC"
    assert form["CallSid"] == caller.call_sid and SID.match(form["CallSid"]) and form["CallSid"][:2] == "CA"
    assert form["ApiVersion"] == "2010-04-01"
    assert form["CallStatus"] == "ringing"
    assert form["Direction"] == "inbound"
    assert form["From"] == form["Caller"] == "+15550001111"
    assert form["To"] == form["Called"] == "+15557654321"
    assert {"FromCountry", "ToCountry", "CallerCity", "CalledState"} <= form.keys()
    assert caller.http_status == 200 and caller.twiml_text == connect_stream_twiml(fake_app.stream_url or "")


@on_the_module_loop
async def test_upgrade_is_signed_and_start_carries_the_parameters(
    fake_app: FakeApp, call: tuple[FakeTwilioCaller, ServerPeer]
) -> None:
    caller, peer = call
    assert caller.stream_url == fake_app.stream_url
    assert RequestValidator(AUTH_TOKEN).validate(caller.stream_url, {}, peer.headers["x-twilio-signature"])
    assert caller.parameters == STREAM_PARAMETERS
    connected, start = peer.received[:2]
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert SID.match(caller.stream_sid) and caller.stream_sid.startswith("MZ")
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": caller.stream_sid,
        "start": {
            "accountSid": caller.account_sid,
            "streamSid": caller.stream_sid,
            "callSid": caller.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": STREAM_PARAMETERS,
        },
    }


@on_the_module_loop
async def test_no_signatures_without_an_auth_token(fake_app: FakeApp) -> None:
    async with FakeTwilioCaller(fake_app.base_url) as caller:
        assert await caller.dial()
        peer = await fake_app.next_peer()
    assert "x-twilio-signature" not in fake_app.webhooks[0].headers
    assert "x-twilio-signature" not in peer.headers


@on_the_module_loop
async def test_twiml_without_connect_ends_the_call(fake_app: FakeApp) -> None:
    def say_and_hang_up(_: str) -> str:
        response = VoiceResponse()
        response.say("Sorry, we are closed.")
        response.hangup()
        return str(response)

    fake_app.twiml = say_and_hang_up
    async with FakeTwilioCaller(fake_app.base_url, auth_token=AUTH_TOKEN) as caller:
        assert await caller.dial() is False
    assert caller.twiml_text is not None and "<Say>Sorry, we are closed.</Say><Hangup />" in caller.twiml_text
    assert caller.http_status == 200
    assert caller.stream_url is None
    assert caller.refusal is not None and "Hangup" in caller.refusal
    assert fake_app.peers.empty()


@on_the_module_loop
async def test_refused_upgrade_is_reported(fake_app: FakeApp) -> None:
    fake_app.accept_streams = False
    async with FakeTwilioCaller(fake_app.base_url, auth_token=AUTH_TOKEN) as caller:
        assert await caller.dial() is False
    assert caller.stream_url == fake_app.stream_url
    assert caller.refusal is not None and "403" in caller.refusal
    with pytest.raises(AssertionError, match="no media stream to wait on: 31920"):  # at once, not after 20 s
        await caller.wait_closed()


@on_the_module_loop
async def test_stream_url_with_a_query_string_is_refused(fake_app: FakeApp) -> None:
    fake_app.twiml = lambda url: connect_stream_twiml(url + "?token=abc")
    async with FakeTwilioCaller(fake_app.base_url) as caller:
        assert await caller.dial() is False
    assert caller.refusal is not None and "31920" in caller.refusal and "query" in caller.refusal
    assert fake_app.peers.empty()


# ------------------------------------------------------------------------------ inbound audio


@on_the_module_loop
async def test_inbound_frames_are_160_bytes_with_string_fields_and_consecutive_numbers(fake_app: FakeApp) -> None:
    async with streaming(fake_app, speed=8.0) as (caller, peer):  # a frame is the same at any speed
        words = load_fixture("caller_interrupt")
        await caller.say("caller_interrupt")
        assert words in caller.sent_audio
        sent_frames = len(caller.sent_audio) // FRAME_BYTES
        await peer.wait_for(lambda: len(peer.events("media")) >= sent_frames)

    media = peer.events("media")
    for chunk, message in enumerate(media, start=1):
        assert message.keys() == {"event", "sequenceNumber", "streamSid", "media"}
        assert message["streamSid"] == caller.stream_sid
        assert message["media"].keys() == {"track", "chunk", "timestamp", "payload"}
        assert message["media"]["track"] == "inbound"
        assert message["media"]["chunk"] == str(chunk)
        assert message["media"]["timestamp"] == str(chunk * 20)
        assert len(base64.b64decode(message["media"]["payload"])) == FRAME_BYTES
    sequence = [message["sequenceNumber"] for message in numbered(peer)]
    assert sequence == [str(n) for n in range(1, len(sequence) + 1)]
    heard = b"".join(base64.b64decode(message["media"]["payload"]) for message in media)
    assert heard == caller.sent_audio[: len(heard)]
    before_words = heard[: heard.index(words)]
    assert set(before_words) <= {SILENCE_BYTE}


@on_the_module_loop
async def test_says_queue_back_to_back_and_pause_sends_silence(fake_app: FakeApp) -> None:
    async with streaming(fake_app, speed=8.0) as (caller, _):  # queueing does not depend on the speed
        first, second = load_fixture("caller_interrupt")[:1000], load_fixture("caller_goodbye")[:1000]
        await asyncio.gather(caller.say(first), caller.say(second))
        assert first + second in caller.sent_audio
        sent_before, ms_before = len(caller.sent_audio), caller.media_ms
        await caller.pause(200)
    assert caller.media_ms - ms_before >= 200
    assert set(caller.sent_audio[sent_before:]) <= {SILENCE_BYTE}
    assert len(caller.sent_audio) - sent_before >= 200 * 8


@on_the_module_loop
async def test_dtmf_digit(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    await caller.press("7")
    await peer.wait_for(lambda: peer.events("dtmf"))
    [dtmf] = peer.events("dtmf")
    assert dtmf["streamSid"] == caller.stream_sid
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "7"}


# ------------------------------------------------------------------------------ speed


@on_the_module_loop
async def test_at_speed_s_the_clock_runs_faster_and_accounts_in_emulated_time(fake_app: FakeApp) -> None:
    loop = asyncio.get_running_loop()
    async with streaming(fake_app, speed=8.0) as (caller, peer):
        audio = load_fixture("agent_greeting")[:3200]  # 400 ms
        await peer.send_media(caller.stream_sid, audio)
        await peer.send_mark(caller.stream_sid, "m")
        started_wall, started_ms = loop.time(), caller.media_ms
        await caller.pause(1000)
        wall = loop.time() - started_wall
        await peer.wait_for(lambda: peer.echoed() == ["m"])
    assert caller.media_ms - started_ms >= 1000
    assert wall < 0.75  # 1 s of call in well under 1 s of wall time (nominally 1/8 s)
    [echo] = caller.echoes
    assert echo.played_bytes == len(audio) and caller.played == audio  # 160 bytes per 20 ms tick, as at speed 1
    assert echo.media_ms >= timeline_ms(caller, "media_out")[0] + 400
    assert caller.tick_seconds == pytest.approx(0.0025)


@pytest.mark.parametrize("speed", [0, -1.0, float("inf"), float("nan")])
def test_the_speed_must_be_positive_and_finite(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        FakeTwilioCaller("http://127.0.0.1:9", speed=speed)


# ------------------------------------------------------------------------------ playback and marks


@on_the_module_loop
async def test_mark_with_nothing_buffered_is_echoed_at_once(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    await peer.send_mark(caller.stream_sid, "idle")
    await peer.wait_for(lambda: peer.echoed() == ["idle"])
    [echo] = caller.echoes
    assert echo.played_bytes == 0 and not echo.cleared
    assert echo.media_ms == timeline_ms(caller, "mark")[0]
    [message] = peer.events("mark")
    assert message == {
        "event": "mark",
        "sequenceNumber": message["sequenceNumber"],
        "streamSid": caller.stream_sid,
        "mark": {"name": "idle"},
    }
    assert caller.violations == []


@on_the_module_loop
async def test_marks_echo_only_after_their_audio_is_played(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    audio = load_fixture("agent_greeting")
    first, second = audio[:1600], audio[1600:2400]  # 200 ms, then 100 ms
    await peer.send_media(caller.stream_sid, first)
    await peer.send_mark(caller.stream_sid, "a")
    await peer.send_media(caller.stream_sid, second)
    await peer.send_mark(caller.stream_sid, "b")
    await peer.wait_for(lambda: peer.echoed() == ["a", "b"])

    echo_a, echo_b = caller.echoes
    assert (echo_a.name, echo_a.played_bytes, echo_a.cleared) == ("a", 1600, False)
    assert (echo_b.name, echo_b.played_bytes, echo_b.cleared) == ("b", 2400, False)
    received_at = timeline_ms(caller, "media_out")[0]
    assert echo_a.media_ms == received_at + 200  # ten 20 ms ticks of 160 bytes
    assert echo_b.media_ms >= received_at + 300
    assert caller.played == caller.received_audio == first + second
    assert caller.marks_received == caller.marks_echoed == ["a", "b"]
    sequence = [message["sequenceNumber"] for message in numbered(peer)]
    assert sequence == [str(n) for n in range(1, len(sequence) + 1)]
    assert caller.violations == []


@on_the_module_loop
async def test_clear_drops_the_buffer_and_echoes_pending_marks_at_once(
    call: tuple[FakeTwilioCaller, ServerPeer],
) -> None:
    caller, peer = call
    audio = load_fixture("agent_reply_long")[:32000]  # 4 s
    await peer.send_media(caller.stream_sid, audio[:16000])
    await peer.send_mark(caller.stream_sid, "m1")
    await peer.send_media(caller.stream_sid, audio[16000:])
    await peer.send_mark(caller.stream_sid, "m2")
    await caller.wait_until(lambda: len(caller.played) >= 800, timeout=WAIT)
    await peer.send({"event": "clear", "streamSid": caller.stream_sid})
    await peer.wait_for(lambda: peer.echoed() == ["m1", "m2"])

    [clear] = caller.clears
    assert 800 <= clear.played_bytes < 16000
    assert clear.played_bytes + clear.dropped_bytes == len(audio)
    for echo in caller.echoes:
        assert echo.cleared and echo.media_ms == clear.media_ms and echo.played_bytes == clear.played_bytes
    assert caller.buffered_bytes == 0 and caller.pending_marks == []

    await caller.wait_until(lambda: caller.media_ms >= clear.media_ms + 100, timeout=WAIT)
    assert len(caller.played) == clear.played_bytes
    assert caller.played == audio[: clear.played_bytes]

    await peer.send_media(caller.stream_sid, audio[:320])
    await peer.send_mark(caller.stream_sid, "after")
    await peer.wait_for(lambda: peer.echoed() == ["m1", "m2", "after"])
    after = caller.echoes[-1]
    assert not after.cleared and after.played_bytes == clear.played_bytes + 320
    assert caller.violations == []


# ------------------------------------------------------------------------------ refusing bad messages

GOOD_PAYLOAD = base64.b64encode(b"\xff" * 160).decode()
OTHER_SID = "MZ" + "0" * 32

MALFORMED: dict[str, Callable[[str], Any]] = {
    "media extra field": lambda sid: {
        "event": "media",
        "streamSid": sid,
        "media": {"payload": GOOD_PAYLOAD},
        "sequenceNumber": "1",
    },
    "media.track": lambda sid: {
        "event": "media",
        "streamSid": sid,
        "media": {"payload": GOOD_PAYLOAD, "track": "outbound"},
    },
    "media without payload": lambda sid: {"event": "media", "streamSid": sid, "media": {}},
    "media without media": lambda sid: {"event": "media", "streamSid": sid},
    "media not an object": lambda sid: {"event": "media", "streamSid": sid, "media": GOOD_PAYLOAD},
    "payload not a string": lambda sid: {"event": "media", "streamSid": sid, "media": {"payload": 255}},
    "payload not base64": lambda sid: {"event": "media", "streamSid": sid, "media": {"payload": "not base64!"}},
    "payload bad padding": lambda sid: {"event": "media", "streamSid": sid, "media": {"payload": "/w"}},
    "no streamSid": lambda sid: {"event": "media", "media": {"payload": GOOD_PAYLOAD}},
    "wrong streamSid": lambda sid: {"event": "media", "streamSid": OTHER_SID, "media": {"payload": GOOD_PAYLOAD}},
    "streamSid not a string": lambda sid: {"event": "clear", "streamSid": 7},
    "mark without name": lambda sid: {"event": "mark", "streamSid": sid, "mark": {}},
    "mark name not a string": lambda sid: {"event": "mark", "streamSid": sid, "mark": {"name": 3}},
    "mark extra field": lambda sid: {"event": "mark", "streamSid": sid, "mark": {"name": "x", "label": "y"}},
    "mark name empty": lambda sid: {"event": "mark", "streamSid": sid, "mark": {"name": ""}},
    "clear extra field": lambda sid: {"event": "clear", "streamSid": sid, "clear": {}},
    "unknown event": lambda sid: {"event": "stop", "streamSid": sid},
    "no event": lambda sid: {"streamSid": sid},
    "json array": lambda sid: [{"event": "clear", "streamSid": sid}],
    "not json": lambda sid: "clear please",
    "binary frame": lambda sid: json.dumps({"event": "clear", "streamSid": sid}).encode(),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@on_the_module_loop
async def test_each_malformed_message_is_a_violation_and_ignored(
    call: tuple[FakeTwilioCaller, ServerPeer], case: str
) -> None:
    caller, peer = call
    frame = MALFORMED[case](caller.stream_sid)
    if isinstance(frame, bytes):
        await peer.websocket.send_bytes(frame)
    elif isinstance(frame, str):
        await peer.websocket.send_text(frame)
    else:
        await peer.send(frame)
    await peer.send_mark(caller.stream_sid, "sentinel")
    await peer.wait_for(lambda: "sentinel" in peer.echoed())
    assert len(caller.violations) == 1, caller.violations
    assert caller.received_audio == b""
    assert caller.marks_received == ["sentinel"]
    assert caller.clears == []


# ------------------------------------------------------------------------------ ending the call


@on_the_module_loop
async def test_hangup_sends_stop_then_closes(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    await caller.pause(100)
    await caller.hangup()
    await peer.wait_for(lambda: peer.disconnected)
    stop = peer.received[-1]
    assert stop == {
        "event": "stop",
        "sequenceNumber": stop["sequenceNumber"],
        "streamSid": caller.stream_sid,
        "stop": {"accountSid": caller.account_sid, "callSid": caller.call_sid},
    }
    sequence = [message["sequenceNumber"] for message in numbered(peer)]
    assert sequence == [str(n) for n in range(1, len(sequence) + 1)]
    assert len(peer.events("media")) * FRAME_BYTES == len(caller.sent_audio)
    assert caller.closed and not caller.closed_by_server and not caller.streaming
    with pytest.raises(RuntimeError):
        await caller.say(b"\xff" * 160)


@on_the_module_loop
async def test_drop_closes_without_stop(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    await caller.drop()
    await peer.wait_for(lambda: peer.disconnected)
    assert peer.events("stop") == []
    assert caller.closed and not caller.closed_by_server


@on_the_module_loop
async def test_server_close_is_detected(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    await caller.wait_until(lambda: caller.media_ms >= 40, timeout=WAIT)
    await peer.websocket.close(code=1000)
    await caller.wait_closed(timeout=WAIT)
    assert caller.closed_by_server and caller.close_code == 1000
    assert not caller.streaming
    assert "closed" in [kind for _, kind, _ in caller.timeline]
    await caller.hangup()  # nothing left to hang up: a no-op
    await peer.wait_for(lambda: peer.disconnected)
    assert peer.events("stop") == []


@on_the_module_loop
async def test_say_returns_when_the_server_ends_the_call(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    speaking = asyncio.create_task(caller.say("agent_reply_long"))
    await caller.wait_until(lambda: len(caller.sent_audio) >= 1600, timeout=WAIT)
    await peer.websocket.close(code=1000)
    await asyncio.wait_for(speaking, WAIT)
    assert caller.closed_by_server


@on_the_module_loop
async def test_send_frame_sends_anything_as_it_is_until_the_stream_closes(
    call: tuple[FakeTwilioCaller, ServerPeer],
) -> None:
    caller, peer = call
    assert await caller.send_frame('{"event":"bogus"}')  # a Twilio gone rogue, for tests of junk input
    await peer.wait_for(lambda: {"event": "bogus"} in peer.received)
    await peer.websocket.close(code=1000)
    await caller.wait_closed(timeout=WAIT)
    assert not await caller.send_frame("too late")


@on_the_module_loop
async def test_wait_until_times_out_with_the_recent_timeline(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, _ = call
    with pytest.raises(AssertionError, match=r"(?s)lambda: False.*recent events.*start"):
        await caller.wait_until(lambda: False, timeout=0.2)


# ------------------------------------------------------------------------------ the pure parts


def test_schedule_catches_up_two_ticks_then_resets() -> None:
    assert next_tick_at(1.0, now=1.0) == pytest.approx(1.02)
    assert next_tick_at(1.0, now=1.05) == pytest.approx(1.02)  # 30 ms late: catch up on schedule
    assert next_tick_at(1.0, now=1.2) == 1.2  # far behind: restart from now, no burst


def test_parse_outbound_accepts_exactly_the_three_shapes() -> None:
    sid = "MZ" + "a" * 32
    media = json.dumps({"event": "media", "streamSid": sid, "media": {"payload": GOOD_PAYLOAD}})
    assert parse_outbound(media, sid) == OutboundMedia(b"\xff" * 160)
    mark = json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "turn-1"}})
    assert parse_outbound(mark, sid) == OutboundMark("turn-1")
    assert parse_outbound(json.dumps({"event": "clear", "streamSid": sid}), sid) == OutboundClear()
    with pytest.raises(ProtocolViolation, match="unexpected"):
        parse_outbound(json.dumps({"event": "clear", "streamSid": sid, "x": 1}), sid)


def test_twiml_runs_simple_verbs_before_connect_and_checks_parameters() -> None:
    response = VoiceResponse()
    response.say("One moment.")
    connect = Connect()
    stream = connect.stream(url="wss://voice.example.com/twilio/media")
    stream.parameter(name="token", value="x" * 500)
    response.append(connect)
    instruction = parse_twiml(str(response))
    assert instruction.url == "wss://voice.example.com/twilio/media"
    assert instruction.parameters == {"token": "x" * 500}
    assert len(instruction.warnings) == 1
    with pytest.raises(TwimlRefused, match="Response"):
        parse_twiml("<Other/>")
    with pytest.raises(TwimlRefused, match="parse"):
        parse_twiml("<Response>")
    with pytest.raises(TwimlRefused, match="Dial"):
        parse_twiml("<Response><Dial>+15550000000</Dial></Response>")


def test_webhook_params_sign_like_the_protocol_test_vector() -> None:
    params = webhook_params(account_sid="AC1", call_sid="CA123", from_number="+15551234567", to_number="+15557654321")
    subset = {key: params[key] for key in ("AccountSid", "CallSid", "From", "To")}
    assert RequestValidator("12345").compute_signature("https://example.com/voice", subset) == (
        "1XwNQbCHPb83UC/WyViUg6mHmrw="
    )
    assert RequestValidator("12345").compute_signature("wss://example.com/media-stream", {}) == (
        "XFfwGS2Ev7f9qAP9MmRoMS7C724="
    )


Op = tuple[str, int]


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("audio"), st.integers(0, 500)),
            st.tuples(st.just("mark"), st.just(0)),
            st.tuples(st.just("play"), st.integers(0, 400)),
            st.tuples(st.just("clear"), st.just(0)),
        ),
        max_size=60,
    )
)
def test_playback_echoes_each_mark_once_in_order_and_only_when_its_audio_is_gone(ops: list[Op]) -> None:
    playback = OutboundBuffer()
    added = consumed = 0
    positions: dict[str, int] = {}
    echoed: list[str] = []
    last_mark_at = 0
    for kind, size in ops:
        if kind == "audio":
            playback.add_audio(b"\x01" * size)
            added += size
        elif kind == "mark":
            name = f"m{len(positions)}"
            positions[name] = last_mark_at = added
            echoed += playback.add_mark(name)
        elif kind == "play":
            chunk, due = playback.play(size)
            consumed += len(chunk)
            echoed += due
        else:
            dropped, due = playback.clear()
            consumed += dropped
            echoed += due
        assert consumed + playback.buffered_bytes == added
        assert all(positions[name] <= consumed for name in echoed)
        assert all(positions[name] > consumed for name in playback.pending_marks)
        assert playback.unmarked_bytes == added - last_mark_at
    assert echoed + playback.pending_marks == list(positions)


# ------------------------------------------------------------------------------ after the stream


@on_the_module_loop
async def test_when_the_app_ends_the_stream_twilio_asks_the_connect_action_and_runs_its_answer(
    fake_app: FakeApp,
) -> None:
    fake_app.twiml = lambda url: connect_stream_twiml(url, action="/twilio/after")  # relative: to the voice URL
    answer = VoiceResponse()
    answer.say("Connecting you now.")
    answer.dial(caller_id="+15557654321").number("+15551230002")
    fake_app.action_answer = Response(str(answer), media_type="text/xml")
    async with streaming(fake_app) as (caller, peer):
        await peer.websocket.close(code=1000)
        after = await caller.wait_after_stream(timeout=WAIT)
    [action] = fake_app.actions
    url = fake_app.base_url + "/twilio/after"
    assert after.url == action.url == url and after.status == 200 and after.error is None
    assert RequestValidator(AUTH_TOKEN).validate(url, action.form, action.headers["x-twilio-signature"])
    expected = webhook_params(
        account_sid=caller.account_sid,
        call_sid=caller.call_sid,
        from_number=caller.from_number,
        to_number=caller.to_number,
        call_status="in-progress",
    )
    assert action.form == expected and action.form["Direction"] == "inbound"
    assert after.verbs == (Say("Connecting you now."), Dial(number="+15551230002", sip=None, caller_id="+15557654321"))
    assert after.said == ["Connecting you now."] and after.dialled == after.verbs[1] and not after.hung_up


@on_the_module_loop
async def test_a_dial_action_is_asked_once_the_dialled_leg_is_over_with_the_status_the_test_chose(
    fake_app: FakeApp,
) -> None:
    fake_app.twiml = lambda url: connect_stream_twiml(url, action="/twilio/after")
    answer = VoiceResponse()
    answer.dial(action="/twilio/after", method="POST").sip("sip:desk@pbx.example.com;transport=tls")
    fake_app.action_answer = Response(str(answer), media_type="text/xml")
    async with FakeTwilioCaller(fake_app.base_url, auth_token=AUTH_TOKEN, dial_status="no-answer") as caller:
        assert await caller.dial(), caller.refusal
        peer = await fake_app.next_peer()
        await peer.wait_for(lambda: peer.events("start"))
        await peer.websocket.close(code=1000)
        after = await caller.wait_after_stream(timeout=WAIT)
        dialled = await caller.wait_after_dial(timeout=WAIT)
    assert after.dialled == Dial(None, "sip:desk@pbx.example.com;transport=tls", None, action="/twilio/after")
    [_, action] = fake_app.actions
    url = fake_app.base_url + "/twilio/after"
    assert dialled.url == action.url == url and dialled.status == 200
    assert RequestValidator(AUTH_TOKEN).validate(url, action.form, action.headers["x-twilio-signature"])
    assert action.form["DialCallStatus"] == "no-answer" and action.form["CallSid"] == caller.call_sid
    assert action.form["DialCallSid"].startswith("CA") and action.form["DialCallSid"] != caller.call_sid


@on_the_module_loop
async def test_a_get_action_carries_the_parameters_in_its_signed_query_string(fake_app: FakeApp) -> None:
    fake_app.twiml = lambda url: connect_stream_twiml(url, action=fake_app.base_url + "/twilio/after", method="GET")
    async with streaming(fake_app) as (caller, peer):
        await peer.websocket.close(code=1000)
        after = await caller.wait_after_stream(timeout=WAIT)
    [action] = fake_app.actions
    assert action.form == {} and action.url.startswith(fake_app.base_url + "/twilio/after?")
    assert f"CallSid={caller.call_sid}" in action.url
    assert RequestValidator(AUTH_TOKEN).validate(action.url, {}, action.headers["x-twilio-signature"])
    assert after.verbs == (Hangup(),) and after.hung_up, after


@on_the_module_loop
async def test_no_action_request_when_the_caller_hangs_up_or_there_is_no_action(fake_app: FakeApp) -> None:
    fake_app.twiml = lambda url: connect_stream_twiml(url, action="/twilio/after")
    async with streaming(fake_app) as (caller, peer):
        await caller.hangup()
    assert caller.after_stream is None
    fake_app.twiml = connect_stream_twiml  # no action: closing the stream ends the call
    async with streaming(fake_app) as (caller, peer):
        await peer.websocket.close(code=1000)
        await caller.wait_closed(timeout=WAIT)
    assert caller.after_stream is None and fake_app.actions == []


@on_the_module_loop
async def test_an_action_answer_twilio_cannot_run_is_recorded_as_its_error(fake_app: FakeApp) -> None:
    fake_app.twiml = lambda url: connect_stream_twiml(url, action="/twilio/after")
    fake_app.action_answer = Response("oops", status_code=500)
    async with streaming(fake_app) as (caller, peer):
        await peer.websocket.close(code=1000)
        after = await caller.wait_after_stream(timeout=WAIT)
    assert after.status == 500 and after.error is not None and after.error.startswith("11200")
    assert after.verbs == () and not after.hung_up


def test_after_stream_verbs_run_until_hangup() -> None:
    response = VoiceResponse()
    response.say("Goodbye.")
    response.hangup()
    response.say("never said")
    assert parse_after_stream(str(response)) == (Say("Goodbye."), Hangup())
    dial = VoiceResponse()
    dial.dial().sip("sip:desk@example.com")
    dial.redirect("/elsewhere")
    assert parse_after_stream(str(dial)) == (Dial(None, "sip:desk@example.com", None), OtherVerb("Redirect"))
    assert parse_after_stream("<Response><Dial>+15551230001</Dial></Response>") == (Dial("+15551230001", None, None),)
    with pytest.raises(TwimlRefused, match="12100"):
        parse_after_stream("<Response><Say>")


# ------------------------------------------------------------------------------ behind a proxy


@on_the_module_loop
async def test_behind_a_proxy_twilio_signs_the_public_urls_and_the_proxy_adds_its_headers(fake_app: FakeApp) -> None:
    public = fake_app.base_url.replace("http://", "https://")
    fake_app.twiml = lambda url: connect_stream_twiml(url.replace("ws://", "wss://"), action="/twilio/after")
    caller = FakeTwilioCaller(
        fake_app.base_url,
        auth_token=AUTH_TOKEN,
        public_base_url=public,
        proxy_headers={"X-Forwarded-Proto": "https"},
        upgrade_proxy_headers={"X-Forwarded-Proto": "wss"},
    )
    async with caller:
        assert await caller.dial(), caller.refusal
        peer = await fake_app.next_peer()
        await peer.websocket.close(code=1000)
        await caller.wait_after_stream(timeout=WAIT)
    validator = RequestValidator(AUTH_TOKEN)
    [webhook], [action] = fake_app.webhooks, fake_app.actions
    assert webhook.headers["x-forwarded-proto"] == action.headers["x-forwarded-proto"] == "https"
    assert validator.validate(public + "/twilio/voice", webhook.form, webhook.headers["x-twilio-signature"])
    assert validator.validate(public + "/twilio/after", action.form, action.headers["x-twilio-signature"])
    assert caller.stream_url is not None and caller.stream_url.startswith("wss://")
    assert peer.headers["x-forwarded-proto"] == "wss"
    assert validator.validate(caller.stream_url, {}, peer.headers["x-twilio-signature"])


# ------------------------------------------------------------------------------ a busy event loop


@on_the_module_loop
async def test_time_the_media_clock_loses_to_a_busy_loop_is_counted(call: tuple[FakeTwilioCaller, ServerPeer]) -> None:
    caller, peer = call
    await caller.wait_until(lambda: caller.media_ms >= 100, timeout=WAIT)
    before = caller.slipped_ms()  # (a loaded machine may already have lost a little)
    time.sleep(0.3)  # noqa: ASYNC251  (the point: the whole event loop stalls, no tick for 300 ms)
    at = caller.media_ms
    await caller.wait_until(lambda: caller.media_ms >= at + 40, timeout=WAIT)
    assert caller.slipped_ms() - before >= 300 - 2 * 20 - 20  # all of it but the two ticks caught up (and one)
    assert any(ms >= at and lost >= 200 for ms, lost in caller.clock_slips)  # counted where it happened
