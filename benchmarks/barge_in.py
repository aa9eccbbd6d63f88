"""Barge-in accuracy against uneven audio deltas, and the hot path's cost: figures, not a test.

    python benchmarks/barge_in.py [--calls 6] [--deltas 20,50,100,250,500,1000,uneven] [--speeds 0.5,1,4]

For each audio delta size the fake model uses (fixed, or ``uneven``: drawn between 40 and 240 ms as the
real service's vary) and each model speed (how much faster than real time it streams), a few calls run at
once through one app; each fake caller plays in real time, as Twilio does, and talks over the greeting at a
different point. The error of a barge-in is the truncation's ``audio_end_ms`` minus what that caller had
really played when the ``clear`` arrived: negative means short of it (safe), positive means the model was
told the caller heard audio they never heard. Printed per configuration: p50, p95 and max of |error|, how
many were above what was heard and by how much at most, the media time the callers' clocks lost to a busy
event loop (the app assumes real-time playback, so lost time shows up as positive error), how many found nothing
left to cut (a model slower than real time: everything received had been played, so no clear and no
truncate, rightly), and truncate errors from the model (0 expected). Then the call core's cost per delta.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import statistics
import time
from dataclasses import dataclass

from voiceagent.call import CallCore, CallOptions, ConnectModel, PlayAudio, StreamStarted
from voiceagent.realtime import events as ev
from voiceagent.testing import BYTES_PER_MS, FakeModelSession, FakeRealtimeServer, FakeTwilioCaller, load_fixture
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment, serve_app
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter

WAIT = 120.0
UNEVEN = (40, 240)
GREETING_MS = len(load_fixture("agent_greeting")) // BYTES_PER_MS


@dataclass
class BargeIn:
    error_ms: float | None  # audio_end_ms - heard; None: nothing was left to cut (all received was played)
    slipped_ms: float  # media time the caller's clock lost since its last mark echo before the clear


async def one_barge_in(base_url: str, model: FakeRealtimeServer, at_ms: int) -> BargeIn:
    async with FakeTwilioCaller(base_url, auth_token=TEST_AUTH_TOKEN) as caller:
        assert await caller.dial(), caller.refusal
        session = model.sessions[-1]
        await caller.wait_until(lambda: len(caller.played) >= at_ms * BYTES_PER_MS, WAIT)
        speaking = asyncio.create_task(caller.say("caller_interrupt"))
        await model.wait_for(lambda: any(e["type"] == "input_audio_buffer.speech_started" for e in session.sent), WAIT)
        try:  # the app answers speech at once; a model slower than real time may have nothing left playing
            await caller.wait_until(lambda: caller.clears and session.truncations, timeout=2.0)
        except AssertionError:
            await caller.hangup()
            await speaking
            return BargeIn(None, 0.0)
        [(_, audio_end_ms)] = session.truncations
        [clear] = caller.clears
        last_echo = max((echo.media_ms for echo in caller.echoes if echo.media_ms <= clear.media_ms), default=0)
        await caller.hangup()
        await speaking
    return BargeIn(audio_end_ms - clear.played_bytes / BYTES_PER_MS, caller.slipped_ms(last_echo))


async def one_configuration(delta: int | tuple[int, int], speed: float, calls: int) -> tuple[list[BargeIn], int]:
    """``calls`` barge-ins at once, spread over the greeting; and the truncate errors the model sent."""
    points = [round(600 + i * (GREETING_MS - 1600) / max(1, calls - 1)) for i in range(calls)]
    async with FakeRealtimeServer(delta_ms=delta, speed=speed, seed=11) as model:
        async with serve_app(app_environment(model.endpoint, VOICEAGENT_MAX_CALLS=str(calls))) as app:
            tasks = []
            for count, at_ms in enumerate(points, start=1):  # one call at a time gets its session
                tasks.append(asyncio.create_task(one_barge_in(app.base_url, model, at_ms)))
                await model.wait_for(lambda count=count: len(model.sessions) >= count, WAIT)
            done = await asyncio.gather(*tasks)
    return done, sum(truncate_errors(session) for session in model.sessions)


def truncate_errors(session: FakeModelSession) -> int:
    """The errors a session answered to ``conversation.item.truncate`` events (past the audio, no audio...)."""
    truncates = {
        event.get("event_id") for event in session.received if event.get("type") == "conversation.item.truncate"
    }
    return sum(1 for error in session.errors_sent if error["error"].get("event_id") in truncates)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def core_cost(deltas: int = 20_000) -> float:
    """µs per model audio delta through the core and the Twilio adapter, plus its mark echo."""
    start = tw.Start("MZ" + "0" * 32, "CA" + "0" * 32, "AC", {})
    core = CallCore(CallOptions(), call_sid=start.call_sid, now=0.0)
    [connect] = core.start(0.0)
    assert isinstance(connect, ConnectModel)
    core.model_connected(connect.attempt, 0.0)
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


async def main(calls: int, deltas: list[int | tuple[int, int]], speeds: list[float]) -> None:
    print(f"{calls} real-time callers per configuration, each talking over the greeting at a different point")
    print(
        f"{'deltas':>12} {'model':>6} {'n':>3} {'p50 |err|':>10} {'p95 |err|':>10} {'max |err|':>10} "
        f"{'above':>6} {'max above':>9} {'mean err':>9} {'slipped':>8} {'uncut':>5} {'trunc errs':>10}"
    )
    for delta in deltas:
        for speed in speeds:
            results, refused = await one_configuration(delta, speed, calls)
            errors = [result.error_ms for result in results if result.error_ms is not None]
            label = f"{delta[0]}-{delta[1]} ms" if isinstance(delta, tuple) else f"{delta} ms"
            uncut = len(results) - len(errors)
            if not errors:
                print(
                    f"{label:>12} {speed:>5g}x {0:>3}   (nothing left to cut at any barge-in) {uncut:>5} {refused:>10}"
                )
                continue
            absolute = [abs(error) for error in errors]
            above = sum(1 for error in errors if error > 0)
            slipped = max(result.slipped_ms for result in results)
            print(
                f"{label:>12} {speed:>5g}x {len(errors):>3} {statistics.median(absolute):>8.1f}ms "
                f"{percentile(absolute, 0.95):>8.1f}ms {max(absolute):>8.1f}ms {above:>6} {max(0.0, *errors):>7.1f}ms "
                f"{statistics.mean(errors):>+7.1f}ms {slipped:>6.0f}ms {uncut:>5} {refused:>10}"
            )
    print(f"call core + Twilio adapter: {core_cost():.2f} µs per model audio delta plus its mark echo")


def parse_delta(text: str) -> int | tuple[int, int]:
    return UNEVEN if text == "uneven" else int(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=6)
    parser.add_argument("--deltas", default="20,50,100,250,500,1000,uneven")
    parser.add_argument("--speeds", default="0.5,1,4")
    args = parser.parse_args()
    chosen = [parse_delta(part) for part in args.deltas.split(",")]
    logging.basicConfig(handlers=[logging.NullHandler()])  # the app's own log lines are not the figures
    asyncio.run(main(args.calls, chosen, [float(part) for part in args.speeds.split(",")]))
