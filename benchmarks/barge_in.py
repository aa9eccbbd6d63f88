"""Barge-in accuracy and hot-path cost, printed as figures (not a test: machines are noisy).

    python benchmarks/barge_in.py [--calls 5]

For each call the fake caller interrupts the long reply at a different point; we print how far the
truncation's audio_end_ms is from what the fake caller had actually played when the clear arrived.
Then the cost of the call core per model audio delta (the per-frame hot path), in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import time

from voiceagent.call import CallCore, CallOptions, PlayAudio, StreamStarted
from voiceagent.realtime import events as ev
from voiceagent.testing.audio import load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment, serve_app
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter


async def one_barge_in(offset_ms: int, chunk_ms: int) -> tuple[float, int, float]:
    greeting = load_fixture("agent_greeting")
    async with FakeRealtimeServer(chunk_ms=chunk_ms, speed=4.0) as model:
        async with serve_app(app_environment(model.endpoint)) as app:
            caller = FakeTwilioCaller(app.base_url, auth_token=TEST_AUTH_TOKEN)
            async with caller:
                started = time.perf_counter()
                await caller.dial()
                await caller.wait_until(lambda: len(caller.played) > 0, timeout=60)
                first_audio = time.perf_counter() - started
                await caller.wait_until(lambda: len(caller.played) >= len(greeting) and not caller.pending_marks, 60)
                await caller.say("caller_book_table")
                mark = len(caller.played)
                await caller.wait_until(lambda: len(caller.played) >= mark + offset_ms * 8, timeout=60)
                await caller.say("caller_interrupt")
                session = model.sessions[0]
                await model.wait_for(lambda: session.truncations, timeout=60)
                await caller.wait_until(lambda: bool(caller.clears), timeout=60)
                _, audio_end_ms = session.truncations[0]
                heard_ms = (caller.clears[0].played_bytes - len(greeting)) / 8
                await caller.hangup()
    return heard_ms - audio_end_ms, audio_end_ms, first_audio


def core_cost(deltas: int = 20_000) -> float:
    """µs per model audio delta through the core and the Twilio adapter, plus its mark echo."""
    start = tw.Start("MZ" + "0" * 32, "CA" + "0" * 32, "AC", {})
    core = CallCore(CallOptions(), call_sid=start.call_sid, now=0.0)
    core.start(0.0)
    core.model_connected(0.0)
    core.model_event(ev.SessionUpdated(ev.PCMU, ev.PCMU), 0.0)
    core.transport_event(StreamStarted(), 0.0)
    adapter = MediaStreamAdapter(start)
    payload = base64.b64encode(bytes(160)).decode()
    began = time.perf_counter()
    for n in range(deltas):
        [play] = core.model_event(ev.AudioDelta("r", "item", payload), n * 0.02)
        assert isinstance(play, PlayAudio)
        mark_frame = adapter.send(play)[1]  # Twilio echoes the mark frame it was sent, unchanged
        played = adapter.receive({"type": "websocket.receive", "text": mark_frame})
        assert played is not None
        core.transport_event(played, n * 0.02)
    return (time.perf_counter() - began) / deltas * 1e6


async def main(calls: int, chunk_ms: int) -> None:
    errors = []
    for i in range(calls):
        offset = 1000 + i * 1700
        error, end_ms, first_audio = await one_barge_in(offset, chunk_ms)
        errors.append(error)
        print(
            f"interrupt at ~{offset} ms: audio_end_ms={end_ms}, caller had heard {end_ms + error:.1f} ms "
            f"-> short by {error:.1f} ms; first greeting audio after {first_audio * 1000:.0f} ms"
        )
    print(
        f"barge-in error over {calls} calls (chunk {chunk_ms} ms): mean {statistics.mean(errors):.1f} ms, "
        f"max {max(errors):.1f} ms, min {min(errors):.1f} ms (never negative = never past what was heard)"
    )
    print(f"call core + Twilio adapter: {core_cost():.2f} µs per model audio delta plus its mark echo")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--chunk-ms", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.chunk_ms))
