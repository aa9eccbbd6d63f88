"""A fake Twilio: places an inbound call to the app and runs a bidirectional Media Stream.

It behaves like Twilio does (docs/protocol.md, "## 1. Twilio Media Streams") and refuses what Twilio
would not accept:

* ``dial()`` posts the signed voice webhook, reads the TwiML and, for ``<Connect><Stream>``, opens the
  signed WebSocket and sends ``connected`` and ``start`` (the call set-up is ``twilio_dial``).
* A **media clock** then sends one 160-byte ``media`` message per 20 ms tick (the queued ``say`` audio,
  else μ-law silence) and, in the same tick, plays up to 160 bytes of what the app sent.
* Marks are echoed once the audio before them has been played (at once if nothing is buffered);
  ``clear`` drops the buffer and echoes every pending mark.
* Anything the app sends that is not exactly one of Twilio's three outbound shapes is recorded in
  ``violations`` and ignored.
* When the app ends the stream (closes the WebSocket), Twilio requests the ``<Connect action>`` URL (a
  signed webhook with the call's standard parameters) and runs the TwiML it gets: ``after_stream``
  records the request and the verbs (``Say``, ``Hangup``, ``Dial``), ``wait_after_stream`` waits for it.
* A ``<Dial action>`` in that answer is requested once the dialled leg is over, signed, with
  ``DialCallStatus=dial_status`` (``completed`` by default; ``no-answer``, ``busy``, ``failed``):
  ``after_dial``, ``wait_after_dial``. A new caller with the same ``call_sid`` can ``follow`` the TwiML
  of that answer (``<Say>`` then ``<Connect><Stream>``) onto a new stream of the same call.
* ``eval_mark=True`` (``voiceagent eval``): each request about the call also carries the eval mark, signed
  with the rest (``voiceagent.twilio.eval_mark``), so that the service records the call as an eval.
* A ``<Stream statusCallback>`` is told ``stream-started``, ``stream-stopped`` and ``stream-error`` (a socket
  lost without a close frame), signed, with ``StreamEvent``, ``StreamError``, ``StreamSid``, ``CallSid``,
  ``AccountSid`` and ``Timestamp`` (``stream_reports``). With ``action_after_lost_socket=False`` a lost
  socket is not followed by the ``<Connect action>`` request: the call waits for ``update_twiml`` (the
  REST API's call update, ``fake_twilio_rest``), which replaces its TwiML and may open a new stream.
* Behind a TLS-terminating proxy (``public_base_url``, ``proxy_headers``, ``upgrade_proxy_headers``):
  Twilio signs every request for the public URL, and the request reaches the app over plain HTTP with
  the headers the proxy adds (e.g. ``X-Forwarded-Proto``).

A tick is 20 ms of *emulated* time. At ``speed=1`` (the default) ticks come every 20 ms of wall time,
as on a real call; at ``speed=S`` every 20/S ms, so the caller speaks and listens S times faster than
real time (S × 8 bytes per wall millisecond each way). Everything the caller records — ``media_ms``,
played bytes, mark echoes, the timeline — is in emulated time, so a test asserts the same numbers at
any speed. Tests measure against the media clock and byte counts, never against wall clocks: on a
loaded machine the emulated time slows down instead of jumping (``clock_slips`` says by how much: a
test of latency against real time adds it to its tolerance).

The pure parts (``InboundMessages``, ``parse_outbound``, ``OutboundBuffer``, ``InboundAudio`` in ``twilio_wire``;
``parse_twiml`` in ``twilio_dial``) hold no I/O; ``FakeTwilioCaller`` drives them from the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import TypeVar
from urllib.parse import urljoin

import httpx
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voiceagent.testing.audio import BYTES_PER_MS, FRAME_BYTES, FRAME_MS, SILENCE_BYTE, load_fixture
from voiceagent.testing.twilio_dial import (
    AfterStream,
    StreamInstruction,
    StreamRefused,
    TwimlRefused,
    open_stream,
    parse_after_stream,
    parse_twiml,
    post_webhook,
    twiml_of,
    webhook_params,
)
from voiceagent.testing.twilio_wire import (
    TICK_SECONDS,
    ClearRecord,
    EchoRecord,
    InboundAudio,
    InboundMessages,
    Message,
    OutboundBuffer,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    ProtocolViolation,
    new_sid,
    next_tick_at,
    parse_outbound,
)
from voiceagent.testing.waiting import wait_until
from voiceagent.twilio.eval_mark import EVAL_PARAMETER, EvalMarks

# new_sid and webhook_params are re-exported: tests that forge Twilio requests build them from here too
__all__ = ["FakeTwilioCaller", "new_sid", "webhook_params"]

T = TypeVar("T")

LOST_SOCKET = 1006  # the close code of a socket that ended without a close frame
LOST_SOCKET_ERROR = "31903 Connection Broken Pipe: the WebSocket closed without a close frame"
AFTER_STREAM_WAIT_SECONDS = 5.0  # how long closing the caller waits for a <Connect action> answer still due


class FakeTwilioCaller:
    """Twilio placing one inbound call to the app at ``base_url`` and streaming its audio.

    Use as ``async with FakeTwilioCaller(url) as caller:`` so the stream is dropped on exit if the test
    did not hang up. Everything runs in the current event loop. ``speed``: emulated milliseconds of the
    call per wall millisecond (see the module docstring).
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
        speed: float = 1.0,
        public_base_url: str | None = None,
        proxy_headers: Mapping[str, str] | None = None,
        upgrade_proxy_headers: Mapping[str, str] | None = None,
        follow_connect: bool = False,
        dial_status: str = "completed",
        eval_mark: bool = False,
        action_after_lost_socket: bool = True,
    ) -> None:
        if not (speed > 0 and math.isfinite(speed)):
            raise ValueError(f"speed must be a positive finite number, not {speed!r}")
        if eval_mark and not auth_token:
            raise ValueError("eval_mark needs the auth_token: only its holder can mark a call as an eval")
        self.speed = speed
        self.tick_seconds = TICK_SECONDS / speed  # wall time between two 20 ms frames
        self.base_url = base_url.rstrip("/")
        self.voice_path = voice_path
        self.from_number = from_number
        self.to_number = to_number
        self.call_sid = call_sid or new_sid("CA")
        self.account_sid = account_sid or new_sid("AC")
        self.stream_sid = new_sid("MZ")
        self._validator = RequestValidator(auth_token) if auth_token else None
        # voiceagent eval's calls: every request about the call carries the mark (voiceagent.twilio.eval_mark)
        self._eval_mark = EvalMarks(auth_token).sign(self.call_sid) if eval_mark else None
        self._http_client = http_client
        # behind a proxy: Twilio requests (and signs) the public URL, the proxy passes it on to base_url
        self.public_base_url = public_base_url.rstrip("/") if public_base_url else None
        self._http_via = self.base_url if self.public_base_url else None
        self._proxy_headers = dict(proxy_headers or {})
        self._upgrade_headers = dict(self._proxy_headers if upgrade_proxy_headers is None else upgrade_proxy_headers)
        # like a load balancer: open the stream on this host (e.g. another process of the app) while
        # signing the URL exactly as the TwiML wrote it
        self._stream_via = stream_via or self._http_via

        # what dial() found
        self.webhook_form: dict[str, str] = {}
        self.http_status: int | None = None
        self.twiml_text: str | None = None
        self.stream_url: str | None = None
        self.parameters: dict[str, str] = {}
        self.refusal: str | None = None
        self.after_stream: AfterStream | None = None  # the <Connect action> request, once the app ended the stream
        # a <Connect action> answered with another <Connect><Stream> (a call resumed on another instance):
        # with follow_connect, the call goes on on a new stream, as Twilio does; every answer is kept here
        self.follow_connect = follow_connect
        self.action_answers: list[AfterStream] = []
        self.streams = 0
        # a <Dial action> in that answer: requested with DialCallStatus=dial_status (completed, no-answer,
        # busy, failed), as Twilio does once the dialled leg is over; its answer
        self.dial_status = dial_status
        self.after_dial: AfterStream | None = None
        # a <Stream statusCallback>: each report sent and the status it was answered with (None: failed)
        self.action_after_lost_socket = action_after_lost_socket
        self.stream_reports: list[tuple[str, int | None]] = []
        self._reporting: set[asyncio.Task[None]] = set()

        # accounting, in emulated time
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
        self.clock_slips: list[tuple[int, float]] = []  # (media_ms, emulated ms lost) when the loop fell behind

        # machinery
        self._ws: ClientConnection | None = None
        self._messages = InboundMessages(
            account_sid=self.account_sid, call_sid=self.call_sid, stream_sid=self.stream_sid
        )
        self._send_lock = asyncio.Lock()
        self._inbound = InboundAudio()
        self._playback = OutboundBuffer()
        self._say_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()
        self._clock_task: asyncio.Task[None] | None = None
        self._receive_task: asyncio.Task[None] | None = None
        self._clock_stopped = False
        self._ending_locally = False
        self._closed = False
        self._webhook_url = ""
        self._instruction: StreamInstruction | None = None
        self._after_stream_task: asyncio.Task[None] | None = None

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

    @property
    def unmarked_bytes(self) -> int:
        """Audio received after the newest mark (the app marks each media message right after it)."""
        return self._playback.unmarked_bytes

    # -------------------------------------------------------------- dialling

    async def dial(self) -> bool:
        """Post the voice webhook and, for ``<Connect><Stream>``, open the stream and start it.
        False (see ``refusal``) when Twilio would not get as far as a stream."""
        if self.webhook_form:
            raise RuntimeError("this caller already dialled; make a new FakeTwilioCaller per call")
        url = self._webhook_url = (self.public_base_url or self.base_url) + self.voice_path
        self.webhook_form = self._call_params("ringing")
        self._record("webhook", url)
        response = await post_webhook(
            url,
            self.webhook_form,
            validator=self._validator,
            http_client=self._http_client,
            via=self._http_via,
            headers=self._proxy_headers,
        )
        self.http_status, self.twiml_text = response.status_code, response.text
        self._record("twiml", f"{response.status_code} {response.text}")
        try:
            instruction = parse_twiml(twiml_of(response))
        except TwimlRefused as refusal:
            return self._refuse(str(refusal))
        return await self._connect(instruction)

    async def follow(self, twiml: str) -> bool:
        """Run ``twiml`` (another request's answer on the same call, such as a ``<Dial action>``'s ``<Say>``
        then ``<Connect><Stream>``) as this caller's way in, instead of the voice webhook's; False (see
        ``refusal``) when it opens no stream. Make the caller with the same ``call_sid``."""
        if self.webhook_form:
            raise RuntimeError("this caller already dialled; make a new FakeTwilioCaller per stream")
        self._webhook_url = (self.public_base_url or self.base_url) + self.voice_path
        self.webhook_form = self._call_params("in-progress")
        self.twiml_text = twiml
        self._record("twiml", twiml)
        try:
            instruction = parse_twiml(twiml)
        except TwimlRefused as refusal:
            return self._refuse(str(refusal))
        return await self._connect(instruction)

    async def _connect(self, instruction: StreamInstruction) -> bool:
        self.stream_url, self.parameters = instruction.url, instruction.parameters
        self._instruction = instruction
        for warning in instruction.warnings:
            self._violate(warning)
        return await self._start_stream(instruction)

    async def _start_stream(self, instruction: StreamInstruction) -> bool:
        try:
            self._ws = await open_stream(
                instruction.url, validator=self._validator, via=self._stream_via, headers=self._upgrade_headers
            )
        except StreamRefused as refusal:
            return self._refuse(str(refusal))
        self.streams += 1
        await self._send(lambda: [self._messages.connected(), self._messages.start(self.parameters)])
        self._record("start", self.stream_sid)
        self._report_stream("stream-started")
        self._receive_task = asyncio.create_task(self._receive_loop(), name=f"twilio-receive-{self.call_sid}")
        self._clock_task = asyncio.create_task(self._run_clock(), name=f"twilio-clock-{self.call_sid}")
        return True

    async def _stream_again(self, instruction: StreamInstruction) -> None:
        """The same call on a new stream (a new StreamSid, sequence numbers from the start)."""
        old = [task for task in (self._clock_task, self._receive_task) if task is not None]
        await asyncio.gather(*old, return_exceptions=True)  # the first stream's tasks are over
        self.stream_sid = new_sid("MZ")
        self._messages = InboundMessages(
            account_sid=self.account_sid, call_sid=self.call_sid, stream_sid=self.stream_sid
        )
        self._playback = OutboundBuffer()
        self.stream_url, self.parameters, self._instruction = instruction.url, instruction.parameters, instruction
        self._closed = self._clock_stopped = self.closed_by_server = self._ending_locally = False
        self.close_code = None
        await self._start_stream(instruction)
        self._notify()

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
        await self._send(lambda: [self._messages.dtmf(digit)])
        self._record("dtmf", digit)

    async def send_frame(self, frame: str | bytes) -> bool:
        """Send ``frame`` as it is, numbered or not, valid or not: a Twilio gone rogue, for tests of what an
        app does with junk. False once the stream has closed."""
        if self._ws is None:
            raise RuntimeError("no media stream (dial() first)")
        async with self._send_lock:
            return await self._send_frame(frame)

    async def wait_until(self, predicate: Callable[[], T], timeout: float = 20.0) -> T:
        """``wait_until(predicate, timeout)``, checking after every tick, message and close; if it times
        out, the message ends with the caller's recent timeline. Without a stream nothing can change, so
        a predicate that does not hold already fails at once (saying why there is no stream)."""
        if self._ws is None and not predicate():
            raise AssertionError(f"no media stream to wait on: {self.refusal or 'dial() first'}\n{self._recent()}")
        return await wait_until(predicate, timeout, wake=lambda: self._changed.wait(), describe=self._recent)

    def _recent(self) -> str:
        lines = [f"  {ms:>7} ms {kind}: {detail[:160]}" for ms, kind, detail in self.timeline[-15:]]
        return "recent events of the caller (media clock ms):\n" + "\n".join(lines)

    async def wait_closed(self, timeout: float = 10.0) -> None:
        """Wait until the WebSocket has closed (see ``closed_by_server`` and ``close_code``)."""
        await self.wait_until(lambda: self._closed, timeout)

    async def wait_after_dial(self, timeout: float = 10.0) -> AfterStream:
        """Wait until the app has answered the ``<Dial action>`` of a transfer (see ``dial_status``)."""
        await self.wait_until(lambda: self.after_dial is not None, timeout)
        assert self.after_dial is not None
        return self.after_dial

    async def wait_after_stream(self, timeout: float = 10.0) -> AfterStream:
        """Wait until the app has ended the stream and answered the ``<Connect action>`` request."""
        await self.wait_until(lambda: self.after_stream is not None, timeout)
        assert self.after_stream is not None
        return self.after_stream

    def slipped_ms(self, since_ms: int = 0) -> float:
        """Emulated ms the media clock lost (a busy event loop) after media time ``since_ms``."""
        return sum(lost for at_ms, lost in self.clock_slips if at_ms >= since_ms)

    async def hangup(self) -> None:
        """The caller hangs up: the media clock stops, ``stop`` is sent, the socket closes."""
        if not self.streaming:
            return
        self._ending_locally = True
        await self._stop_clock()
        await self._send(lambda: [self._messages.stop()])
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
        tasks = [task for task in (self._clock_task, self._receive_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._reporting:
            await asyncio.wait(set(self._reporting), timeout=AFTER_STREAM_WAIT_SECONDS)
        if self._after_stream_task is not None:  # let an answer already under way arrive, within reason
            await asyncio.wait({self._after_stream_task}, timeout=AFTER_STREAM_WAIT_SECONDS)
            self._after_stream_task.cancel()
            await asyncio.gather(self._after_stream_task, return_exceptions=True)

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
        """Tick every ``tick_seconds`` of wall time until the stream ends (on an absolute schedule that
        restarts from now, rather than bursting, when the loop falls behind)."""
        loop = asyncio.get_running_loop()
        scheduled = loop.time() + self.tick_seconds
        while not self._clock_stopped:
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            if self._clock_stopped or not await self._tick():
                return
            due, scheduled = scheduled + self.tick_seconds, next_tick_at(scheduled, loop.time(), self.tick_seconds)
            if scheduled > due:  # the schedule restarted: that much emulated time is lost
                self.clock_slips.append((self.media_ms, (scheduled - due) * 1000 * self.speed))

    async def _tick(self) -> bool:
        """One 20 ms step: send a frame of caller audio, play a frame of app audio, echo due marks."""
        self.media_ms += FRAME_MS
        now_ms, frame = self.media_ms, self._inbound.take(FRAME_BYTES)
        played, due = self._playback.play(FRAME_BYTES)
        self.played.extend(played)
        due = self._echoed(due, cleared=False)
        sent = await self._send(lambda: [self._messages.media(frame, now_ms), *map(self._messages.mark, due)])
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
                due = self._echoed(self._playback.add_mark(name), cleared=False)
                await self._send(lambda: list(map(self._messages.mark, due)))
            case OutboundClear():
                dropped, due = self._playback.clear()
                self.clears.append(ClearRecord(self.media_ms, len(self.played), dropped))
                self._record("clear", f"dropped {dropped} bytes, echoing {due}")
                due = self._echoed(due, cleared=True)
                await self._send(lambda: list(map(self._messages.mark, due)))
        self._notify()

    def _echoed(self, names: list[str], *, cleared: bool) -> list[str]:
        """Record the echoes of ``names`` (about to be sent); returns ``names``."""
        for name in names:
            self.echoes.append(EchoRecord(name, self.media_ms, len(self.played), cleared))
            self.marks_echoed.append(name)
            self._record("echo", name)
        return names

    def _on_closed(self) -> None:
        assert self._ws is not None
        self._closed = True
        self._clock_stopped = True
        self.close_code = self._ws.close_code
        self.closed_by_server = not self._ending_locally
        self._record("closed", f"code {self.close_code} by {'server' if self.closed_by_server else 'caller'}")
        self._wake_speakers(everyone=True)
        lost = self.close_code == LOST_SOCKET  # no close frame: the app's process died, or its node
        self._report_stream("stream-error" if lost else "stream-stopped", LOST_SOCKET_ERROR if lost else None)
        if lost and not self.action_after_lost_socket:
            self._record("waiting", "no <Connect action> after a lost socket: the call waits for a REST update")
        elif self.closed_by_server and self._instruction is not None and self._instruction.action:
            self._after_stream_task = asyncio.create_task(
                self._request_action(self._instruction), name=f"twilio-action-{self.call_sid}"
            )
        self._notify()

    def _report_stream(self, event: str, error: str | None = None) -> None:
        """Tell the ``<Stream statusCallback>`` (if any) what became of the stream, as Twilio does."""
        instruction = self._instruction
        if instruction is None or instruction.status_callback is None:
            return
        url = urljoin(self._webhook_url, instruction.status_callback)
        form = {
            "AccountSid": self.account_sid, "CallSid": self.call_sid, "StreamSid": self.stream_sid,
            "StreamName": self.stream_sid, "StreamEvent": event,
            "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        } | ({"StreamError": error} if error else {})  # fmt: skip
        self._record("stream_report", event)

        async def report() -> None:
            try:
                answered: int | None = (
                    await self._post_signed(url, form, instruction.status_callback_method)
                ).status_code
            except httpx.HTTPError:
                answered = None
            self.stream_reports.append((event, answered))
            self._notify()

        task = asyncio.create_task(report(), name=f"twilio-report-{self.call_sid}")
        self._reporting.add(task)
        task.add_done_callback(self._reporting.discard)

    async def update_twiml(self, twiml: str) -> None:
        """The REST API's call update: the call leaves what it was doing and runs ``twiml`` (a new
        ``<Connect><Stream>``: a new stream of the same call)."""
        self._record("call_update", twiml)
        if self.streaming:
            self._ending_locally = True
            await self._stop_clock()
            await self._close_socket()
        try:
            instruction = parse_twiml(twiml)
        except TwimlRefused as refusal:
            self._refuse(str(refusal))
            self._notify()
            return
        await self._stream_again(instruction)

    async def _post_signed(self, url: str, form: dict[str, str], method: str) -> httpx.Response:
        """A request on the call, as Twilio makes it: signed, through the same client and proxy."""
        return await post_webhook(
            url,
            form,
            validator=self._validator,
            http_client=self._http_client,
            via=self._http_via,
            headers=self._proxy_headers,
            method=method,
        )

    async def _request_action(self, instruction: StreamInstruction) -> None:
        """``<Connect>`` is over: ask its ``action`` what to do next, as Twilio does, and record the answer."""
        assert instruction.action is not None
        url = urljoin(self._webhook_url, instruction.action)
        form = self._call_params("in-progress")
        self._record("action", f"{instruction.method} {url}")
        try:
            response = await self._post_signed(url, form, instruction.method)
        except httpx.HTTPError as exc:
            self.after_stream = AfterStream(url, None, "", (), f"11200 request failed: {exc!r}")
        else:
            try:
                verbs, error = parse_after_stream(twiml_of(response)), None
            except TwimlRefused as refusal:
                verbs, error = (), str(refusal)
            self.after_stream = AfterStream(url, response.status_code, response.text, verbs, error)
            self.action_answers.append(self.after_stream)
            if self.follow_connect and error is None and any(getattr(v, "tag", "") == "Connect" for v in verbs):
                self._record("after_stream", f"{response.status_code} {response.text}")
                self.after_stream = None
                await self._stream_again(parse_twiml(twiml_of(response)))
                return
        self._record("after_stream", f"{self.after_stream.status} {self.after_stream.twiml or self.after_stream.error}")
        dialled = self.after_stream.dialled
        if dialled is not None and dialled.action is not None:
            self.after_dial = await self._request_dial_action(dialled.action, dialled.method)
            self._record("after_dial", f"{self.after_dial.status} {self.after_dial.twiml or self.after_dial.error}")
        self._notify()

    async def _request_dial_action(self, action: str, method: str) -> AfterStream:
        """The dialled leg is over (``dial_status``): ask the ``<Dial action>`` what next, signed as Twilio does."""
        url = urljoin(self._webhook_url, action)
        form = self._call_params("in-progress") | {
            "DialCallStatus": self.dial_status,
            "DialCallSid": new_sid("CA"),
            "DialCallDuration": "0" if self.dial_status != "completed" else "42",
        }
        self._record("dial_action", f"{method} {url} {self.dial_status}")
        try:
            response = await self._post_signed(url, form, method)
        except httpx.HTTPError as exc:
            return AfterStream(url, None, "", (), f"11200 request failed: {exc!r}")
        try:
            verbs, error = parse_after_stream(twiml_of(response)), None
        except TwimlRefused as refusal:
            verbs, error = (), str(refusal)
        return AfterStream(url, response.status_code, response.text, verbs, error)

    # -------------------------------------------------------------- sending

    async def _send(self, build: Callable[[], list[Message]]) -> bool:
        """Build messages and send them in order, as one batch: they are built under the send lock, so
        sequence numbers go out in order whichever task sends. False once the socket has closed."""
        async with self._send_lock:
            for message in build():
                if not await self._send_frame(json.dumps(message, separators=(",", ":"))):
                    return False
        return True

    async def _send_frame(self, frame: str | bytes) -> bool:
        assert self._ws is not None
        try:
            await self._ws.send(frame)
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

    def _call_params(self, call_status: str) -> dict[str, str]:
        """The form of a request Twilio makes about this call (and the eval runner's mark, if asked)."""
        form = webhook_params(
            account_sid=self.account_sid,
            call_sid=self.call_sid,
            from_number=self.from_number,
            to_number=self.to_number,
            call_status=call_status,
        )
        return form if self._eval_mark is None else {**form, EVAL_PARAMETER: self._eval_mark}

    def _record(self, kind: str, detail: str) -> None:
        self.timeline.append((self.media_ms, kind, detail))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
