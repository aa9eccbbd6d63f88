"""One call's I/O: a thin driver around ``CallCore``.

Two loops feed the core — Twilio messages and model events — and carry out the actions it returns.
Whichever side ends first (caller hangs up, model closes, an error) runs the single idempotent
``end()``, which closes the other side, flushes the transcript and records why the call ended.

The model side can start before the caller's stream arrives (pre-warm from the webhook): the core
holds the greeting audio until Twilio's ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from voiceagent.call import Action, CallCore, CallOptions, EndCall, Log, ToModel, ToTwilio, Transcript
from voiceagent.logs import CallLog
from voiceagent.metrics import CallMetrics
from voiceagent.realtime import events as ev
from voiceagent.realtime.connection import ModelConnectError, ModelConnection
from voiceagent.transcripts import TranscriptLine, TranscriptSink
from voiceagent.twilio import messages as tw

MAX_BAD_MESSAGES = 50  # after this many malformed frames the stream is not Twilio: end the call


class TwilioSocket(Protocol):
    """The part of a starlette ``WebSocket`` the bridge uses."""

    async def receive(self) -> dict[str, Any]: ...
    async def send_text(self, data: str) -> None: ...
    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


Connector = Callable[[], Awaitable[ModelConnection]]


@dataclass(frozen=True)
class EndReason:
    """Why a call ended. ``model_unreachable`` makes the stream-ended handler apologise to the caller."""

    text: str
    model_unreachable: bool = False


class CallSession:
    """Everything one call owns. No state is shared between calls."""

    def __init__(
        self,
        call_sid: str,
        *,
        connect: Connector,
        session: ev.SessionConfig,
        sink: TranscriptSink,
        options: CallOptions | None = None,
        connect_attempts: int = 3,
        retry_delay: float = 0.5,
        recycle_seconds: float | None = None,
        tick_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        on_end: Callable[[CallSession], None] | None = None,
    ) -> None:
        self.call_sid = call_sid
        self.core = CallCore(options, call_sid=call_sid)
        self.log = CallLog(call_sid)
        self.end_reason: EndReason | None = None
        self.ended = asyncio.Event()
        self._connect = connect
        self._session = session
        self._sink = sink
        self._attempts = connect_attempts
        self._retry_delay = retry_delay
        self._on_end = on_end
        self._recycle_seconds = recycle_seconds
        self._tick_seconds = tick_seconds
        self._clock = clock
        self._model_since = clock()
        self._model: ModelConnection | None = None
        self._twilio: TwilioSocket | None = None
        self._twilio_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()
        self._bad_messages = 0
        self.metrics = CallMetrics()

    @property
    def attached(self) -> bool:
        """A caller's stream is (or was) attached to this session."""
        return self._twilio is not None

    # ------------------------------------------------------------ model side

    def start_model(self) -> None:
        """Connect to the model in the background (pre-warm, or at stream start)."""
        self._spawn(self._run_model(), "model")

    async def _run_model(self) -> None:
        model = await self._open_model()
        if model is not None:
            await self._read_model(model)

    async def _read_model(self, model: ModelConnection) -> None:
        """Read the model until the call ends. A dropped session (or one closed at its cap) is replaced
        by a new one that gets the configuration and the conversation so far."""
        while True:
            async for event in model:
                self.metrics.observe(event, self._clock())
                await self._apply(self.core.model_event(event))
                if self.end_reason:
                    return
            if self.end_reason or model is not self._model:
                return  # the call is over, or this session was recycled and another reader took over
            self.log.warning("model_connection_lost", code=model.close_code, reason=model.close_reason or "")
            replacement = await self._open_model(replay=True)
            if replacement is None:
                return
            model = replacement

    async def _open_model(self, *, replay: bool = False) -> ModelConnection | None:
        """Connect with retries and back-off; configure the session (and replay the conversation)."""
        self._model = None
        delay = self._retry_delay
        for attempt in range(1, self._attempts + 1):
            try:
                model = await self._connect()
            except ModelConnectError as exc:
                self.log.warning("model_connect_failed", attempt=attempt, of=self._attempts, error=str(exc))
                if attempt == self._attempts:
                    await self.end(EndReason("the model could not be reached", model_unreachable=True))
                    return None
                await asyncio.sleep(delay)
                delay *= 2
                continue
            if self.end_reason:  # the call ended while we were connecting
                await model.close()
                return None
            await self._configure(model, replay=replay)
            self._model = model
            self.log.info("model_connected", attempt=attempt, dialect=model.dialect.name, reconnect=replay)
            return model
        return None

    async def _configure(self, model: ModelConnection, *, replay: bool) -> None:
        await model.send(ev.UpdateSession(self._session))
        if replay:
            for action in self.core.model_reconnected():
                if isinstance(action, ToModel):
                    await model.send(action.command)
        self._model_since = self._clock()

    async def _recycle(self) -> None:
        """Swap in a fresh model session at a quiet moment, before the server's session cap."""
        old = self._model
        try:
            new = await self._connect()
        except ModelConnectError as exc:
            self.log.warning("model_recycle_failed", error=str(exc))
            self._model_since = self._clock()  # try again after another interval
            return
        if self.end_reason or old is not self._model:
            await new.close()
            return
        await self._configure(new, replay=True)
        self._model = new
        self.log.info("model_session_recycled", sessions=self.core.stats["model_sessions"])
        self._spawn(self._read_model(new), "model")
        if old is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), timeout=1.0)

    # ------------------------------------------------------------ the clock

    async def _run_clock(self) -> None:
        while not self.end_reason:
            now = self._clock()
            await self._apply(self.core.tick(now))
            if self._recycle_due(now):
                await self._recycle()
            await asyncio.sleep(self._tick_seconds)

    def _recycle_due(self, now: float) -> bool:
        return (
            self._recycle_seconds is not None
            and self._model is not None
            and self.core.session_ready
            and not self.core.winding_down
            and self.core.quiet
            and now - self._model_since >= self._recycle_seconds
        )

    async def wind_down(self, reason: str) -> None:
        """Say goodbye and end the call (draining, limits)."""
        await self._apply(self.core.wind_down(reason))

    # ------------------------------------------------------------ Twilio side

    async def run_stream(self, websocket: TwilioSocket, start: tw.Start) -> None:
        """Attach the caller's stream (already past ``start``) and run until the call ends."""
        self._twilio = websocket
        self.log.info("stream_started", stream_sid=start.stream_sid)
        self.metrics.stream_started(self._clock())
        await self._apply(self.core.twilio_event(start))
        reader = self._spawn(self._read_twilio(websocket), "twilio")
        clock = self._spawn(self._run_clock(), "clock")
        await self.ended.wait()
        reader.cancel()
        clock.cancel()

    async def _read_twilio(self, websocket: TwilioSocket) -> None:
        while not self.end_reason:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await self.end(EndReason("caller hung up (stream closed)"))
                return
            try:
                event = tw.parse_received(message)
            except tw.BadMessage as exc:
                await self._bad_message(str(exc))
                continue
            await self._apply(self.core.twilio_event(event))

    async def _bad_message(self, why: str) -> None:
        self._bad_messages += 1
        self.log.warning("twilio_bad_message", reason=why, count=self._bad_messages)
        if self._bad_messages >= MAX_BAD_MESSAGES:
            await self.end(EndReason("too many malformed messages on the media stream"))

    # ------------------------------------------------------------ actions

    async def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, ToTwilio):
                await self._send_twilio(action.message)
            elif isinstance(action, ToModel):
                if self._model is not None:
                    await self._model.send(action.command)
            elif isinstance(action, Transcript):
                self._record(action)
            elif isinstance(action, Log):
                self.log.log(action.level, action.event, **action.fields)
            elif isinstance(action, EndCall):
                await self.end(EndReason(action.reason))

    async def _send_twilio(self, message: tw.TwilioCommand) -> None:
        if self._twilio is None or self.core.stream_sid is None:
            return
        async with self._twilio_lock:
            with contextlib.suppress(Exception):  # a closed socket shows up as a disconnect on the reader
                await self._twilio.send_text(message.to_wire(self.core.stream_sid))

    def _record(self, line: Transcript) -> None:
        self._sink.record(TranscriptLine(self.call_sid, line.role, line.text, line.interrupted, line.heard_ms))

    # ------------------------------------------------------------ the one way out

    async def end(self, reason: EndReason) -> None:
        """End the call (idempotent): close both sides, flush the transcript, say why."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        await self._apply(self.core.finish())
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._model is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._model.close(), timeout=1.0)
        if self._twilio is not None:
            with contextlib.suppress(Exception):
                await self._twilio.close(code=1000)
        self.log.info("call_ended", reason=reason.text, **self.core.stats, **self.metrics.summary())
        self.ended.set()
        if self._on_end:
            self._on_end(self)

    def _spawn(self, coroutine: Awaitable[None], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._guard(coroutine, name), name=f"{self.call_sid}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guard(self, coroutine: Awaitable[None], name: str) -> None:
        try:
            await coroutine
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one call's bug must not take the process down
            self.log.error("call_task_failed", task=name, error=f"{type(exc).__name__}: {exc}")
            await self.end(EndReason(f"internal error in {name}"))
