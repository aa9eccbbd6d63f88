"""The far ends of ``benchmarks/load.py``, each in its own process so that their CPU is not the server's.

    python benchmarks/load_peers.py model [--port P]      # the fake Realtime model (FakeRealtimeServer)
    python benchmarks/load_peers.py callers --url U ...   # fake Twilio callers (FakeTwilioCaller, real time)

``load.py`` starts them and talks to them with one JSON object per line on stdin/stdout (nothing else is
written to stdout). Both fakes are the test kit's, extended here (never edited) with latency probes:

* A **stamp** is ``monotonic_ns()`` (and the call's number) written into the first bytes of a μ-law frame
  as near-silent codes (``0xF0 | nibble``: at most ±120 of 32767, far below the fake VAD's threshold).
  The processes share one clock (``CLOCK_MONOTONIC``), so the side that reads a stamp knows how long the
  frame took to get there.
* The caller stamps every 20 ms frame of silence it sends; the fake model reads the stamp when the
  ``input_audio_buffer.append`` arrives (caller -> model latency) and counts the frames of each call.
* The fake model stamps every audio delta as it sends it; the caller reads the stamp when the ``media``
  message arrives (model -> caller latency). Both bridges pass payloads through untouched.
* Barge-in: the fake model notes ``monotonic_ns()`` and the call as it sends each
  ``input_audio_buffer.speech_started``, the caller notes ``monotonic_ns()`` as each ``clear`` arrives;
  ``load.py`` pairs them (``clear_ns`` in a call's result, ``speech_started_ns`` in the model's stats).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import os
import random
import sys
import time
from array import array
from collections import Counter
from typing import Any

import httpx
from websockets.asyncio.server import serve

from voiceagent.testing.audio import FRAME_BYTES, SILENCE_BYTE
from voiceagent.testing.fake_realtime import server as fake_server_module
from voiceagent.testing.fake_realtime.errors import ClientError
from voiceagent.testing.fake_realtime.server import MAX_MESSAGE_BYTES, FakeRealtimeServer
from voiceagent.testing.fake_realtime.session import FakeModelSession
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.twilio_wire import InboundAudio
from voiceagent.testing.validation import validate_server_event

# ---------------------------------------------------------------------------------------------- stamps

MAGIC = bytes([0x7E, 0xFE, 0x7D, 0xFD])  # ±8, ±16: silence to the ear and to any energy VAD
_NS_NIBBLES, _ID_NIBBLES = 16, 6
STAMP_BYTES = len(MAGIC) + _NS_NIBBLES + _ID_NIBBLES + 1  # 27, the last nibble a check
STAMP_B64_CHARS = 40  # base64 characters that cover a stamp (30 bytes)
SILENT_FRAME = bytes([SILENCE_BYTE]) * FRAME_BYTES


def stamp(audio: bytes, call_id: int, ns: int | None = None) -> bytes:
    """``audio`` with a stamp of now (or ``ns``) and ``call_id`` over its first bytes."""
    if len(audio) < STAMP_BYTES:
        return audio
    value = (ns if ns is not None else time.monotonic_ns()) << (4 * _ID_NIBBLES) | (call_id & 0xFFFFFF)
    nibbles = [(value >> (4 * i)) & 0xF for i in range(_NS_NIBBLES + _ID_NIBBLES)]
    check = 0
    for nibble in nibbles:
        check ^= nibble
    return MAGIC + bytes(0xF0 | n for n in (*nibbles, check)) + audio[STAMP_BYTES:]


def read_stamp(audio: bytes) -> tuple[int, int] | None:
    """``(monotonic_ns, call_id)`` of the stamp at the start of ``audio``, or None."""
    if len(audio) < STAMP_BYTES or audio[:4] != MAGIC:
        return None
    body = audio[4:STAMP_BYTES]
    if any(b & 0xF0 != 0xF0 for b in body):
        return None
    nibbles = [b & 0xF for b in body]
    check = 0
    for nibble in nibbles[:-1]:
        check ^= nibble
    if check != nibbles[-1]:
        return None
    value = sum(n << (4 * i) for i, n in enumerate(nibbles[:-1]))
    return value >> (4 * _ID_NIBBLES), value & 0xFFFFFF


def stamp_in_b64(payload: str) -> tuple[int, int] | None:
    """The stamp at the start of a base64 payload (only its first characters are decoded)."""
    try:
        return read_stamp(base64.b64decode(payload[:STAMP_B64_CHARS]))
    except (binascii.Error, ValueError):
        return None


def payload_of(frame: str, key: str) -> str:
    """The start of the JSON string value of ``key`` in ``frame``, without parsing the whole message."""
    at = frame.find(f'"{key}"')
    if at < 0:
        return ""
    start = frame.find('"', frame.find(":", at) + 1) + 1
    return frame[start : start + STAMP_B64_CHARS]


class Moments:
    """When something happened (monotonic ns), and to which call."""

    def __init__(self) -> None:
        self.at = array("q")
        self.call = array("q")

    def add(self, at_ns: int, call_id: int) -> None:
        self.at.append(at_ns)
        self.call.append(call_id)

    def by_call(self, calls: range) -> dict[str, list[int]]:
        """The moments of each call in ``calls``, in order (keys are call numbers as text: JSON's keys)."""
        found: dict[str, list[int]] = {}
        for at, call in zip(self.at, self.call, strict=True):
            if call in calls:
                found.setdefault(str(call), []).append(at)
        return found


class Samples:
    """Latency samples: (when stamped, how long it took), both in ns."""

    def __init__(self) -> None:
        self.at = array("q")
        self.took = array("q")
        self.call = array("q")

    def add(self, stamped_ns: int, now_ns: int, call_id: int = 0) -> None:
        self.at.append(stamped_ns)
        self.took.append(now_ns - stamped_ns)
        self.call.append(call_id)

    def within_us(self, start_ns: int, end_ns: int, calls: range | None = None) -> list[int]:
        """Latencies (µs) of the samples stamped in [start, end) (of the calls in ``calls``)."""
        return [
            took // 1000
            for at, took, call in zip(self.at, self.took, self.call, strict=True)
            if start_ns <= at < end_ns and (calls is None or call in calls)
        ]


# ---------------------------------------------------------------------------------------------- the model


class BenchModelSession(FakeModelSession):
    """The fake model's session, with probes: appends take a fast path (no pydantic validation, not kept in
    ``received``: that is the fake's cost, not the bridge's), stamps are read and written, truncates counted,
    and the moment each ``speech_started`` goes out is noted (for the barge-in clear latency)."""

    server: BenchModelServer  # set on the class by BenchModelServer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.call_id: int | None = None
        self.truncates = 0
        self.truncate_errors = 0

    async def _on_message(self, message: str | bytes) -> None:
        now = time.monotonic_ns()
        if isinstance(message, str) and "input_audio_buffer.append" in message[:60]:
            try:
                event = json.loads(message)
            except ValueError:
                event = None
            if isinstance(event, dict) and event.get("type") == "input_audio_buffer.append":
                found = stamp_in_b64(event.get("audio") or "")
                if found is not None:
                    self.server.in_latency.add(found[0], now, found[1])
                    self.call_id = found[1]
                try:
                    await self._on_append(event)
                except ClientError as refusal:
                    await self._error(refusal.code, refusal.message, refusal.param, event)
                return
        await super()._on_message(message)

    async def send(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == self.spec.audio_delta:
            audio = stamp(base64.b64decode(event["delta"]), self.call_id or 0)
            event = {"event_id": self.new_id("event"), **event, "delta": base64.b64encode(audio).decode("ascii")}
            await self._connection.send(json.dumps(event))
            return
        if kind == self.spec.transcript_delta:  # frequent and never in question: not validated nor kept
            await self._connection.send(json.dumps({"event_id": self.new_id("event"), **event}))
            return
        if kind == "input_audio_buffer.speech_started" and self.call_id is not None:
            # as FakeModelSession.send does (validated, kept), but noting the moment it is handed to the socket
            event = {"event_id": self.new_id("event"), **event}
            self.self_violations.extend(validate_server_event(self.dialect, event))
            self.sent.append(event)
            text = json.dumps(event)
            self.server.speech_started.add(time.monotonic_ns(), self.call_id)
            await self._connection.send(text)
            return
        await super().send(event)

    async def _on_truncate(self, event: dict[str, Any]) -> None:
        self.truncates += 1
        try:
            await super()._on_truncate(event)
        except ClientError:
            self.truncate_errors += 1
            raise


class BenchModelServer(FakeRealtimeServer):
    """``FakeRealtimeServer`` at real time on a fixed port shared (SO_REUSEPORT) by several processes."""

    def __init__(self, port: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bind_port = port
        self.in_latency = Samples()
        self.speech_started = Moments()
        BenchModelSession.server = self
        fake_server_module.FakeModelSession = BenchModelSession  # type: ignore[misc]  # the sessions it makes

    async def start(self) -> None:
        self._server = await serve(
            self._serve_session,
            "127.0.0.1",
            self.bind_port,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
            compression=None,
            reuse_port=True,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    def reset(self) -> None:
        self.sessions[:] = [s for s in self.sessions if not s.closed]
        self.in_latency = Samples()
        self.speech_started = Moments()

    def stats(self, start_ns: int, end_ns: int, calls: range) -> dict[str, Any]:
        """What the sessions of the calls numbered in ``calls`` received and did; sessions that never got a
        stamped frame are counted apart (``unattributed_frames``: there should be none)."""
        frames: Counter[int] = Counter()
        errors: Counter[str] = Counter()
        violations: list[str] = []
        mine = [s for s in self.sessions if isinstance(s, BenchModelSession) and s.call_id in calls]
        for session in mine:
            assert session.call_id is not None
            frames[session.call_id] += len(session.audio_received) // FRAME_BYTES
            errors.update(str(e.get("error", {}).get("code")) for e in session.errors_sent)
            violations += session.violations
        strays = [s for s in self.sessions if not isinstance(s, BenchModelSession) or s.call_id is None]
        return {
            "sessions": len(mine),
            "open": sum(not s.closed for s in self.sessions),
            "frames": {str(k): v for k, v in frames.items()},
            "unattributed_frames": sum(len(s.audio_received) // FRAME_BYTES for s in strays),
            "in_latency_us": self.in_latency.within_us(start_ns, end_ns, calls),
            "speech_started_ns": self.speech_started.by_call(calls),  # all of the call: load.py pairs them
            "truncates": sum(s.truncates for s in mine),
            "truncate_errors": sum(s.truncate_errors for s in mine),
            "responses": sum(len(s.responses) for s in mine),
            "errors": dict(errors),
            "violations": len(violations),
            "violation_examples": violations[:3],
            "self_violations": sum(len(s.self_violations) for s in mine),
        }


async def run_model(port: int) -> None:
    server = BenchModelServer(port, speed=1.0)
    await server.start()
    reply({"ready": server.port, "pid": os.getpid()})
    try:
        async for command, args in commands():
            if command == "reset":
                server.reset()
                reply({"ok": True})
            elif command == "stats":  # window start and end (ns), first and last call number
                calls = range(int(args[2]), int(args[3]) + 1) if len(args) > 2 else range(0)
                reply(server.stats(int(args[0]), int(args[1]), calls))
            elif command == "quit":
                break
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.stop(), timeout=5)


# ---------------------------------------------------------------------------------------------- the callers


class StampingInbound(InboundAudio):
    """The caller's outgoing audio: every frame of silence carries a stamp."""

    def __init__(self, call_id: int) -> None:
        super().__init__()
        self.call_id = call_id
        self.stamped = 0

    def take(self, size: int = FRAME_BYTES) -> bytes:
        frame = super().take(size)
        if frame == SILENT_FRAME:
            self.stamped += 1
            return stamp(frame, self.call_id)
        return frame


class BenchCaller(FakeTwilioCaller):
    """A fake Twilio caller that stamps its silence, reads the stamps of the audio it is sent and notes when
    each ``clear`` arrives."""

    def __init__(self, base_url: str, call_id: int, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.call_id = call_id
        self._inbound = StampingInbound(call_id)
        self.out_latency = Samples()
        self.clear_ns: list[int] = []
        self.timeline_kept = 0

    async def _on_frame(self, frame: str | bytes) -> None:
        now = time.monotonic_ns()
        if isinstance(frame, str) and '"media"' in frame[:40]:
            found = stamp_in_b64(payload_of(frame, "payload"))
            if found is not None:
                self.out_latency.add(found[0], now)
        clears = len(self.clears)
        await super()._on_frame(frame)
        if len(self.clears) > clears:  # the fake parsed a clear (whatever its JSON looks like)
            self.clear_ns.append(now)
        if len(self.timeline) > 2000:  # a long call's timeline is of no use here; keep memory flat
            del self.timeline[:1000]


async def conversation(caller: BenchCaller, rng: random.Random) -> None:
    """Listen to the greeting, then over and over: ask, let the agent start its long answer, talk over it
    (a barge-in: the agent is cut off and truncated), listen to the short answer."""
    await caller.pause(rng.randint(4500, 6000))
    while caller.streaming:
        await caller.say("caller_book_table")
        await caller.pause(rng.randint(1500, 5000))
        await caller.say("caller_interrupt")
        await caller.pause(rng.randint(4000, 6000))


async def one_call(
    url: str, token: str, call_id: int, dial_at: float, hang_up_at: float, window: tuple[int, int], http: Any
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, dial_at - time.monotonic()))
    number = f"+1555{call_id % 10_000_000:07d}"
    caller = BenchCaller(url, call_id, auth_token=token, from_number=number, http_client=http)
    result: dict[str, Any] = {"id": call_id, "ok": False}
    async with caller:
        began = time.monotonic()
        try:
            ok = await caller.dial()
        except Exception as exc:  # a refused or failed dial is a result, not a crash
            ok, caller.refusal = False, f"{type(exc).__name__}: {exc}"
        result.update(ok=ok, refusal=caller.refusal, dial_ms=round((time.monotonic() - began) * 1000, 1))
        if ok:
            talk = loop.create_task(conversation(caller, random.Random(call_id)))
            await asyncio.sleep(max(0.0, hang_up_at - time.monotonic()))
            ended_early = caller.closed
            talk.cancel()
            with contextlib.suppress(BaseException):
                await talk
            await caller.hangup()
            result["ended_early"] = ended_early
    result.update(
        frames_sent=len(caller.sent_audio) // FRAME_BYTES,
        stamped=caller._inbound.stamped if isinstance(caller._inbound, StampingInbound) else 0,
        bytes_received=len(caller.received_audio),
        clears=len(caller.clears),
        marks_echoed=len(caller.marks_echoed),
        violations=len(caller.violations),
        violation_examples=caller.violations[:3],
        slipped_ms=round(caller.slipped_ms(), 1),
        closed_by_server=caller.closed_by_server,
        close_code=caller.close_code,
        out_latency_us=caller.out_latency.within_us(*window),
        clear_ns=caller.clear_ns,  # all of the call: load.py pairs them with the model's speech_started
    )
    return result


async def run_callers(url: str, token: str, ids: list[int], total: int, base: int) -> None:
    reply({"ready": True, "pid": os.getpid()})
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as http:
        async for command, args in commands():
            if command == "warm":  # one short call, so that the server has imported and built what calls need
                call_id, seconds = int(args[0]), float(args[1])
                now = time.monotonic()
                result = await one_call(url, token, call_id, now, now + seconds, (0, 0), http)
                reply({"warmed": result["ok"], "refusal": result.get("refusal")})
            elif command == "go":  # start_at ramp_seconds hang_up_at window_start_ns window_end_ns
                start_at, ramp, hang_up_at = float(args[0]), float(args[1]), float(args[2])
                window = (int(args[3]), int(args[4]))
                calls = [
                    one_call(url, token, i, start_at + ramp * (i - base) / max(1, total), hang_up_at, window, http)
                    for i in ids
                ]
                reply({"calls": await asyncio.gather(*calls)})
                return
            elif command == "quit":
                return


# ---------------------------------------------------------------------------------------------- plumbing


def reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def commands() -> Any:
    """Lines of stdin as (command, args), until EOF."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        words = line.decode().split()
        if words:
            yield words[0], words[1:]


def run(coroutine: Any) -> None:
    try:
        import uvloop  # the peers are not measured: the fastest loop keeps them out of the way

        uvloop.run(coroutine)
    except ImportError:
        asyncio.run(coroutine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role", required=True)
    model = sub.add_parser("model")
    model.add_argument("--port", type=int, default=0)
    callers = sub.add_parser("callers")
    callers.add_argument("--url", required=True)
    callers.add_argument("--token", required=True)
    callers.add_argument("--ids", required=True, help="first:last (inclusive) call numbers of this process")
    callers.add_argument("--total", type=int, required=True, help="calls in the whole ramp")
    callers.add_argument("--base", type=int, default=0, help="the first call number of the whole ramp")
    args = parser.parse_args()
    if args.role == "model":
        run(run_model(args.port))
    else:
        first, last = (int(x) for x in args.ids.split(":"))
        run(run_callers(args.url, args.token, list(range(first, last + 1)), args.total, args.base))


if __name__ == "__main__":
    main()
