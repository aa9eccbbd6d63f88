"""`voiceagent serve` with candidate optimisations monkeypatched in, for ``load.py --lever NAME``.

    python benchmarks/levers.py --lever lazy-timer --lever cached-loop   # then exactly `voiceagent serve`

Each lever measures what a change to production code would buy; none of them is that change (the
production code is not edited by the benchmark). This module imports nothing of the test kit, so the
server's memory is what ``voiceagent serve`` has.

* ``cached-loop``: ``LoopClock`` keeps its event loop instead of calling ``asyncio.get_running_loop()``
  (in CPython 3.11 a ``getpid()`` system call) at every ``now()`` and ``call_at()``.
* ``lazy-timer``: ``CallBridge._arm_timer`` re-arms the call's timer only when the core's next deadline
  moves *earlier*. Every caller frame moves the stream-silence deadline later, so today every frame
  cancels one timer and schedules another; with this the early timer fires, the core finds nothing due
  (``handle_timer`` only acts on deadlines that have passed) and the timer is armed again.
* ``orjson``: the JSON of both sockets (Twilio messages, Realtime events) through orjson.
* ``direct-send``: ``ModelConnection.send`` hands the frame to websockets' sans-I/O protocol and the
  transport directly, skipping ``Connection.send``'s async context manager (state checks, drain), as
  uvicorn does on the server side. Not production-safe as it stands (no back-pressure): it prices the
  wrapper.
* ``all``: all of the above.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

LEVERS = ("cached-loop", "lazy-timer", "orjson", "direct-send")


def cached_loop() -> None:
    from voiceagent.bridge import LoopClock

    def loop_of(clock: Any) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop | None = clock.__dict__.get("_loop")
        if loop is None:
            loop = clock.__dict__["_loop"] = asyncio.get_running_loop()
        return loop

    def now(self: Any) -> float:
        return loop_of(self).time()

    def call_at(self: Any, when: float, callback: Any) -> Any:
        return loop_of(self).call_at(when, callback)

    LoopClock.now = now  # type: ignore[method-assign]
    LoopClock.call_at = call_at  # type: ignore[method-assign]


def lazy_timer() -> None:
    from voiceagent.bridge import CallBridge

    def arm_timer(self: Any) -> None:
        due = None if self.ended is not None else self.core.next_deadline()
        if due == self._timer_due or (due is not None and self._timer_due is not None and self._timer_due < due):
            return  # armed for earlier: it fires, the core finds nothing due yet, and it is armed again
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = None if due is None else self._clock.call_at(due, self._on_timer)

    CallBridge._arm_timer = arm_timer  # type: ignore[method-assign]


def fast_json() -> None:
    import orjson

    from voiceagent.realtime import connection
    from voiceagent.twilio import messages

    class FastJson:
        @staticmethod
        def dumps(value: Any, **_: Any) -> str:
            return orjson.dumps(value).decode()

        @staticmethod
        def loads(text: str | bytes) -> Any:
            return orjson.loads(text)

    connection.json = FastJson  # type: ignore[assignment]
    messages.json = FastJson  # type: ignore[assignment]


def direct_send() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.protocol import OPEN

    from voiceagent.realtime import connection

    async def send(self: Any, command: Any) -> None:
        message = connection.json.dumps(self.dialect.encode(command))
        websocket = self._websocket
        if websocket.protocol.state is not OPEN:
            try:
                await websocket.send(message)  # the slow path says why
            except ConnectionClosed:
                pass
            return
        websocket.protocol.send_text(message.encode())
        websocket.send_data()

    connection.ModelConnection.send = send  # type: ignore[method-assign]


APPLY = {"cached-loop": cached_loop, "lazy-timer": lazy_timer, "orjson": fast_json, "direct-send": direct_send}


def apply(name: str) -> None:
    for lever in LEVERS if name == "all" else [name]:
        if lever not in APPLY:
            raise SystemExit(f"unknown lever {lever!r}; have {', '.join(LEVERS)}, all")
        APPLY[lever]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lever", action="append", default=[], choices=[*LEVERS, "all"])
    for lever in parser.parse_args().lever:
        apply(lever)
    from voiceagent.cli import main as voiceagent

    raise SystemExit(voiceagent(["serve"]))


if __name__ == "__main__":
    main()
