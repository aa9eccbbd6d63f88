"""Running the app under uvicorn."""

from __future__ import annotations

from starlette.applications import Starlette

import uvicorn

from voiceagent.config import Settings


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
    uvicorn.Server(config).run()
