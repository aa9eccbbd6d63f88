"""Fakes at the project's own seams, for tests that run in milliseconds (in the manner of h11's
``ConnectionPair`` and openai-agents' scripted realtime model).

The bridge talks to three things it does not own: a model session (``ModelConnector`` /
``ModelChannel``), the caller's transport (``Transport``; for Twilio, a ``TwilioTransport`` over the
WebSocket) and time (``Clock``). Here each is an in-memory object the test drives, so reconnects,
recycling, limits and teardown are tested with injected time and no sockets:

    clock, model, socket = ManualClock(), ScriptedModel(), MemoryTwilioSocket()
    bridge = CallBridge(core, connect=model, sink=sink, clock=clock)
    await bridge.run_stream(socket.transport())   # the real Twilio transport, over the memory socket
    ...
    model.connections[0].drop(code=1001)   # the server's session cap
    clock.advance(30)                      # the silence limit, at once
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from voiceagent.call.actions import ClearPlayback, PlayAudio
from voiceagent.call.inputs import CallerHungUp, TransportEvent
from voiceagent.realtime import events as ev
from voiceagent.realtime.connection import ModelConnectError
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter
from voiceagent.twilio.transport import TwilioTransport

__all__ = [
    "ManualClock",
    "MemoryTransport",
    "MemoryTwilioSocket",
    "ModelStep",
    "ScriptedModel",
    "ScriptedModelConnection",
    "UnexpectedCommand",
]


# ---------------------------------------------------------------- time


@dataclass(order=True)
class _Scheduled:
    when: float
    order: int
    callback: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """Injected monotonic time: it only moves when the test calls ``advance``."""

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._heap: list[_Scheduled] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Scheduled:
        entry = _Scheduled(when, next(self._order), callback)
        heapq.heappush(self._heap, entry)
        return entry

    @property
    def next_due(self) -> float | None:
        """When the earliest live timer fires, or None."""
        while self._heap and self._heap[0].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0].when if self._heap else None

    def advance(self, seconds: float) -> None:
        """Move time forward, running every timer that falls due on the way, each at its own time."""
        target = self._now + seconds
        while (due := self.next_due) is not None and due <= target:
            entry = heapq.heappop(self._heap)
            self._now = max(self._now, entry.when)
            entry.callback()
        self._now = target


# ---------------------------------------------------------------- the model


Expectation = type[Any] | ev.ModelCommand | Callable[[ev.ModelCommand], bool]


@dataclass(frozen=True, init=False)
class ModelStep:
    """One step of a scripted model session (openai-agents' ``RealtimeStep``): the bridge sends what
    ``expect`` says, then the server emits ``emit``. ``expect`` is a command type, an exact command or a
    predicate; ``None`` emits at once, without waiting for a send (e.g. the server speaking first)."""

    expect: Expectation | None
    emit: tuple[ev.ModelEvent, ...] = ()

    def __init__(self, expect: Expectation | None, *emit: ev.ModelEvent) -> None:
        object.__setattr__(self, "expect", expect)
        object.__setattr__(self, "emit", emit)

    def describe(self) -> str:
        return self.expect.__name__ if isinstance(self.expect, type) else repr(self.expect)

    def accepts(self, command: ev.ModelCommand) -> bool:
        if isinstance(self.expect, type):
            return isinstance(command, self.expect)
        if callable(self.expect):
            return bool(self.expect(command))
        return command == self.expect


class UnexpectedCommand(AssertionError):
    """The bridge sent a scripted session something its script did not expect (or left a step unsent)."""


class ScriptedModelConnection:
    """One model session the test controls: records what the bridge sends, emits what the test says.

    ``auto_confirm`` answers ``session.update`` with a μ-law ``session.updated``, as a healthy server does.
    With ``steps`` the session is strict: each send must be the next step's ``expect`` (else
    ``UnexpectedCommand``, raised to the sender and kept for ``assert_complete``), and
    ``assert_complete`` fails while a step is left.
    """

    def __init__(self, *, auto_confirm: bool = True, steps: tuple[ModelStep, ...] | None = None) -> None:
        self.sent: list[ev.ModelCommand] = []
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.failures: list[UnexpectedCommand] = []
        self._auto_confirm = auto_confirm
        self._steps = None if steps is None else deque(steps)
        self._events: asyncio.Queue[ev.ModelEvent | None] = asyncio.Queue()
        self._emit_unprompted()

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def emit(self, *events: ev.ModelEvent) -> None:
        """The server sends these events, in order."""
        for event in events:
            self._events.put_nowait(event)

    def drop(self, code: int = 1006, reason: str = "") -> None:
        """The server goes away (1006: the connection dropped; 1001: the session cap)."""
        if not self.closed:
            self.close_code, self.close_reason = code, reason
            self._events.put_nowait(None)

    def commands(self, kind: type[Any]) -> list[Any]:
        """The commands of one type the bridge sent, in order."""
        return [command for command in self.sent if isinstance(command, kind)]

    def assert_complete(self) -> None:
        """Fail if the bridge sent something unexpected or a scripted step is still waiting for its send."""
        if self.failures:
            raise self.failures[0]
        if self._steps:
            raise UnexpectedCommand(f"the script was not played out: waiting for {self._steps[0].describe()}")

    async def send(self, command: ev.ModelCommand) -> None:
        if self.closed:
            return  # like ModelConnection: sends after the close are dropped, not raised
        self.sent.append(command)
        if self._auto_confirm and isinstance(command, ev.UpdateSession):
            self.emit(ev.SessionUpdated(ev.PCMU, ev.PCMU))
        if self._steps is None:
            return
        if not self._steps or not self._steps[0].accepts(command):
            wanted = self._steps[0].describe() if self._steps else "nothing more"
            failure = UnexpectedCommand(f"the bridge sent {command!r}; the script expected {wanted}")
            self.failures.append(failure)
            raise failure
        self.emit(*self._steps.popleft().emit)
        self._emit_unprompted()

    def _emit_unprompted(self) -> None:
        while self._steps and self._steps[0].expect is None:
            self.emit(*self._steps.popleft().emit)

    def __aiter__(self) -> AsyncIterator[ev.ModelEvent]:
        return self._stream()

    async def _stream(self) -> AsyncIterator[ev.ModelEvent]:
        while (event := await self._events.get()) is not None:
            yield event

    async def close(self) -> None:
        self.drop(1000, "closed by the client")


class ScriptedModel:
    """A ``ModelConnector``: every connect opens a new ``ScriptedModelConnection`` unless a failure was
    scripted with ``fail_next``; ``script`` makes the next connection a strict, scripted one."""

    def __init__(self, *, auto_confirm: bool = True) -> None:
        self.connections: list[ScriptedModelConnection] = []
        self.attempts = 0
        self._failures: deque[str] = deque()
        self._scripts: deque[tuple[ModelStep, ...]] = deque()
        self._auto_confirm = auto_confirm
        self._open = asyncio.Event()
        self._open.set()

    def fail_next(self, times: int = 1, message: str = "HTTP 503 Service Unavailable") -> None:
        self._failures.extend([message] * times)

    def script(self, *steps: ModelStep) -> None:
        """The next connection follows ``steps`` and nothing else (see ``ScriptedModelConnection``)."""
        self._scripts.append(steps)

    def assert_complete(self) -> None:
        """Fail if a scripted connection was never opened, sent something unexpected or was left unfinished."""
        if self._scripts:
            raise UnexpectedCommand(f"{len(self._scripts)} scripted session(s) never connected")
        for connection in self.connections:
            connection.assert_complete()

    def hold_connects(self) -> None:
        """Connects wait (like a slow handshake) until ``release_connects``."""
        self._open.clear()

    def release_connects(self) -> None:
        self._open.set()

    @property
    def current(self) -> ScriptedModelConnection:
        return self.connections[-1]

    async def __call__(self) -> ScriptedModelConnection:
        self.attempts += 1
        await self._open.wait()
        if self._failures:
            raise ModelConnectError(self._failures.popleft())
        steps = self._scripts.popleft() if self._scripts else None
        connection = ScriptedModelConnection(auto_confirm=self._auto_confirm, steps=steps)
        self.connections.append(connection)
        return connection


# ---------------------------------------------------------------- the caller's WebSocket


class MemoryTwilioSocket:
    """Twilio's end of a Media Stream, in memory: what a starlette ``WebSocket`` offers ``TwilioTransport``."""

    def __init__(self, *, call_sid: str = "CA" + "1" * 32, stream_sid: str = "MZ" + "2" * 32) -> None:
        self.call_sid, self.stream_sid = call_sid, stream_sid
        self.sent: list[dict[str, Any]] = []  # every frame the bridge sent, parsed
        self.close_code: int | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._echoed: set[str] = set()

    def start(self, parameters: dict[str, str] | None = None) -> tw.Start:
        """The ``start`` message that opened this stream (what the app hands the bridge)."""
        return tw.Start(self.stream_sid, self.call_sid, "AC" + "3" * 32, dict(parameters or {}))

    def transport(self, parameters: dict[str, str] | None = None) -> TwilioTransport:
        """The Twilio transport over this socket, as the app hands it to the bridge after ``start``."""
        return TwilioTransport(self, MediaStreamAdapter(self.start(parameters)))

    # ------------------------------------------------------------ what Twilio sends

    def push(self, message: dict[str, Any] | str | bytes) -> None:
        """Deliver one frame: a dict is sent as JSON text, a str as is, bytes as a binary frame."""
        if isinstance(message, bytes):
            self._inbox.put_nowait({"type": "websocket.receive", "bytes": message})
        else:
            text = message if isinstance(message, str) else json.dumps(message)
            self._inbox.put_nowait({"type": "websocket.receive", "text": text})

    def media(self, payload: str) -> None:
        self.push({"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}})

    def echo(self, name: str) -> None:
        self.push({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    def echo_all(self) -> list[str]:
        """Echo every mark sent so far and not yet echoed (as if all the audio had played)."""
        pending = [name for name in self.marks if name not in self._echoed]
        for name in pending:
            self._echoed.add(name)
            self.echo(name)
        return pending

    def dtmf(self, digit: str) -> None:
        self.push({"event": "dtmf", "streamSid": self.stream_sid, "dtmf": {"track": "inbound_track", "digit": digit}})

    def stop(self) -> None:
        self.push({"event": "stop", "streamSid": self.stream_sid, "stop": {"callSid": self.call_sid}})

    def disconnect(self) -> None:
        self._inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})

    # ------------------------------------------------------------ what the bridge sent

    @property
    def marks(self) -> list[str]:
        return [frame["mark"]["name"] for frame in self.sent if frame.get("event") == "mark"]

    @property
    def payloads(self) -> list[str]:
        return [frame["media"]["payload"] for frame in self.sent if frame.get("event") == "media"]

    @property
    def clears(self) -> int:
        return sum(frame.get("event") == "clear" for frame in self.sent)

    # ------------------------------------------------------------ the starlette WebSocket surface

    async def receive(self) -> dict[str, Any]:
        return await self._inbox.get()

    async def send_text(self, data: str) -> None:
        if self.close_code is not None:
            raise RuntimeError("send after close")
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        if self.close_code is None:
            self.close_code = code
            self.disconnect()


# ---------------------------------------------------------------- any transport, in the core's words


class MemoryTransport:
    """A caller's transport with no wire at all: the test pushes the core's ``TransportEvent``s and reads
    the playback the bridge sent (``sent``, in order, once flushed). What a second transport looks like."""

    def __init__(self, stream_id: str = "memory-stream") -> None:
        self.stream_id = stream_id
        self.queued: list[PlayAudio | ClearPlayback] = []  # played, not yet flushed
        self.sent: list[PlayAudio | ClearPlayback] = []
        self.closed = False
        self._inbox: asyncio.Queue[TransportEvent] = asyncio.Queue()

    def push(self, *events: TransportEvent) -> None:
        """The caller's side reports these, in order."""
        for event in events:
            self._inbox.put_nowait(event)

    async def receive(self) -> TransportEvent:
        return await self._inbox.get()

    def decode(self, frame: TransportEvent) -> TransportEvent | None:
        return frame

    def play(self, action: PlayAudio | ClearPlayback) -> None:
        self.queued.append(action)

    async def flush(self) -> None:
        self.sent += self.queued
        self.queued.clear()

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.push(CallerHungUp("transport closed"))
