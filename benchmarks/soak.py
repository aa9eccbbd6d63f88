"""Soak: does `voiceagent serve` hold its memory over a long day of calls ending and starting?

    python benchmarks/soak.py --calls 50 --minutes 60          # the issue's figure
    python benchmarks/soak.py --calls 20 --minutes 12 --warmup 3   # a shorter look

One `voiceagent serve` process and the fake model (`voiceagent fake-model`) run as their own processes;
``--calls`` fake Twilio callers (``FakeTwilioCaller``, at real time) run here, each placing call after call
of ``--call-seconds`` (greeting, a question, the agent's answer, a goodbye, hang up), so calls keep ending
and starting. The server's RSS is read from /proc every 10 s. After ``--warmup`` minutes the growth is the
slope of a least-squares line through the samples, per call in progress, per minute: the goal is at most
1 KB per call per minute. It prints the samples' minute means and the verdict.

Everything listens on 127.0.0.1 and the run stops by itself after ``--minutes``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import BinaryIO

from voiceagent.testing import FakeTwilioCaller, load_fixture, wait_until

AUTH_TOKEN = "soak-benchmark-twilio-auth-token-0123456789"
MODEL_KEY = "soak-model-key"
PAGE = os.sysconf("SC_PAGE_SIZE")
GOAL_KB_PER_CALL_MINUTE = 1.0
SAMPLE_SECONDS = 10.0


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def log_file(path: Path) -> BinaryIO:
    return path.open("wb")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=1).read())
            return
        await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


async def caller_loop(base_url: str, number: int, until: float, call_seconds: float, counts: dict[str, int]) -> None:
    """Call after call until ``until`` (monotonic): greet, ask, listen, say goodbye, hang up."""
    question, goodbye = load_fixture("caller_book_table"), load_fixture("caller_goodbye")
    while time.monotonic() < until:
        caller = FakeTwilioCaller(base_url, auth_token=AUTH_TOKEN, from_number=f"+1555{number:07d}")
        try:
            async with caller:
                if not await caller.dial():
                    counts["refused"] += 1
                    await asyncio.sleep(1)
                    continue
                started = time.monotonic()
                await caller.say(question)
                await asyncio.sleep(max(1.0, call_seconds - (time.monotonic() - started) - 3))
                await caller.say(goodbye)
                await caller.hangup()
                counts["calls"] += 1
        except Exception as exc:  # a soak reports trouble and goes on: the figures say how often
            counts["errors"] += 1
            key = f"error {type(exc).__name__}: {str(exc)[:80]}"
            counts[key] = counts.get(key, 0) + 1
            await asyncio.sleep(1)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least squares: bytes per minute."""
    xs, ys = [t / 60 for t, _ in points], [rss for _, rss in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


async def main(args: argparse.Namespace) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="voiceagent-soak-"))
    model_port, port = free_port(), free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VOICEAGENT_", "AZURE_", "OPENAI_"))}
    model = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "voiceagent", "fake-model", "--port", str(model_port), "--api-key", MODEL_KEY,
        "--speed", "1", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=base,
    )  # fmt: skip
    env = {
        **base,
        "AZURE_OPENAI_ENDPOINT": f"http://127.0.0.1:{model_port}",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
        "AZURE_OPENAI_API_KEY": MODEL_KEY,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "VOICEAGENT_GREETING": "Thank you for calling the Riverside Bistro. How can I help you today?",
        "VOICEAGENT_MAX_CALLS": str(args.calls * 2),
        "VOICEAGENT_CALLS_PER_NUMBER_PER_MINUTE": "100000",
        "VOICEAGENT_MODEL_CONNECTS_PER_MINUTE": "100000",
        "VOICEAGENT_DRAIN_SECONDS": "2",
        "VOICEAGENT_DATABASE_URL": f"sqlite:///{scratch}/soak.db",
    }
    with log_file(scratch / "server.log") as log:
        command = ["-m", "voiceagent", "serve"]
        if args.trace:
            command = [str(Path(__file__).with_name("traced_serve.py")), str(args.trace), str(args.trace_every * 60)]
        server = await asyncio.create_subprocess_exec(sys.executable, *command, env=env, stdout=log, stderr=log)
    counts = {"calls": 0, "refused": 0, "errors": 0}
    try:
        await wait_http(f"http://127.0.0.1:{port}/healthz")
        await wait_until(lambda: True, 1)
        start = time.monotonic()
        until = start + args.minutes * 60
        callers = [
            asyncio.create_task(caller_loop(env["PUBLIC_BASE_URL"], n, until, args.call_seconds, counts))
            for n in range(args.calls)
        ]
        samples: list[tuple[float, int]] = []
        while time.monotonic() < until:
            samples.append((time.monotonic() - start, rss_bytes(server.pid)))
            await asyncio.sleep(SAMPLE_SECONDS)
        await asyncio.gather(*callers, return_exceptions=True)
    finally:
        for process in (server, model):
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(process.wait(), 30)
    by_minute: dict[int, list[int]] = {}
    for at, rss in samples:
        by_minute.setdefault(int(at // 60), []).append(rss)
    print(f"soak: {args.calls} callers for {args.minutes:g} min, {counts['calls']} calls ended ({counts})")
    for minute, values in sorted(by_minute.items()):
        print(f"  minute {minute:3d}: RSS {statistics.fmean(values) / 2**20:7.2f} MiB")
    steady = [(at, float(rss)) for at, rss in samples if at >= args.warmup * 60]
    if len(steady) < 3:
        print("too short to judge: run longer than --warmup")
        return 1
    growth = slope_per_minute(steady) / 1024 / args.calls
    verdict = "meets" if growth <= GOAL_KB_PER_CALL_MINUTE else "misses"
    print(
        f"RSS growth after minute {args.warmup:g}: {growth:+.2f} KB per call per minute "
        f"({verdict} the goal of {GOAL_KB_PER_CALL_MINUTE:g}); server log: {scratch / 'server.log'}"
    )
    halfway = (args.warmup * 60 + args.minutes * 60) / 2
    later = [(at, rss) for at, rss in steady if at >= halfway]
    if len(later) >= 3:  # a cache still filling grows early and stops; a leak grows at the same pace to the end
        late = slope_per_minute(later) / 1024 / args.calls
        print(f"  over the second half (minute {halfway / 60:g} on): {late:+.2f} KB per call per minute")
    if args.trace:
        print_growth(args.trace, args.warmup, args.trace_every)
    return 0 if growth <= GOAL_KB_PER_CALL_MINUTE else 1


def print_growth(folder: Path, warmup_minutes: float, every_minutes: float, top: int = 25) -> None:
    """What grew between the first snapshot after the warm-up and the last, by where it was allocated."""
    import tracemalloc

    snapshots = sorted(folder.glob("snapshot-*.pickle"))
    first = min(len(snapshots) - 1, max(0, int(warmup_minutes / every_minutes)))
    if len(snapshots) < 2 or first >= len(snapshots) - 1:
        print("tracemalloc: too few snapshots to compare")
        return
    old, new = tracemalloc.Snapshot.load(str(snapshots[first])), tracemalloc.Snapshot.load(str(snapshots[-1]))
    minutes = (len(snapshots) - 1 - first) * every_minutes
    total = sum(s.size for s in new.statistics("filename")) - sum(s.size for s in old.statistics("filename"))
    last = len(snapshots) - 1
    print(f"tracemalloc: Python heap {total / 1024:+.0f} KB over {minutes:g} min (snapshots {first} -> {last})")
    for stat in new.compare_to(old, "traceback")[:top]:
        print(f"  {stat.size_diff / 1024:+9.1f} KB  {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format()[-8:]:
            print(f"      {line}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="callers at once (default 50)")
    parser.add_argument("--minutes", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--warmup", type=float, default=5.0, help="minutes left out of the slope (default 5)")
    parser.add_argument("--call-seconds", type=float, default=40.0, help="length of each call (default 40)")
    parser.add_argument("--trace", type=Path, help="run the server under tracemalloc, snapshots to this folder")
    parser.add_argument("--trace-every", type=float, default=2.0, help="minutes between snapshots (default 2)")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
