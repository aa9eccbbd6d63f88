"""Running the app under uvicorn, with a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from voiceagent.config import Settings
from voiceagent.logs import CallLog
from voiceagent.twilio.messages import MAX_MESSAGE_BYTES

MAX_HEAD_BYTES = 16 * 1024  # Twilio's request heads are well under 4 KiB
MAX_CONNECTIONS = 1000


class DrainingServer(uvicorn.Server):
    """The first SIGTERM/SIGINT drains (calls in progress finish); a second one exits at once."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app
        self._draining: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is not None or self._loop is None or not self.started:
            super().handle_exit(sig, frame)
            return
        CallLog().info("shutdown_requested", signal=signal.Signals(sig).name)
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        if self._draining is None:
            self._draining = asyncio.ensure_future(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._app.state.service.drain()
        finally:
            self.should_exit = True


def uvicorn_config(app: Starlette, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The server's configuration: the same for ``voiceagent serve`` and for the test harness."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "ws_max_size": MAX_MESSAGE_BYTES,
        "log_config": None,  # our JSON handler is already installed
        "proxy_headers": True,
        "server_header": False,
        # Unauthenticated input is bounded before anything parses it: h11 refuses request heads over
        # MAX_HEAD_BYTES (httptools would buffer any size), and at most MAX_CONNECTIONS connections are
        # served at once (503 beyond). Header read timeouts need a fronting proxy (see the README).
        "http": "h11",
        "h11_max_incomplete_event_size": MAX_HEAD_BYTES,
        "limit_concurrency": max(MAX_CONNECTIONS, settings.max_calls * 4),
        "timeout_keep_alive": 5,
        "ws_per_message_deflate": False,  # the Media Stream is base64 audio: compression is CPU for nothing
    }
    return uvicorn.Config(app, **(options | overrides))


def run_server(app: Starlette, settings: Settings) -> None:
    DrainingServer(uvicorn_config(app, settings), app).run()
