"""A burst of callers against a slow model handshake: is any caller audio lost? Figures, not a test.

    python benchmarks/caller_burst.py [--calls 50] [--within 1.0] [--connect-delay 0.8]

``--calls`` calls arrive at random moments within ``--within`` seconds; the fake model takes
``--connect-delay`` seconds to accept each connection (the real handshake and session set-up take hundreds
of ms), so every caller starts talking before its model session is ready. Each caller says one sentence
at once, in real time, then hangs up. Printed: the frames the fake callers sent, the frames the fake model
received, and the difference (0 expected: what a caller says while the model connects is held and
delivered), with the calls that did not get through and the slowest time to a ready session.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import time

from voiceagent.testing import (
    FRAME_BYTES,
    TEST_AUTH_TOKEN,
    FakeModelSession,
    FakeRealtimeServer,
    FakeTwilioCaller,
    app_environment,
    serve_app,
)

WAIT = 120.0


async def one_call(base_url: str, arrives_after: float, caller_number: int) -> FakeTwilioCaller:
    await asyncio.sleep(arrives_after)
    caller = FakeTwilioCaller(base_url, auth_token=TEST_AUTH_TOKEN, from_number=f"+1555{caller_number:07d}")
    async with caller:
        if not await caller.dial():
            return caller
        await caller.say("caller_book_table")  # at once: the model is still connecting
        await caller.pause(200)
        await caller.hangup()
    return caller


def confirmed(session: FakeModelSession) -> bool:
    return any(event.get("type") == "session.updated" for event in session.sent)


async def main(calls: int, within: float, connect_delay: float, seed: int) -> None:
    arrivals = sorted(random.Random(seed).uniform(0, within) for _ in range(calls))
    async with FakeRealtimeServer(connect_delay=connect_delay, speed=4.0) as model:
        env = app_environment(model.endpoint, VOICEAGENT_MAX_CALLS=str(calls), VOICEAGENT_GREETING="")
        async with serve_app(env) as app:
            began = time.perf_counter()
            callers = await asyncio.gather(*(one_call(app.base_url, at, number) for number, at in enumerate(arrivals)))
            wall = time.perf_counter() - began
            await model.wait_for(lambda: all(session.closed for session in model.sessions), WAIT)
    sent = sum(len(caller.sent_audio) for caller in callers) // FRAME_BYTES
    received = sum(len(session.audio_received) for session in model.sessions) // FRAME_BYTES
    refused = [caller for caller in callers if caller.refusal is not None or caller.closed_by_server]
    per_call = sorted(len(session.audio_received) // FRAME_BYTES for session in model.sessions)
    print(
        f"{calls} calls within {within:g} s, model handshake {connect_delay:g} s each, "
        f"{len(model.sessions)} model sessions, {wall:.1f} s in all"
    )
    print(f"frames sent by the callers:     {sent}")
    print(f"frames received by the model:   {received}")
    print(f"lost:                           {sent - received}")
    print(f"calls not through (refused or ended by the app): {len(refused)}")
    print(f"frames per call: min {per_call[0]}, median {statistics.median(per_call):g}, max {per_call[-1]}")
    print(f"sessions confirmed: {sum(1 for session in model.sessions if confirmed(session))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--within", type=float, default=1.0)
    parser.add_argument("--connect-delay", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(handlers=[logging.NullHandler()])  # the app's own log lines are not the figures
    asyncio.run(main(args.calls, args.within, args.connect_delay, args.seed))
