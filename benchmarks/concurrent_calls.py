"""Many calls at once through one process: does every call stay whole, and what does it cost?

    python benchmarks/concurrent_calls.py [--calls 20]

Each call hears the greeting, asks one question and hears the answer start. Prints per-call checks
and the CPU time the whole test process (app + both fakes) spent per second of call audio.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time

from voiceagent.testing.audio import load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment, serve_app

GREETING = load_fixture("agent_greeting")


async def one_call(base_url: str) -> FakeTwilioCaller:
    caller = FakeTwilioCaller(base_url, auth_token=TEST_AUTH_TOKEN)
    async with caller:
        assert await caller.dial(), caller.refusal
        await caller.wait_until(lambda: len(caller.played) >= len(GREETING) and not caller.pending_marks, 120)
        await caller.say("caller_book_table")
        await caller.wait_until(lambda: len(caller.played) >= len(GREETING) + 8000, 120)
        await caller.hangup()
    return caller


async def main(calls: int) -> None:
    async with FakeRealtimeServer(speed=4.0) as model:
        async with serve_app(app_environment(model.endpoint, VOICEAGENT_MAX_CALLS=str(calls))) as app:
            cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            callers = await asyncio.gather(*(one_call(app.base_url) for _ in range(calls)))
            cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            await model.wait_for(lambda: all(s.closed for s in model.sessions), timeout=60)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    audio_seconds = sum(c.media_ms for c in callers) / 1000
    whole = sum(bytes(c.played[: len(GREETING)]) == GREETING for c in callers)
    print(f"{calls} concurrent calls in {wall1 - wall0:.1f} s wall; {audio_seconds:.0f} s of call audio")
    print(
        f"greeting heard whole: {whole}/{calls}; violations: model {len(model.violations)}, "
        f"twilio {sum(len(c.violations) for c in callers)}"
    )
    print(f"CPU (app + fakes, one process): {cpu:.2f} s = {cpu / audio_seconds * 1000:.1f} ms per call-second")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20)
    asyncio.run(main(parser.parse_args().calls))
