"""What an instance spends per call by how many calls it carries: calls in silence, nothing but frames.

    python benchmarks/idle_calls.py [--counts 1,2,4,8,16] [--seconds 8]

One ``voiceagent serve`` (SQLite records in a temporary folder) runs as its own process; the fake model
and the fake Twilio callers (at real time: a 160-byte frame every 20 ms each) run here. For each count,
that many calls are dialled, hear the greeting and then say nothing for ``--seconds``; the server's CPU
time (``/proc/PID/stat``, all threads) and its context switches (``/proc/PID/task/*/status``) over that
window are printed per second, and per call. The work per frame is the same at every count; what
changes is how many frames one wake-up of the event loop finds ready, so a fixed cost per wake-up shows
as CPU per call falling with the calls carried (why two instances sharing a line each pay more per call
than one carrying all of it: ``line.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import tempfile
import time
from pathlib import Path

from line import free_port, start_instance  # the benchmark beside this one (its folder is on the path)

from voiceagent.testing.audio import load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment

GREETING = load_fixture("agent_greeting")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user + system, system) CPU seconds of the process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS, int(fields[12]) / TICKS


def context_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that ended meanwhile
            total += sum(int(n) for n in re.findall(r"ctxt_switches:\s+(\d+)", (task / "status").read_text()))
    return total


async def measure(pid: int, seconds: float) -> tuple[float, float, float]:
    """CPU ms per second, of it system ms per second, context switches per second, over ``seconds``."""
    (cpu_before, sys_before), switches_before, started = cpu_seconds(pid), context_switches(pid), time.monotonic()
    await asyncio.sleep(seconds)
    (cpu_after, sys_after), switches_after = cpu_seconds(pid), context_switches(pid)
    elapsed = time.monotonic() - started
    return (
        (cpu_after - cpu_before) * 1000 / elapsed,
        (sys_after - sys_before) * 1000 / elapsed,
        (switches_after - switches_before) / elapsed,
    )


async def main(counts: list[int], seconds: float) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as work:
        async with FakeRealtimeServer(speed=4.0) as model:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "VOICEAGENT_"))}
            env |= app_environment(model.endpoint, VOICEAGENT_MAX_CALLS=str(max(counts)))
            env |= {"HOST": "127.0.0.1", "PORT": str(port), "PUBLIC_BASE_URL": base}
            env["VOICEAGENT_DATABASE_URL"] = f"sqlite:///{work}/records.db"
            server = await start_instance(env, port, Path(work) / "serve.log")
            try:
                idle, _, idle_switches = await measure(server.pid, seconds)
                print(f"idle: {idle:.1f} ms of CPU a second, {idle_switches:.0f} context switches a second")
                for count in counts:
                    async with contextlib.AsyncExitStack() as calls:
                        callers = [
                            await calls.enter_async_context(FakeTwilioCaller(base, auth_token=TEST_AUTH_TOKEN))
                            for _ in range(count)
                        ]
                        assert all(await asyncio.gather(*(caller.dial() for caller in callers)))
                        await asyncio.gather(
                            *(
                                caller.wait_until(lambda c=caller: len(c.played) >= len(GREETING), 60)
                                for caller in callers
                            )
                        )
                        await asyncio.sleep(1.0)  # the greeting's last marks echoed: only frames from here on
                        cpu, system, switches = await measure(server.pid, seconds)
                        print(
                            f"{count:3d} calls in silence: {cpu:6.1f} ms of CPU a second ({system:.1f} system), "
                            f"{cpu / count:5.1f} ms a second per call; {switches:4.0f} context switches a second, "
                            f"{cpu / max(switches, 1) * 1000:4.0f} µs of CPU each"
                        )
                        await asyncio.gather(*(caller.hangup() for caller in callers))
                    await asyncio.sleep(2.0)  # the calls' ends written before the next count
            finally:
                server.terminate()
                await server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,2,4,8,16", help="calls carried at once, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="the window measured at each count")
    options = parser.parse_args()
    asyncio.run(main([int(n) for n in options.counts.split(",")], options.seconds))
