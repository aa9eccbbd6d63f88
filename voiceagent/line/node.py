"""One instance on the line: its shared state, its bus, and the requests it answers for the others.

A request is a message with an ``id`` to one instance; the answer comes back as a ``reply`` with that
``id``, or not at all within the timeout (the instance is gone, or too busy: the asker says so). What
an instance answers is registered by the parts that know (``answer(kind, handler)``): the service
answers ``end`` and ``release``, the operator API ``control`` and ``live``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from voiceagent.line.local import LocalBus, LocalState
from voiceagent.line.shared import EVERYONE, Bus, Message, SharedState
from voiceagent.logs import CallLog

__all__ = ["REQUEST_TIMEOUT_SECONDS", "LineNode", "line_node"]

REQUEST_TIMEOUT_SECONDS = 3.0  # an owning instance that does not answer by then is gone (or stuck)
HOUSEKEEPING_EVERY_SECONDS = 600.0
FORGET_AFTER_SECONDS = 86_400.0  # ends, resumes and owners a day old (calls are far shorter)
WATCH_LEASE_SECONDS = 30.0  # an instance with live-event subscribers says so this often (and a third more)

Answerer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
EventSink = Callable[[str, dict[str, Any]], None]


class LineNode:
    def __init__(self, state: SharedState, bus: Bus) -> None:
        self.state = state
        self.bus = bus
        self.instance = state.instance
        self._answerers: dict[str, Answerer] = {}
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._pending: set[asyncio.Task[None]] = set()
        self.on_event: EventSink | None = None  # events of the other instances (the live-event hub)
        self._log = CallLog()
        self.running = False
        self._housekeeping: asyncio.Task[None] | None = None
        self._watched_until = 0.0  # some instance has /api/events subscribers until then (monotonic)

    @property
    def shared(self) -> bool:
        return self.state.shared

    def answer(self, kind: str, answerer: Answerer) -> None:
        self._answerers[kind] = answerer

    async def start(self) -> None:
        await self.state.start()
        await self.bus.start(self._deliver)
        self.running = True
        self._housekeeping = asyncio.get_running_loop().create_task(self._keep_house(), name="line-housekeeping")

    async def _keep_house(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY_SECONDS)
            self.later(self.state.forget_older_than(FORGET_AFTER_SECONDS), "housekeeping")

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.settle()
        self.running = False
        await self.bus.stop()
        await self.state.stop()

    # ------------------------------------------------------------ writes that need no answer

    def later(self, work: Coroutine[Any, Any, Any], what: str) -> None:
        """Run ``work`` without holding the caller up (a call's end, an owner change); ``settle`` waits."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if not self.running or loop is None:  # not started (a test without the app's lifespan): nothing to share
            work.close()
            return

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:  # the line's database away: the call goes on, the log says so
                self._log.warning("line_write_failed", what=what, error=str(exc)[:200])

        task = loop.create_task(guarded(), name=f"line:{what}")
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        if self._pending:
            await asyncio.wait(list(self._pending), timeout=REQUEST_TIMEOUT_SECONDS)

    @property
    def watched(self) -> bool:
        """Some other instance has live-event subscribers: this one's events are worth sending."""
        return time.monotonic() < self._watched_until

    async def watch(self) -> None:
        """This instance has live-event subscribers: the others send their events for a lease."""
        await self.bus.send(Message(EVERYONE, self.instance, "watch", {}))

    async def publish(self, kind: str, data: dict[str, Any]) -> None:
        await self.bus.send(Message(EVERYONE, self.instance, "event", {"kind": kind, "data": data}))

    # ------------------------------------------------------------ requests

    async def request(
        self, to: str, kind: str, body: dict[str, Any], *, timeout: float = REQUEST_TIMEOUT_SECONDS
    ) -> dict[str, Any] | None:
        """Ask instance ``to``; its answer, or None if none came within ``timeout``."""
        if not self.running:
            return None
        request_id = f"{self.instance}:{next(self._ids)}"
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = waiter
        try:
            await self.bus.send(Message(to, self.instance, kind, {**body, "id": request_id}))
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(request_id, None)

    async def ask_everyone(self, kind: str, body: dict[str, Any], *, timeout: float) -> dict[str, dict[str, Any]]:
        """Ask every other live instance at once: instance -> answer (the silent ones are left out)."""
        others = [name for name in await self.state.instances() if name != self.instance]
        answers = await asyncio.gather(*(self.request(name, kind, body, timeout=timeout) for name in others))
        return {name: answer for name, answer in zip(others, answers, strict=True) if answer is not None}

    async def _deliver(self, message: Message) -> None:
        if message.sender == self.instance and message.to == EVERYONE:
            return  # our own broadcast
        if message.kind == "reply":
            waiter = self._waiting.get(str(message.body.get("id")))
            if waiter is not None and not waiter.done():
                waiter.set_result(message.body)
            return
        if message.kind == "watch":
            self._watched_until = time.monotonic() + WATCH_LEASE_SECONDS * 4 / 3
            return
        if message.kind == "event":
            if self.on_event is not None:
                data = message.body.get("data")
                if isinstance(data, dict):
                    self.on_event(str(message.body.get("kind")), {**data, "instance": message.sender})
            return
        answerer = self._answerers.get(message.kind)
        if answerer is None:
            return
        try:
            answer = await answerer(message.body)
        except Exception as exc:
            self._log.warning("line_request_failed", kind=message.kind, error=repr(exc)[:200])
            answer = {"status": 500, "body": {"error": "the owning instance failed to act"}}
        with contextlib.suppress(Exception):
            reply = {**answer, "id": message.body.get("id")}
            await self.bus.send(Message(message.sender, self.instance, "reply", reply))


def line_node(instance: str, database_url: str | None) -> LineNode:
    """The line for one instance: shared through PostgreSQL when the records are there, else in process."""
    if database_url is not None and database_url.split(":", 1)[0].lower() in ("postgresql", "postgres"):
        from voiceagent.line.postgres import PostgresBus, PostgresState

        return LineNode(PostgresState(database_url, instance), PostgresBus(database_url, instance))
    return LineNode(LocalState(instance), LocalBus(instance))
