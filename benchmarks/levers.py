"""`voiceagent serve` with a candidate change applied in its own process, for ``load.py --lever NAME``.

    python benchmarks/levers.py --lever batch-60 --lever direct-send   # then exactly `voiceagent serve`

Each lever prices a change against the production code as it is; the production code is not edited by
the benchmark. This module imports nothing of the test kit, so the server's memory is what
``voiceagent serve`` has. Levers already taken into production (a cached event loop in ``LoopClock``, a
timer kept armed for earlier than the deadline, orjson) are priced the other way round:

* ``stdlib-json``: the JSON of both sockets through the standard library's ``json`` instead of orjson.
* ``batch-40``, ``batch-60``: ``VOICEAGENT_CALLER_AUDIO_BATCH_MS`` at 40 or 60 (caller audio goes to the
  model in chunks of 2 or 3 frames; the inbound latency figure includes the wait).
* ``direct-send``: ``ModelConnection.send`` hands the frame to websockets' sans-I/O protocol and the
  transport directly, skipping ``Connection.send``'s async context manager (state checks, drain), as
  uvicorn does on the server side. Not production-safe as it stands (no back-pressure): it prices the
  wrapper.
* ``ws-wsproto``, ``ws-legacy``: uvicorn's other WebSocket implementations for the Twilio socket (wsproto,
  which must be installed, and websockets' deprecated legacy protocol) instead of websockets' sans-I/O one.
* ``gc-freeze``: everything imported at start-up moves to the garbage collector's permanent generation
  (``gc.freeze()``), so that a full collection under load walks only what the calls made.
* ``all``: batch-60 and direct-send.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
from typing import Any

LEVERS = ("stdlib-json", "batch-40", "batch-60", "direct-send", "ws-wsproto", "ws-legacy", "gc-freeze")
ALL = ("batch-60", "direct-send")


def stdlib_json() -> None:
    from voiceagent.realtime import connection
    from voiceagent.twilio import messages

    class StdlibJson:
        @staticmethod
        def dumps(value: Any) -> bytes:
            return json.dumps(value).encode()

        @staticmethod
        def loads(text: str | bytes) -> Any:
            return json.loads(text)

    connection.orjson = StdlibJson  # type: ignore[assignment]
    messages.orjson = StdlibJson  # type: ignore[assignment]


def batch(ms: int) -> None:
    os.environ["VOICEAGENT_CALLER_AUDIO_BATCH_MS"] = str(ms)


def direct_send() -> None:
    from websockets.exceptions import ConnectionClosed
    from websockets.protocol import OPEN

    from voiceagent.realtime import connection

    async def send(self: Any, command: Any) -> None:
        message = connection.orjson.dumps(self.dialect.encode(command))
        websocket = self._websocket
        if websocket.protocol.state is not OPEN:
            try:
                await websocket.send(message.decode())  # the slow path says why
            except ConnectionClosed:
                pass
            return
        websocket.protocol.send_text(message)
        websocket.send_data()

    connection.ModelConnection.send = send  # type: ignore[method-assign]


def websocket_implementation(name: str) -> None:
    from voiceagent import server

    production = server.uvicorn_config

    def config(app: Any, settings: Any, **overrides: Any) -> Any:
        return production(app, settings, **{"ws": name, **overrides})

    server.uvicorn_config = config  # type: ignore[assignment]


def gc_freeze() -> None:
    import voiceagent.app
    import voiceagent.cli
    import voiceagent.server  # noqa: F401  (imported for their objects, then frozen)

    gc.collect()
    gc.freeze()


APPLY = {
    "stdlib-json": stdlib_json,
    "batch-40": lambda: batch(40),
    "batch-60": lambda: batch(60),
    "direct-send": direct_send,
    "ws-wsproto": lambda: websocket_implementation("wsproto"),
    "ws-legacy": lambda: websocket_implementation("websockets"),
    "gc-freeze": gc_freeze,
}


def apply(name: str) -> None:
    for lever in ALL if name == "all" else [name]:
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
