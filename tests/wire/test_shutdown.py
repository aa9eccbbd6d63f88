"""SIGTERM drains: /readyz turns 503, new calls hear the busy message, a call in progress goes on for
VOICEAGENT_DRAIN_SECONDS, then the agent says goodbye, the call ends, and the process exits.

Runs the real ``voiceagent serve`` command in a subprocess, against the fakes in this process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest

from tests.helpers import FAST, GREETING, MODEL_LEAD, WAIT
from voiceagent.testing import (
    TEST_AUTH_TOKEN,
    FakeRealtimeServer,
    FakeTwilioCaller,
    app_environment,
    load_fixture,
    wait_until,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def json_lines(log: BinaryIO) -> list[dict[str, Any]]:
    """The JSON lines the subprocess wrote to ``log`` so far."""
    log.flush()
    return [json.loads(line) for line in Path(log.name).read_text().splitlines() if line.startswith("{")]


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[BinaryIO]:
    """Where the subprocess writes its logs (opened here, not in the event loop)."""
    with open(tmp_path / "voiceagent.log", "wb") as log:
        yield log


async def test_sigterm_drains_calls_then_exits(log_file: BinaryIO) -> None:
    async with FakeRealtimeServer(speed=FAST * MODEL_LEAD, replies=("agent_goodbye",)) as model:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "VOICEAGENT_"))},
            **app_environment(model.endpoint),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "PUBLIC_BASE_URL": base,
            "VOICEAGENT_DRAIN_SECONDS": "2",
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voiceagent", "serve", env=env, stdout=log_file, stderr=log_file
        )
        try:
            async with httpx.AsyncClient(timeout=5) as http:

                async def ready() -> bool:
                    try:
                        return (await http.get(base + "/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await wait_until(ready, WAIT)
                async with FakeTwilioCaller(base, auth_token=TEST_AUTH_TOKEN, speed=FAST) as caller:
                    assert await caller.dial(), caller.refusal
                    await caller.wait_until(lambda: len(caller.played) >= len(GREETING), timeout=WAIT)
                    process.send_signal(signal.SIGTERM)

                    async def draining() -> bool:
                        return (await http.get(base + "/readyz")).status_code == 503

                    await wait_until(draining, WAIT)
                    assert (await http.get(base + "/healthz")).status_code == 200
                    late = FakeTwilioCaller(base, auth_token=TEST_AUTH_TOKEN)
                    assert not await late.dial()
                    assert late.twiml_text is not None
                    assert "busy" in late.twiml_text and "<Hangup" in late.twiml_text
                    assert caller.streaming  # the call in progress carries on while draining
                    await caller.wait_closed(timeout=WAIT)
                assert caller.closed_by_server
                assert bytes(caller.played).endswith(load_fixture("agent_goodbye"))
            assert await asyncio.wait_for(process.wait(), timeout=WAIT) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    lines = json_lines(log_file)
    events = [line["event"] for line in lines]
    assert "draining" in events and "drained" in events
    ended = [line for line in lines if line["event"] == "call_ended"]
    assert ended and ended[0]["reason"] == "the service is shutting down"
    assert model.violations == []
