"""Waiting in tests: one bounded ``wait_until`` for every "until this is true" in the test kit.

Tests of a call cannot sleep a fixed time and look (too short on a loaded machine, too slow on an idle
one), and must never wait without a bound (a hung test tells nothing). ``wait_until`` checks a
predicate until it holds and fails the test, saying what it waited for, once ``timeout`` has passed.
The predicate may be a coroutine function (e.g. "the server answers /readyz with 200").

``LoopLag`` measures the other thing a test of latency needs to know: how late the event loop ran while
it watched (a loaded machine delays every task of the app and of both fakes alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

POLL_SECONDS = 0.01
LAG_PROBE_SECONDS = 0.005


@overload
async def wait_until(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,
    *,
    wake: Callable[[], Awaitable[object]] | None = ...,
    describe: Callable[[], str] | None = ...,
) -> T: ...


@overload
async def wait_until(
    predicate: Callable[[], T],
    timeout: float = ...,
    *,
    wake: Callable[[], Awaitable[object]] | None = ...,
    describe: Callable[[], str] | None = ...,
) -> T: ...


async def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    *,
    wake: Callable[[], Awaitable[object]] | None = None,
    describe: Callable[[], str] | None = None,
) -> Any:
    """Wait until ``predicate()`` is truthy and return its value; ``AssertionError`` after ``timeout``
    seconds (of the event loop's clock), naming the predicate and adding ``describe()``.

    The predicate is checked every ``POLL_SECONDS`` or, sooner, whenever ``wake()`` (e.g. an
    ``asyncio.Event``'s ``wait``) completes, and one last time at the deadline. If it returns an awaitable,
    that is awaited (within the same deadline) and its result is what counts; one still unanswered at
    the deadline counts as false.
    """
    if timeout < 0:
        raise ValueError("timeout must not be negative")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    async def check() -> Any:
        value = predicate()
        if inspect.isawaitable(value):
            try:
                async with asyncio.timeout_at(deadline):
                    value = await value
            except TimeoutError:
                return None  # still waiting for the answer at the deadline: not true
        return value

    value = await check()
    while not value and loop.time() < deadline:
        step = min(POLL_SECONDS, deadline - loop.time())
        if wake is None:
            await asyncio.sleep(step)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(step):
                    await wake()
        value = await check()
    if not value:
        detail = describe() if describe is not None else ""
        message = f"wait_until: {_name(predicate)} still false after {timeout} s"
        raise AssertionError(message + (f"\n{detail}" if detail else ""))
    return value


def _name(predicate: Callable[[], object]) -> str:
    """The predicate's name; for a lambda, its source line too."""
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    if name.endswith("<lambda>"):
        with contextlib.suppress(OSError, TypeError):
            name += f" ({inspect.getsource(predicate).strip()})"
    return name


class LoopLag:
    """``async with LoopLag() as lag:`` — ``lag.worst_ms`` is the longest the event loop was late waking a
    5 ms sleeper meanwhile: near 0 on an idle machine, tens of ms on a loaded one. A latency test widens
    its tolerance by it rather than flake, and stays exact when the machine is quiet."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(LAG_PROBE_SECONDS)
            self.worst_ms = max(self.worst_ms, (loop.time() - began - LAG_PROBE_SECONDS) * 1000)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._probe(), name="loop-lag-probe")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
