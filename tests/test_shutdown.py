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

import httpx

from voiceagent.testing.audio import load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment

WAIT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def poll(predicate, timeout: float = WAIT, interval: float = 0.1):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if loop.time() > deadline:
            raise TimeoutError(f"{predicate.__qualname__} still false after {timeout} s")
        await asyncio.sleep(interval)


async def test_sigterm_drains_calls_then_exits(tmp_path):
    async with FakeRealtimeServer(speed=8.0, replies=("agent_goodbye",)) as model:
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
        log_path = tmp_path / "voiceagent.log"
        with open(log_path, "wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "voiceagent", "serve", env=env, stdout=log, stderr=log
            )
        try:
            async with httpx.AsyncClient(timeout=5) as http:

                async def ready():
                    try:
                        return (await http.get(base + "/readyz")).status_code == 200
                    except httpx.TransportError:
                        return False

                await poll(ready)
                caller = FakeTwilioCaller(base, auth_token=TEST_AUTH_TOKEN)
                async with caller:
                    assert await caller.dial(), caller.refusal
                    greeting = load_fixture("agent_greeting")
                    await caller.wait_until(lambda: len(caller.played) >= len(greeting), timeout=WAIT)
                    process.send_signal(signal.SIGTERM)

                    async def draining():
                        return (await http.get(base + "/readyz")).status_code == 503

                    await poll(draining)
                    assert (await http.get(base + "/healthz")).status_code == 200
                    late = FakeTwilioCaller(base, auth_token=TEST_AUTH_TOKEN)
                    assert not await late.dial()
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
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "draining" in events and "drained" in events
    ended = [line for line in lines if line["event"] == "call_ended"]
    assert ended and ended[0]["reason"] == "the service is shutting down"
    assert model.violations == []
