"""One call's I/O: a thin driver around ``CallCore`` (in the manner of websockets' asyncio layer).

It feeds the core what arrives — caller frames through the ``Transport``, model events, timer
expiries, connect results — and carries out the actions it returns. It decides nothing: which side
ends the call, when to reconnect or recycle, when a limit bites are the core's calls.

Ordering: actions are carried out synchronously into per-peer outboxes in the order the core returned
them, and each outbox is flushed by one sender at a time, so a ``clear`` decided by the model reader can
never overtake the ``media`` a moment earlier decided by the same core.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol, assert_never

from voiceagent.call import (
    Action,
    AgentClosing,
    BargeIn,
    CallCore,
    CallEnded,
    ClearPlayback,
    ConnectFailed,
    ConnectModel,
    DropNewModel,
    EndCall,
    EndReason,
    Log,
    Observation,
    PlayAudio,
    ReasonDropped,
    ReasonsAnswered,
    RecordLine,
    Refused,
    ResponseRefused,
    RunTool,
    SendToModel,
    ToolCalled,
    ToolNotRun,
    UseNewModel,
    log_line,
)
from voiceagent.call.inputs import StreamStarted
from voiceagent.call.transport import Transport
from voiceagent.logs import CallLog
from voiceagent.outbox import Outbox as _Outbox
from voiceagent.realtime import events as ev
from voiceagent.realtime.connection import ModelConnectError
from voiceagent.transcripts import TranscriptSink

__all__ = ["CallBridge", "Clock", "LoopClock", "ModelChannel", "ModelConnector"]

CLOSE_TIMEOUT_SECONDS = 1.0


class ModelChannel(Protocol):
    """One open model session speaking our vocabulary (``ModelConnection``, or a scripted fake)."""

    @property
    def close_code(self) -> int | None: ...
    @property
    def close_reason(self) -> str | None: ...
    async def send(self, command: ev.ModelCommand) -> None: ...
    def __aiter__(self) -> AsyncIterator[ev.ModelEvent]: ...
    async def close(self) -> None: ...


ModelConnector = Callable[[], Awaitable[ModelChannel]]
"""Opens a new model session or raises ``ModelConnectError``."""


class ToolOutcome(Protocol):
    @property
    def output(self) -> str: ...
    @property
    def error(self) -> str | None: ...


class ToolRunner(Protocol):
    """Runs the operator's tools (``voiceagent.tools.ToolBox``); never raises."""

    async def run(self, name: str, arguments: str) -> ToolOutcome: ...


@dataclass(frozen=True)
class _NoSuchTool:
    output: str = '{"error": "no such tool"}'
    error: str | None = "no such tool"


class _NoTools:
    async def run(self, name: str, arguments: str) -> ToolOutcome:
        return _NoSuchTool()


NO_TOOLS: ToolRunner = _NoTools()


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where the bridge gets ``now`` and schedules the core's deadline (injectable for tests)."""

    def now(self) -> float: ...
    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle: ...


