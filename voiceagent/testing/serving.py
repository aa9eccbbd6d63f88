"""Any ASGI app under uvicorn on a loopback port, in the caller's event loop: the one way the test kit,
the demo and the tests serve an app.

    async with serve_asgi(app) as base_url:       # http://127.0.0.1:PORT
        ...

A ``config`` chooses uvicorn's options (the service's own ``uvicorn_config`` for the real app); the
socket is bound here, on port 0, unless the caller binds one first because it must know the URL before
it builds the app (``loopback_socket``, then ``serve_asgi(app, sock=sock)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from voiceagent.testing.waiting import wait_until

__all__ = ["base_url_of", "loopback_socket", "serve_asgi"]

LOGGER = logging.getLogger(__name__)
STARTUP_SECONDS = 30.0  # generous: a loaded machine, never reached when the app can start
SHUTDOWN_SECONDS = 15.0


def loopback_socket() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on a free port, ready to hand to ``serve_asgi``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def base_url_of(sock: socket.socket) -> str:
    """``http://127.0.0.1:PORT`` for a socket from ``loopback_socket``."""
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.asynccontextmanager
async def serve_asgi(
    app: Any,
    *,
    config: uvicorn.Config | None = None,
    sock: socket.socket | None = None,
    startup_seconds: float = STARTUP_SECONDS,
    shutdown_seconds: float = SHUTDOWN_SECONDS,
) -> AsyncIterator[str]:
    """Serve ``app`` (under ``config``, by default quiet and without lifespan) on ``sock`` (by default a
    fresh loopback socket) and yield its base URL; on exit, stop the server and close the socket.

    A server that fails to start raises its own error; one that does not stop cleanly within
    ``shutdown_seconds`` is logged, never allowed to hide the outcome of the block it served."""
    if config is not None and config.app is not app:
        raise ValueError("config is uvicorn's options for app: build it with app")
    config = config or uvicorn.Config(app, log_level="warning", lifespan="off")
    sock = sock or loopback_socket()
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), startup_seconds)
        if task.done():
            task.result()  # it failed to start: its own error
            raise RuntimeError("the server stopped before it started")
        yield base_url_of(sock)
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, shutdown_seconds)
        except Exception:
            LOGGER.warning("the loopback server at %s did not stop cleanly", base_url_of(sock), exc_info=True)
        sock.close()
