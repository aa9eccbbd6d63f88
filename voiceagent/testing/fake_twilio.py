"""A fake Twilio: places an inbound call to the app and runs a bidirectional Media Stream.

It behaves like Twilio does (PROTOCOLS.md §1) and refuses what Twilio would not accept:

* ``dial()`` posts the signed voice webhook, reads the TwiML and, for ``<Connect><Stream>``, opens the
  signed WebSocket and sends ``connected`` and ``start``.
* A **media clock** then sends one 160-byte ``media`` message every 20 ms (the queued ``say`` audio,
  else μ-law silence) and, in the same tick, plays up to 160 bytes of what the app sent.
* Marks are echoed once the audio before them has been played (at once if nothing is buffered);
  ``clear`` drops the buffer and echoes every pending mark.
* Anything the app sends that is not exactly one of Twilio's three outbound shapes is recorded in
  ``violations`` and ignored.

Tests measure against the media clock (``media_ms``) and byte counts, never against wall clocks: on a
loaded machine the emulated time slows down instead of jumping.

The pure parts (``parse_outbound``, ``Playback``, ``InboundAudio``, ``parse_twiml``) hold no I/O;
``FakeTwilioCaller`` drives them from the test's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from voiceagent.testing.audio import BYTES_PER_MS, FRAME_BYTES, FRAME_MS, SILENCE_BYTE, load_fixture
from voiceagent.testing.twilio_wire import (
    HTTP_USER_AGENT,
    TICK_SECONDS,
    WEBHOOK_TIMEOUT_SECONDS,
    WS_USER_AGENT,
    ClearRecord,
    EchoRecord,
    InboundAudio,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    Playback,
    ProtocolViolation,
    StreamInstruction,
    TwimlRefused,
    new_sid,
    next_tick_at,
    parse_outbound,
    parse_twiml,
    webhook_params,
)

__all__ = [
    "ClearRecord",
    "EchoRecord",
    "FakeTwilioCaller",
    "OutboundClear",
    "OutboundMark",
    "OutboundMedia",
    "Playback",
    "ProtocolViolation",
    "StreamInstruction",
    "TwimlRefused",
    "new_sid",
    "next_tick_at",
    "parse_outbound",
    "parse_twiml",
    "webhook_params",
]

# ------------------------------------------------------------------------------ the caller


def _rehost(url: str, base: str) -> str:
    """``url`` with the scheme and host of ``base`` (http → ws, https → wss)."""
    target, parts = urlsplit(base), urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(target.scheme, target.scheme)
    return urlunsplit((scheme, target.netloc, parts.path, parts.query, ""))


class FakeTwilioCaller:
    """Twilio placing one inbound call to the app at ``base_url`` and streaming its audio.

    Use as ``async with FakeTwilioCaller(url) as caller:`` so the stream is dropped on exit if the test
    did not hang up. Everything runs in the current event loop.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth_token: str | None = None,
        from_number: str = "+15551234567",
        to_number: str = "+15557654321",
        call_sid: str | None = None,
        account_sid: str | None = None,
        voice_path: str = "/twilio/voice",
        http_client: httpx.AsyncClient | None = None,
        stream_via: str | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.voice_path = voice_path
        self.from_number = from_number
        self.to_number = to_number
        self.call_sid = call_sid or new_sid("CA")
        self.account_sid = account_sid or new_sid("AC")
        self.stream_sid = new_sid("MZ")
        self._validator = RequestValidator(auth_token) if auth_token else None
        self._http_client = http_client
        # like a load balancer: open the stream on this host (e.g. another process of the app) while
        # signing the URL exactly as the TwiML wrote it
        self._stream_via = stream_via

        # what dial() found
        self.webhook_form: dict[str, str] = {}
        self.http_status: int | None = None
        self.twiml_text: str | None = None
        self.stream_url: str | None = None
        self.parameters: dict[str, str] = {}
        self.refusal: str | None = None

        # accounting
        self.sent_audio = bytearray()
        self.received_audio = bytearray()
        self.played = bytearray()
        self.media_ms = 0
        self.marks_received: list[str] = []
        self.marks_echoed: list[str] = []
        self.echoes: list[EchoRecord] = []
        self.clears: list[ClearRecord] = []
        self.violations: list[str] = []
        self.closed_by_server = False
        self.close_code: int | None = None
        self.timeline: list[tuple[int, str, str]] = []

        # machinery
        self._ws: ClientConnection | None = None
        self._sequence = 0
        self._chunk = 0
        self._send_lock = asyncio.Lock()
        self._inbound = InboundAudio()
        self._playback = Playback()
        self._say_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()
        self._clock_task: asyncio.Task[None] | None = None
        self._receive_task: asyncio.Task[None] | None = None
        self._clock_stopped = False
        self._ending_locally = False
        self._closed = False

    # -------------------------------------------------------------- state

    @property
    def streaming(self) -> bool:
        """True from ``start`` until the stream ends (either side)."""
        return self._ws is not None and not self._closed and not self._ending_locally

    @property
    def closed(self) -> bool:
        """True once the WebSocket has closed, whoever closed it."""
        return self._closed

    @property
    def buffered_bytes(self) -> int:
        """Outbound audio received but not yet played."""
        return self._playback.buffered_bytes

    @property
    def pending_marks(self) -> list[str]:
        return self._playback.pending_marks

    # -------------------------------------------------------------- dialling

    async def dial(self) -> bool:
        """Post the voice webhook and, for ``<Connect><Stream>``, open the stream and start it."""
        if self.webhook_form:
            raise RuntimeError("this caller already dialled; make a new FakeTwilioCaller per call")
        try:
            instruction = parse_twiml(await self._post_webhook())
        except TwimlRefused as refusal:
            return self._refuse(str(refusal))
        self.stream_url, self.parameters = instruction.url, instruction.parameters
        for warning in instruction.warnings:
            self._violate(warning)
        if not await self._open_stream(instruction.url):
            return False
        await self._start_stream()
        return True

    async def _post_webhook(self) -> bytes:
        url = self.base_url + self.voice_path
        self.webhook_form = webhook_params(
            account_sid=self.account_sid,
            call_sid=self.call_sid,
            from_number=self.from_number,
            to_number=self.to_number,
        )
        headers = {"User-Agent": HTTP_USER_AGENT, "I-Twilio-Idempotency-Token": str(uuid.uuid4())}
        if self._validator:
            headers["X-Twilio-Signature"] = self._validator.compute_signature(url, self.webhook_form)
        self._record("webhook", url)
        if self._http_client is not None:
            response = await self._http_client.post(url, data=self.webhook_form, headers=headers)
        else:
            async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS, trust_env=False) as client:
                response = await client.post(url, data=self.webhook_form, headers=headers)
        self.http_status, self.twiml_text = response.status_code, response.text
        self._record("twiml", f"{response.status_code} {response.text}")
        if response.status_code != 200:
            raise TwimlRefused(f"11200 webhook answered HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "")
        if "xml" not in content_type and "html" not in content_type:
            raise TwimlRefused(f"12300 invalid Content-Type {content_type!r} for TwiML")
        return response.content

    async def _open_stream(self, url: str) -> bool:
        headers = {}
        if self._validator:
            headers["x-twilio-signature"] = self._validator.compute_signature(url, {})
        try:
            self._ws = await connect(
                _rehost(url, self._stream_via) if self._stream_via else url,
                additional_headers=headers,
                user_agent_header=WS_USER_AGENT,
                compression=None,
                proxy=None,
                ping_interval=None,
                max_size=None,
                open_timeout=10,
            )
        except InvalidStatus as exc:
            return self._refuse(f"31920 WebSocket upgrade refused: HTTP {exc.response.status_code}")
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            return self._refuse(f"31920 WebSocket upgrade failed: {exc!r}")
        return True

    async def _start_stream(self) -> None:
        await self._send_raw({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": dict(self.parameters),
        }
        await self._send_events([("start", {"start": start})])
        self._record("start", self.stream_sid)
        self._receive_task = asyncio.create_task(self._receive_loop(), name=f"twilio-receive-{self.call_sid}")
        self._clock_task = asyncio.create_task(self._run_clock(), name=f"twilio-clock-{self.call_sid}")

    def _refuse(self, reason: str) -> bool:
        self.refusal = reason
        self._record("refused", reason)
        return False

    # -------------------------------------------------------------- the caller's side of the call

    async def say(self, audio: str | bytes) -> None:
        """Queue a fixture (by name) or raw μ-law; returns once all of it has been sent, or the stream
        has ended."""
        data = load_fixture(audio) if isinstance(audio, str) else bytes(audio)
        self._require_streaming()
        waiter = asyncio.get_running_loop().create_future()
        self._say_waiters.append((self._inbound.enqueue(data), waiter))
        self._record("say", audio if isinstance(audio, str) else f"{len(data)} bytes")
        await waiter

    async def pause(self, ms: int) -> None:
        """Send ``ms`` of silence (after anything already queued); returns once it has been sent."""
        await self.say(bytes([SILENCE_BYTE]) * (ms * BYTES_PER_MS))

    async def press(self, digit: str) -> None:
        """Send a DTMF digit, as Twilio does when the caller presses a key."""
        self._require_streaming()
        await self._send_events([("dtmf", {"dtmf": {"track": "inbound_track", "digit": digit}})])
        self._record("dtmf", digit)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Wait until ``predicate()`` holds; it is checked after every tick, message and close."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            recent = "\n".join(f"  {ms:>7} ms {kind}: {detail[:160]}" for ms, kind, detail in self.timeline[-15:])
            raise TimeoutError(f"condition not met within {timeout} s; recent events:\n{recent}") from None

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the WebSocket has closed (see ``closed_by_server`` and ``close_code``)."""
        await self.wait_until(lambda: self._closed, timeout)

    async def hangup(self) -> None:
        """The caller hangs up: the media clock stops, ``stop`` is sent, the socket closes."""
        if not self.streaming:
            return
        self._ending_locally = True
        await self._stop_clock()
        stop = {"stop": {"accountSid": self.account_sid, "callSid": self.call_sid}}
        await self._send_events([("stop", stop)])
        self._record("stop", "caller hung up")
        await self._close_socket()

    async def drop(self) -> None:
        """The stream ends without ``stop``: the socket just closes."""
        if not self.streaming:
            return
        self._ending_locally = True
        await self._stop_clock()
        self._record("drop", "closing without stop")
        await self._close_socket()

    async def aclose(self) -> None:
        """Drop the stream if it is still open and wait for the background tasks."""
        await self.drop()
        self._clock_stopped = True
        for task in (self._clock_task, self._receive_task):
            if task is not None and not task.done():
                task.cancel()
        for task in (self._clock_task, self._receive_task):
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> FakeTwilioCaller:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def _require_streaming(self) -> None:
        if not self.streaming:
            raise RuntimeError("no open media stream (dial() first; the call may have ended)")

    # -------------------------------------------------------------- media clock

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        scheduled = loop.time() + TICK_SECONDS
        while True:
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            if self._clock_stopped or not await self._tick():
                return
            scheduled = next_tick_at(scheduled, loop.time())

    async def _tick(self) -> bool:
        """One 20 ms step: send a frame of caller audio, play a frame of app audio, echo due marks."""
        self.media_ms += FRAME_MS
        self._chunk += 1
        frame = self._inbound.take(FRAME_BYTES)
        played, due = self._playback.play(FRAME_BYTES)
        self.played.extend(played)
        media = {
            "track": "inbound",
            "chunk": str(self._chunk),
            "timestamp": str(self.media_ms),
            "payload": base64.b64encode(frame).decode("ascii"),
        }
        events = [("media", {"media": media}), *self._echo_events(due, cleared=False)]
        sent = await self._send_events(events)
        if sent:
            self.sent_audio.extend(frame)
        self._wake_speakers()
        self._notify()
        return sent

    async def _stop_clock(self) -> None:
        self._clock_stopped = True
        if self._clock_task is not None and self._clock_task is not asyncio.current_task():
            await asyncio.gather(self._clock_task, return_exceptions=True)
        self._wake_speakers(everyone=True)

    def _wake_speakers(self, everyone: bool = False) -> None:
        waiting = []
        for end, waiter in self._say_waiters:
            if everyone or end <= self._inbound.taken_total:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((end, waiter))
        self._say_waiters = waiting

    # -------------------------------------------------------------- what the app sends

    async def _receive_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self._on_closed()

    async def _on_frame(self, frame: str | bytes) -> None:
        if self._ending_locally:
            return
        try:
            message = parse_outbound(frame, self.stream_sid)
        except ProtocolViolation as violation:
            self._violate(str(violation))
            self._notify()
            return
        match message:
            case OutboundMedia(audio=audio):
                self.received_audio.extend(audio)
                self._playback.add_audio(audio)
                self._record("media_out", f"{len(audio)} bytes")
            case OutboundMark(name=name):
                self.marks_received.append(name)
                self._record("mark", name)
                await self._send_events(self._echo_events(self._playback.add_mark(name), cleared=False))
            case OutboundClear():
                dropped, due = self._playback.clear()
                self.clears.append(ClearRecord(self.media_ms, len(self.played), dropped))
                self._record("clear", f"dropped {dropped} bytes, echoing {due}")
                await self._send_events(self._echo_events(due, cleared=True))
        self._notify()

    def _echo_events(self, names: list[str], *, cleared: bool) -> list[tuple[str, dict[str, Any]]]:
        for name in names:
            self.echoes.append(EchoRecord(name, self.media_ms, len(self.played), cleared))
            self.marks_echoed.append(name)
            self._record("echo", name)
        return [("mark", {"mark": {"name": name}}) for name in names]

    def _on_closed(self) -> None:
        assert self._ws is not None
        self._closed = True
        self._clock_stopped = True
        self.close_code = self._ws.close_code
        self.closed_by_server = not self._ending_locally
        self._record("closed", f"code {self.close_code} by {'server' if self.closed_by_server else 'caller'}")
        self._wake_speakers(everyone=True)
        self._notify()

    # -------------------------------------------------------------- sending

    async def _send_events(self, events: list[tuple[str, dict[str, Any]]]) -> bool:
        """Send numbered events in order, as one batch (nothing else interleaves). False if closed."""
        if not events:
            return True
        async with self._send_lock:
            for kind, body in events:
                self._sequence += 1
                message = {"event": kind, "sequenceNumber": str(self._sequence), "streamSid": self.stream_sid}
                if not await self._send_unlocked({**message, **body}):
                    return False
        return True

    async def _send_raw(self, message: dict[str, Any]) -> bool:
        async with self._send_lock:
            return await self._send_unlocked(message)

    async def _send_unlocked(self, message: dict[str, Any]) -> bool:
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(message, separators=(",", ":")))
        except ConnectionClosed:
            return False
        return True

    async def _close_socket(self) -> None:
        assert self._ws is not None
        await self._ws.close()
        if self._receive_task is not None:
            await asyncio.gather(self._receive_task, return_exceptions=True)

    # -------------------------------------------------------------- bookkeeping

    def _violate(self, reason: str) -> None:
        self.violations.append(reason)
        self._record("violation", reason)

    def _record(self, kind: str, detail: str) -> None:
        self.timeline.append((self.media_ms, kind, detail))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
