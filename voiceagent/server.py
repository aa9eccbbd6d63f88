"""Running the app under uvicorn, with a graceful drain on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import socket
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from voiceagent.config import Settings
from voiceagent.logs import CallLog


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


def run_server(app: Starlette, settings: Settings, *, ws_max_size: int) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws_max_size=ws_max_size,
        log_config=None,  # our JSON handler is already installed
        proxy_headers=True,
        server_header=False,
    )
    DrainingServer(config, app).run()