class LoopClock:
    """The event loop's monotonic clock.

    The loop is looked up once, on first use: ``asyncio.get_running_loop()`` makes a ``getpid()`` system
    call in CPython, and the clock is read for every frame of every call. A clock belongs to one call,
    so to one loop.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def now(self) -> float:
        return self._running_loop().time()

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        return self._running_loop().call_at(when, callback)


class CallBridge:
    """Everything one call owns. No state is shared between calls."""

    def __init__(
        self,
        core: CallCore,
        *,
        connect: ModelConnector,
        sink: TranscriptSink,
        clock: Clock | None = None,
        tools: ToolRunner | None = None,
        on_end: Callable[[CallBridge], None] | None = None,
    ) -> None:
        self.core = core
        self.call_sid = core.call_sid
        self.log = CallLog(core.call_sid)
        self.ended: EndCall | None = None  # set once, by the core's EndCall
        self.observer: Callable[[Observation], None] | None = None  # shown each fact the core observed
        self.finished = asyncio.Event()  # teardown complete
        self._connect = connect
        self._sink = sink
        self._clock = clock or LoopClock()
        self._on_end = on_end
        self._tools = tools or NO_TOOLS
        self._model: ModelChannel | None = None
        self._opened: ModelChannel | None = None  # connected, not yet taken into use by the core
        self._replaced: ModelChannel | None = None  # taken out of use, to be closed
        self._dropped: ModelChannel | None = None  # refused by the core, to be closed
        self._model_out: _Outbox[ev.ModelCommand] | None = None
        self._transport: Transport[Any] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: TimerHandle | None = None
        self._timer_due: float | None = None
        self._teardown: asyncio.Task[None] | None = None

    @property
    def attached(self) -> bool:
        """A caller's stream is (or was) attached to this call."""
        return self._transport is not None

    # ------------------------------------------------------------ inputs from the outside

    def start(self) -> None:
        """The call exists: the core opens its first model session (pre-warm, or at stream start)."""
        self._apply(self.core.start(self._clock.now()))

    def wind_down(self, reason: EndReason, detail: str) -> None:
        """Say goodbye and end the call (draining, limits)."""
        self._apply(self.core.wind_down(reason, detail, self._clock.now()))
        self._spawn(self._flush(), "flush")

    def operator(self, act: Callable[[float], list[Action]]) -> None:
        """An operator steps in: ``act(now)`` is one of the core's ``operator_*`` inputs (or ``end``)."""
        self._apply(act(self._clock.now()))
        self._spawn(self._flush(), "flush")

    async def end(self, reason: EndReason, detail: str) -> None:
        """End the call at once and wait until it is torn down."""
        self._apply(self.core.end(reason, detail, self._clock.now()))
        await self.finished.wait()

    async def run_stream(self, transport: Transport[Any]) -> None:
        """Attach the caller's stream (already started) and run until the call ends."""
        self._transport = transport
        self.log.info("stream_started", stream_sid=transport.stream_id)
        self._apply(self.core.transport_event(StreamStarted(), self._clock.now()))
        self._spawn(self._read_transport(transport), "transport")
        await self._flush()
        await self.finished.wait()

    # ------------------------------------------------------------ readers

    async def _read_transport(self, transport: Transport[Any]) -> None:
        while self.ended is None:
            event = transport.decode(await transport.receive())
            if event is None:
                continue
            self._apply(self.core.transport_event(event, self._clock.now()))
            await self._flush()

    async def _read_model(self, channel: ModelChannel) -> None:
        async for event in channel:
            if channel is not self._model:
                return  # replaced by a newer session; the new reader carries on
            self._apply(self.core.model_event(event, self._clock.now()))
            await self._flush()
        if channel is self._model:
            self._model = self._model_out = None
            self._apply(self.core.model_lost(channel.close_code, channel.close_reason or "", self._clock.now()))
            await self._flush()

    async def _open_model(self, attempt: int) -> None:
        try:
            channel = await self._connect()
        except ModelConnectError as exc:
            self._apply(self.core.model_connect_failed(attempt, str(exc), self._clock.now()))
            await self._flush()
            return
        self._opened = channel
        self._apply(self.core.model_connected(attempt, self._clock.now()))
        await self._flush()
        if self._replaced is not None:  # make-before-break: the new session is configured before the old goes
            old, self._replaced = self._replaced, None
            await _close_quietly(old.close())
        if self._dropped is not None:
            dropped, self._dropped = self._dropped, None
            await _close_quietly(dropped.close())

    # ------------------------------------------------------------ actions

    def _apply(self, actions: list[Action]) -> None:
        """Carry out the core's actions, in order, without awaiting: sends are queued, not interleaved."""
        for action in actions:
            match action:
                case PlayAudio() | ClearPlayback():
                    if self._transport is not None:
                        self._transport.play(action)
                case SendToModel(command=command):
                    if self._model_out is not None:
                        self._model_out.put(command)
                case RecordLine(line=line):
                    self._sink.record(line)
                case Log(level=level, event=event, fields=fields):
                    self.log.log(level, event, **fields)
                case BargeIn() | ToolCalled() | AgentClosing() | ConnectFailed() | Refused() | CallEnded():
                    self._observe(action)
                case ReasonsAnswered() | ReasonDropped() | ResponseRefused() | ToolNotRun():
                    self._observe(action)
                case ConnectModel(attempt=attempt):
                    self._spawn(self._open_model(attempt), "connect")
                case RunTool(call_id=call_id, name=name, arguments=arguments):
                    self._spawn(self._run_tool(call_id, name, arguments), f"tool {name}")
                case UseNewModel():
                    self._use_opened()
                case DropNewModel():
                    self._dropped, self._opened = self._opened, None
                case EndCall():
                    self._begin_teardown(action)
                case _:
                    assert_never(action)
        self._arm_timer()

    def _observe(self, fact: Observation) -> None:
        """A fact: its log line (the same as ever), then whoever counts or shows it."""
        line = log_line(fact)
        self.log.log(line.level, line.event, **line.fields)
        if self.observer is not None:
            self.observer(fact)

    async def _run_tool(self, call_id: str, name: str, arguments: str) -> None:
        """A tool runs beside the call (audio never waits for it); the teardown cancels it."""
        result = await self._tools.run(name, arguments)
        self._apply(self.core.tool_finished(call_id, result.output, self._clock.now(), error=result.error))
        await self._flush()

    def _use_opened(self) -> None:
        """The session just opened becomes the one commands go to; the one it replaces is closed later."""
        channel, self._opened = self._opened, None
        if channel is None:
            return
        old_out = self._model_out
        self._replaced = self._model
        self._model, self._model_out = channel, _Outbox(channel.send, peer="model", log=self.log)
        if old_out is not None:
            self._spawn(old_out.flush(), "flush")  # what was already decided for the old session
        self._spawn(self._read_model(channel), "model")

    async def _flush(self) -> None:
        if self._transport is not None:
            await self._transport.flush()
        if self._model_out is not None:
            await self._model_out.flush()

    def _arm_timer(self) -> None:
        """Keep one timer armed for the core's next deadline.

        A timer armed for earlier than the deadline is kept: it fires, the core finds nothing due
        (``handle_timer`` acts only on deadlines that have passed) and the timer is armed again. Every
        caller frame pushes the stream-silence deadline later, so re-arming on each move would cancel and
        schedule a timer 50 times a second per call.
        """
        due = None if self.ended is not None else self.core.next_deadline()
        armed_earlier = due is not None and self._timer_due is not None and self._timer_due <= due
        if due == self._timer_due or armed_earlier:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = None if due is None else self._clock.call_at(due, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_due = None
        self._apply(self.core.handle_timer(self._clock.now()))
        self._spawn(self._flush(), "flush")

    # ------------------------------------------------------------ the one way out

    def _begin_teardown(self, end: EndCall) -> None:
        if self.ended is None:
            self.ended = end
            self._teardown = asyncio.get_running_loop().create_task(self._tear_down(), name=f"{self.call_sid}:end")

    async def _tear_down(self) -> None:
        """Close both sides once: what the core said last is delivered first (briefly), then sockets go."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), timeout=CLOSE_TIMEOUT_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._model is not None:
            await _close_quietly(self._model.close())
        if self._transport is not None:
            await _close_quietly(self._transport.close())
        self.finished.set()
        if self._on_end is not None:
            self._on_end(self)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        if self.ended is not None and name != "flush":
            coroutine.close()  # the call is over: nothing new starts
            return
        task = asyncio.get_running_loop().create_task(self._guard(coroutine, name), name=f"{self.call_sid}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # one call's bug must not take the process down
            self.log.error("call_task_failed", task=name, error=f"{type(exc).__name__}: {exc}")
            self._apply(self.core.end(EndReason.INTERNAL_ERROR, f"internal error in {name}", self._clock.now()))


async def _close_quietly(closing: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(closing, timeout=CLOSE_TIMEOUT_SECONDS)
