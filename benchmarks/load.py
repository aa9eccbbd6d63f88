"""Load: what one `voiceagent serve` process costs per call, against a bare relay of the same traffic.

    python benchmarks/load.py --calls 50 --seconds 30
    python benchmarks/load.py --curve 10,25,50,100 --seconds 20
    python benchmarks/load.py --calls 50 --seconds 20 --profile /tmp/voiceagent-profile   # py-spy, extra run

For each bridge (voiceagent, then ``benchmarks/bare_relay.py``) it starts the server as its own process,
warms it with one call, reads its idle RSS, then ramps N calls in ``--ramp`` seconds. Fake callers
(``FakeTwilioCaller`` at real time, saying the bundled fixtures and talking over the agent's long answer)
and the fake model (``FakeRealtimeServer`` at real time) run in other processes (``load_peers.py``), so
the server's CPU (utime + stime from /proc/PID/stat) over the steady window of ``--seconds`` is its own.
Latencies come from stamps hidden in near-silent audio (see ``load_peers.py``); lost frames are caller
frames sent minus frames the fake model received; truncate errors are counted by the fake model. The
barge-in clear latency pairs the moment the fake model sent each ``speech_started`` with the moment the
fake caller got the ``clear`` that followed it; RSS growth compares the first and last tenth of the window's
RSS samples.

Everything listens on 127.0.0.1 and every run stops by itself. The figures are as good as the machine is
quiet: the peers share it with the server, and the load average is printed with each run.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import importlib.util
import json
import math
import os
import platform
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

HERE = Path(__file__).resolve().parent
PEERS = str(HERE / "load_peers.py")
BARE = str(HERE / "bare_relay.py")
LEVERS = str(HERE / "levers.py")
AUTH_TOKEN = "load-benchmark-twilio-auth-token-0123456789"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
WARM_CALL_ID = 900_000
BRIDGES = ("voiceagent", "bare relay")
RSS_GROWTH_KB = 1  # per call per minute: 10 KB a call over the goal's 10 minutes, 5 % of the 200 KB a call may use


# ---------------------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def runqueue_wait(pid: int) -> float:
    """Seconds the process's main thread (the event loop) has spent runnable but waiting for a CPU."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    have = {name: importlib.util.find_spec(name) is not None for name in ("uvloop", "httptools", "orjson")}
    extras = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in have.items())
    return (
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}; "
        f"Python {platform.python_version()}; {extras}; load average {loadavg()}"
    )


def append_to(path: Path) -> BinaryIO:
    """A log file for a child process's output (the child keeps its own descriptor)."""
    return open(path, "ab")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- peers


class Peer:
    """A ``load_peers.py`` process: JSON lines in, JSON lines out, its stderr in a file."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.pid = process.pid

    @classmethod
    async def start(cls, args: list[str], log: Path, name: str) -> Peer:
        with append_to(log) as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable, PEERS, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=stderr, limit=2**26,
            )  # fmt: skip
        return cls(process, name)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"{self.name} (pid {self.pid}) exited with {await self.process.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    async def ask(self, line: str, timeout: float = 30.0) -> dict[str, Any]:
        self.send(line)
        return await self.read(timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                self.send("quit")
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def stop_server(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (voiceagent drains: no calls are left, so at once), again, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            return
        process.send_signal(sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 8)


async def wait_healthy(port: int, process: asyncio.subprocess.Process, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/healthz"
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{tail(log)}")
        try:
            await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=1).read())
            return
        except OSError:
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server did not answer {url} within {timeout:.0f} s:\n{tail(log)}")


def tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class Options:
    seconds: float
    ramp: float
    settle: float
    calls_per_process: int
    levers: list[str]
    scratch: Path
    model_endpoint: str
    models: list[Peer]
    profile: Path | None = None


@dataclass
class Result:
    bridge: str
    calls: int
    seconds: float
    cpu_s: float = 0.0
    idle_cpu: float = 0.0  # fraction of a core with no call
    idle_rss: int = 0
    rss_mean: int = 0
    rss_peak: int = 0
    rss_start: int = 0  # mean of the window's first tenth of samples
    rss_end: int = 0  # mean of its last tenth
    rss_minutes: float = 0.0  # between the two
    in_us: list[int] = field(default_factory=list)
    out_us: list[int] = field(default_factory=list)
    clear_us: list[int] = field(default_factory=list)  # speech_started sent -> clear received, paired
    speech_started: int = 0  # speech_started sent in the window, answered by a clear or not
    frames_sent: int = 0
    frames_received: int = 0
    calls_losing: int = 0
    calls_ok: int = 0
    calls_whole: int = 0
    truncates: int = 0
    truncate_errors: int = 0
    clears: int = 0
    model_errors: dict[str, int] = field(default_factory=dict)
    violations: int = 0
    examples: list[str] = field(default_factory=list)
    slipped_ms: float = 0.0
    peers_cpu_s: float = 0.0
    waited_s: float = 0.0  # the server's event loop runnable, but no CPU free
    load: str = ""
    refusals: list[str] = field(default_factory=list)

    @property
    def core_per_call(self) -> float:
        return self.cpu_s / self.seconds / self.calls

    @property
    def lost(self) -> int:
        return self.frames_sent - self.frames_received

    @property
    def rss_per_call(self) -> float:
        return (self.rss_mean - self.idle_rss) / self.calls

    @property
    def rss_growth(self) -> float:
        """Bytes per call per minute, from the start of the window to its end."""
        if self.rss_minutes <= 0:
            return math.nan
        return (self.rss_end - self.rss_start) / self.calls / self.rss_minutes


def server_command(bridge: str, levers: list[str]) -> list[str]:
    if bridge == "bare relay":
        return [sys.executable, BARE]
    if levers:
        return [sys.executable, LEVERS, *(arg for lever in levers for arg in ("--lever", lever))]
    return [sys.executable, "-m", "voiceagent", "serve"]


def server_environment(port: int, calls: int, options: Options) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VOICEAGENT_", "AZURE_", "OPENAI_"))}
    env.update(
        AZURE_OPENAI_ENDPOINT=options.model_endpoint,
        AZURE_OPENAI_DEPLOYMENT="gpt-realtime",
        AZURE_OPENAI_API_KEY="test-key",
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        HOST="127.0.0.1",
        PORT=str(port),
        VOICEAGENT_GREETING="Thank you for calling the Riverside Bistro. How can I help you today?",
        VOICEAGENT_MAX_CALLS=str(max(1000, calls * 2)),
        VOICEAGENT_CALLS_PER_NUMBER_PER_MINUTE="100000",
        VOICEAGENT_MODEL_CONNECTS_PER_MINUTE="100000",
        VOICEAGENT_DRAIN_SECONDS="2",
        VOICEAGENT_DATABASE_URL=f"sqlite:///{options.scratch}/bench-{port}.db",
    )
    return env


async def wait_models_idle(models: list[Peer], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = [await model.ask("stats 0 0") for model in models]
        if all(s["open"] == 0 for s in stats):
            return
        await asyncio.sleep(0.25)


@dataclass
class Contestant:
    """One server under test in a run, with its callers."""

    bridge: str
    levers: list[str]
    base: int  # its calls are numbered base, base + 1, ...
    server: asyncio.subprocess.Process
    log: Path
    result: Result
    callers: list[Peer] = field(default_factory=list)


async def run_once(bridge: str, calls: int, options: Options) -> Result:
    """One bridge, ``calls`` calls: start it, warm it, ramp, measure the steady window, stop it."""
    [result] = await run_together([(bridge, options.levers if bridge == "voiceagent" else [])], calls, options)
    return result


async def run_together(specs: list[tuple[str, list[str]]], calls: int, options: Options) -> list[Result]:
    """Each (bridge, levers) with ``calls`` calls of its own, all at the same time: they share the
    machine's ups and downs, which makes their ratio steadier than that of runs one after another."""
    contestants: list[Contestant] = []
    profiler: asyncio.subprocess.Process | None = None
    try:
        for k, (bridge, levers) in enumerate(specs):
            contestants.append(await start_contestant(bridge, levers, k * 100_000, calls, options))
        for k, one in enumerate(contestants):
            warmed = await one.callers[0].ask(f"warm {WARM_CALL_ID + k} 3", timeout=60)
            if not warmed["warmed"]:
                raise RuntimeError(f"the warm-up call failed: {warmed['refusal']}\n{tail(one.log)}")
        await wait_models_idle(options.models)
        idle0 = [cpu_seconds(one.server.pid) for one in contestants]
        await asyncio.sleep(2.0)
        for one, cpu in zip(contestants, idle0, strict=True):
            one.result.idle_cpu = (cpu_seconds(one.server.pid) - cpu) / 2.0
            one.result.idle_rss = rss_bytes(one.server.pid)
        for model in options.models:
            await model.ask("reset")

        start_at = time.monotonic() + 0.5
        window_start = start_at + options.ramp + options.settle
        window_end = window_start + options.seconds
        window_ns = (int(window_start * 1e9), int(window_end * 1e9))
        for one in contestants:
            for peer in one.callers:
                peer.send(f"go {start_at} {options.ramp} {window_end + 0.25} {window_ns[0]} {window_ns[1]}")
        peer_pids = [p.pid for p in (*(c for one in contestants for c in one.callers), *options.models)]
        pids = [one.server.pid for one in contestants]

        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        if options.profile is not None and specs == [("voiceagent", options.levers)]:
            profiler = await start_profiler(pids[0], options.seconds, options.profile)
        cpu0, peers0, load0 = [cpu_seconds(p) for p in pids], sum(map(cpu_seconds, peer_pids)), loadavg()
        wait0 = [runqueue_wait(p) for p in pids]
        rss: list[list[int]] = [[] for _ in pids]
        rss_at: list[float] = []
        while (now := time.monotonic()) < window_end:
            rss_at.append(now)
            for samples, pid in zip(rss, pids, strict=True):
                samples.append(rss_bytes(pid))
            await asyncio.sleep(min(0.25, max(0.0, window_end - now)))
        peers_cpu, load = sum(map(cpu_seconds, peer_pids)) - peers0, f"{load0} -> {loadavg()}"
        for k, one in enumerate(contestants):
            result = one.result
            result.cpu_s = cpu_seconds(pids[k]) - cpu0[k]
            result.waited_s = runqueue_wait(pids[k]) - wait0[k]
            result.peers_cpu_s, result.load = peers_cpu, load
            result.rss_mean, result.rss_peak = int(statistics.mean(rss[k])), max(rss[k])
            result.rss_start, result.rss_end, result.rss_minutes = rss_ends(rss[k], rss_at)

        reports = [[await peer.read(timeout=90) for peer in one.callers] for one in contestants]
        await wait_models_idle(options.models)
        for one, report in zip(contestants, reports, strict=True):
            last = one.base + calls - 1
            ask = f"stats {window_ns[0]} {window_ns[1]} {one.base} {last}"
            model_stats = [await model.ask(ask) for model in options.models]
            summarise(one.result, [c for part in report for c in part["calls"]], model_stats, window_ns)
        if profiler is not None:
            await profiler.wait()
    finally:
        if profiler is not None and profiler.returncode is None:
            profiler.kill()
        for one in contestants:
            for peer in one.callers:
                await peer.stop()
            await stop_server(one.server)
    return [one.result for one in contestants]


async def start_contestant(bridge: str, levers: list[str], base: int, calls: int, options: Options) -> Contestant:
    port = free_port()
    log = options.scratch / f"{bridge.replace(' ', '-')}-{'+'.join(levers) or 'plain'}-{calls}-{port}.log"
    with append_to(log) as output:
        server = await asyncio.create_subprocess_exec(
            *server_command(bridge, levers), env=server_environment(port, calls, options), stdout=output,
            stderr=output,
        )  # fmt: skip
    name = bridge + (f" +{'+'.join(levers)}" if levers else "")
    one = Contestant(bridge, levers, base, server, log, Result(name, calls, options.seconds))
    try:
        await wait_healthy(port, server, log)
        processes = math.ceil(calls / options.calls_per_process)
        bounds = [base + round(k * calls / processes) for k in range(processes + 1)]
        for a, b in zip(bounds, bounds[1:], strict=False):
            args = ["callers", "--url", f"http://127.0.0.1:{port}", "--token", AUTH_TOKEN, "--ids", f"{a}:{b - 1}"]
            args += ["--total", str(calls), "--base", str(base)]
            one.callers.append(await Peer.start(args, log.with_suffix(".callers.log"), "callers"))
        for peer in one.callers:
            await peer.read(60)
    except BaseException:
        for peer in one.callers:
            await peer.stop()
        await stop_server(server)
        raise
    return one


def rss_ends(samples: list[int], at: list[float]) -> tuple[int, int, float]:
    """The RSS at the start and at the end of the window (the means of the first and of the last tenth of the
    samples, so that one sample's noise does not decide) and the minutes between the two tenths' middles."""
    n = max(1, len(samples) // 10)
    minutes = (statistics.mean(at[-n:]) - statistics.mean(at[:n])) / 60
    return int(statistics.mean(samples[:n])), int(statistics.mean(samples[-n:])), minutes


def pair_clears(
    started: dict[int, list[int]], cleared: dict[int, list[int]], window_ns: tuple[int, int]
) -> tuple[list[int], int]:
    """µs from each ``speech_started`` the fake model sent to the ``clear`` its caller got for it, for the
    ``speech_started`` sent in the window; and how many were sent in the window. A clear belongs to the latest
    ``speech_started`` of its call sent before it; a ``speech_started`` with no clear (voiceagent clears only
    when the agent's audio is playing) is left out, and so is a second clear after the same one."""
    took: list[int] = []
    for call, clears in cleared.items():
        sent = sorted(started.get(call, []))
        paired: set[int] = set()
        for clear in sorted(clears):
            k = bisect.bisect_right(sent, clear) - 1
            if k < 0 or k in paired:
                continue
            paired.add(k)
            if window_ns[0] <= sent[k] < window_ns[1]:
                took.append((clear - sent[k]) // 1000)
    in_window = sum(window_ns[0] <= at < window_ns[1] for times in started.values() for at in times)
    return took, in_window


def summarise(
    result: Result, calls: list[dict[str, Any]], model_stats: list[dict[str, Any]], window_ns: tuple[int, int]
) -> None:
    received: Counter[int] = Counter()
    started: dict[int, list[int]] = {}
    for stats in model_stats:
        received.update({int(k): v for k, v in stats["frames"].items()})
        for call, times in stats["speech_started_ns"].items():
            started.setdefault(int(call), []).extend(times)
        result.in_us += stats["in_latency_us"]
        result.truncates += stats["truncates"]
        result.truncate_errors += stats["truncate_errors"]
        result.violations += stats["violations"] + stats["self_violations"]
        result.examples += [f"model: {e}" for e in stats["violation_examples"]]
        for code, n in stats["errors"].items():
            result.model_errors[code] = result.model_errors.get(code, 0) + n
        result.frames_received += stats["unattributed_frames"]
    result.frames_received += sum(received.values())
    for call in calls:
        result.frames_sent += call["frames_sent"]
        result.calls_losing += call["frames_sent"] > received.get(call["id"], 0)
        result.calls_ok += call["ok"]
        result.calls_whole += call["ok"] and not call.get("ended_early")
        result.out_us += call["out_latency_us"]
        result.clears += call["clears"]
        result.violations += call["violations"]
        result.examples += [f"twilio: {e}" for e in call["violation_examples"]]
        result.slipped_ms += call["slipped_ms"]
        if not call["ok"]:
            result.refusals.append(str(call["refusal"]))
    cleared = {int(call["id"]): call["clear_ns"] for call in calls}
    result.clear_us, result.speech_started = pair_clears(started, cleared, window_ns)


# ---------------------------------------------------------------------------------------------- profile


async def start_profiler(pid: int, seconds: float, path: Path) -> asyncio.subprocess.Process:
    """py-spy on the server for the window: native frames too (uvloop and the socket calls are C), which
    means pausing the process at each sample, so the profiled run's own figures are not reported."""
    with append_to(path.with_suffix(".py-spy.log")) as log:
        return await asyncio.create_subprocess_exec(
            "py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--native",
            "--format", "raw", "--output", str(path.with_suffix(".folded")), stdout=log, stderr=log,
        )  # fmt: skip


IDLE_MARKS = ("epoll_pwait", "epoll_wait", "PyThread_acquire_lock_timed", "_queue_SimpleQueue_get", "select (")


def profile_summary(folded: Path, top: int = 25) -> str:
    """Where the samples of py-spy's collapsed stacks are: self time by library and by function, and
    inclusive time by function."""
    own: Counter[str] = Counter()
    by_library: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        if any(mark in stack for mark in IDLE_MARKS):
            continue  # a thread waiting (the event loop in epoll, the store writer on its queue): not CPU
        n = int(count)
        total += n
        frames = [_frame(text) for text in stack.split(";")]
        own[frames[-1][0]] += n
        by_library[frames[-1][1]] += n
        for name in {name for name, _ in frames}:
            inclusive[name] += n
    if not total:
        return "no samples"
    lines = [f"{total} busy samples; self time by library:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in by_library.most_common(12)]
    lines.append("self time by function:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("inclusive time by function:")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top + 15)]
    return "\n".join(lines)


def _frame(text: str) -> tuple[str, str]:
    """``("function (dir/file.py)", library)`` of one py-spy frame ``function (package/module.py:line)``."""
    function, _, inside = text.partition(" (")
    parts = Path(inside.rstrip(")").rpartition(":")[0]).parts
    library = "/".join(parts[:2]) if parts[:1] == ("voiceagent",) and len(parts) > 2 else (parts or ("native",))[0]
    return f"{function} ({'/'.join(parts[-2:])})", library.removesuffix(".py")


# ---------------------------------------------------------------------------------------------- report


def percentile(values: list[int], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def latency(values: list[int]) -> str:
    return f"{percentile(values, 0.5):.2f} / {percentile(values, 0.99):.2f}"


def table(rows: list[Result]) -> str:
    head = (
        "bridge", "% core/call", "calls/core", "RSS/call", "in p50/p99 ms", "out p50/p99 ms", "lost frames",
        "truncates (err)", "clears", "clear p50/p99 ms",
    )  # fmt: skip
    body = []
    for r in rows:
        body.append(
            (
                r.bridge,
                f"{100 * r.core_per_call:.3f}",
                f"{1 / r.core_per_call:.0f}" if r.core_per_call else "inf",
                f"{r.rss_per_call / 1024:.0f} KB",
                latency(r.in_us),
                latency(r.out_us),
                f"{r.lost} of {r.frames_sent}",
                f"{r.truncates} ({r.truncate_errors})",
                str(r.clears),
                latency(r.clear_us),
            )
        )
    if len(rows) == 2 and rows[1].core_per_call:
        a, b = rows
        body.append(
            (
                "ratio",
                f"{a.core_per_call / b.core_per_call:.2f}x",
                f"{b.core_per_call / a.core_per_call:.2f}x",
                f"{a.rss_per_call / b.rss_per_call:.1f}x" if b.rss_per_call > 0 else "-",
                ratio_of(a.in_us, b.in_us),
                ratio_of(a.out_us, b.out_us),
                "",
                "",
                "",
                ratio_of(a.clear_us, b.clear_us),
            )
        )
    widths = [max(len(str(row[i])) for row in (head, *body)) for i in range(len(head))]
    lines = [" | ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in (head, *body)]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def ratio_of(a: list[int], b: list[int]) -> str:
    pa, pb = percentile(a, 0.5), percentile(a, 0.99)
    qa, qb = percentile(b, 0.5), percentile(b, 0.99)
    if not (qa and qb) or math.isnan(qa):
        return "-"
    return f"{pa / qa:.1f}x / {pb / qb:.1f}x"


def details(r: Result) -> str:
    window = f"{r.calls} calls x {r.seconds:.0f} s"
    lines = [
        f"{r.bridge} ({window}): server CPU {r.cpu_s:.2f} s (idle: {100 * r.idle_cpu:.1f}% of a core); "
        f"RSS idle {r.idle_rss / 2**20:.1f} MiB, window mean {r.rss_mean / 2**20:.1f} MiB, "
        f"peak {r.rss_peak / 2**20:.1f} MiB",
        f"    RSS over the window: start {r.rss_start / 2**20:.2f} MiB, end {r.rss_end / 2**20:.2f} MiB "
        f"({(r.rss_end - r.rss_start) / 1024:+.0f} KB in {60 * r.rss_minutes:.0f} s: "
        f"{r.rss_growth / 1024:+.2f} KB/call/min)",
        f"    calls dialled {r.calls_ok}, up all window {r.calls_whole}; latency samples in {len(r.in_us)} "
        f"(max {percentile(r.in_us, 1.0):.1f} ms), out {len(r.out_us)} (max {percentile(r.out_us, 1.0):.1f} ms); "
        f"calls losing frames {r.calls_losing}; model errors {r.model_errors or 'none'}; "
        f"protocol violations {r.violations}",
        f"    barge-in: {r.speech_started} speech_started sent in the window, {len(r.clear_us)} answered by a "
        f"clear, speech_started -> clear p50/p99 {latency(r.clear_us)} ms (max {percentile(r.clear_us, 1.0):.2f}; "
        f"two loopback hops included)",
        f"    server waited for a CPU {100 * r.waited_s / r.seconds:.1f}% of the window; peers (fake model + callers) "
        f"CPU {100 * r.peers_cpu_s / r.seconds:.0f}% of a core; caller clock slips {r.slipped_ms:.0f} ms in total; "
        f"load average {r.load}",
    ]
    if r.refusals:
        lines.append(f"    refused: {Counter(r.refusals).most_common(3)}")
    if r.examples:
        lines.append(f"    e.g. {r.examples[:3]}")
    return "\n".join(lines)


def goals(rows: list[Result], at_100: Result | None) -> str:
    va, bare = rows[0], rows[1] if len(rows) > 1 else None
    lines = ["issue-11 goals (voiceagent):"]

    def line(ok: bool | None, text: str) -> None:
        lines.append(f"  [{'n/a ' if ok is None else 'pass' if ok else 'FAIL'}] {text}")

    line(1 / va.core_per_call >= 150, f">= 150 calls per core: {1 / va.core_per_call:.0f}")
    if bare is not None:
        ratio = va.core_per_call / bare.core_per_call
        line(ratio <= 0.8, f"CPU per call <= 0.8x the bare relay's: {ratio:.2f}x")
    if at_100 is None:
        line(None, "latency p99 <= 5 ms each way at 100 calls: not run at 100 calls")
    else:
        p_in, p_out = percentile(at_100.in_us, 0.99), percentile(at_100.out_us, 0.99)
        line(p_in <= 5 and p_out <= 5, f"latency p99 <= 5 ms each way at 100 calls: in {p_in:.2f}, out {p_out:.2f}")
    line(va.lost == 0, f"0 lost frames: {va.lost}")
    line(va.rss_per_call <= 200 * 1024, f"<= 200 KB RSS per call: {va.rss_per_call / 1024:.0f} KB")
    if va.clear_us:
        p99 = percentile(va.clear_us, 0.99)
        floor = ""
        if bare is not None and bare.clear_us:
            floor = f"; the bare relay's {percentile(bare.clear_us, 0.99):.2f} ms"
        line(
            p99 <= 2,
            f"barge-in clear p99 <= 2 ms after speech_started: {p99:.2f} ms over {len(va.clear_us)} barge-ins "
            f"(model's send to caller's receipt: two loopback hops included{floor})",
        )
    else:
        line(None, "barge-in clear p99 <= 2 ms after speech_started: no barge-in in the window")
    growth = va.rss_growth / 1024
    short = f"; a {va.seconds:.0f} s window is noisy, the goal is 10 min at 50 calls" if va.seconds < 600 else ""
    line(
        None if math.isnan(growth) else growth < RSS_GROWTH_KB,
        f"no RSS growth over the window: {growth:+.2f} KB/call/min (pass below {RSS_GROWTH_KB}; "
        f"{va.rss_start / 2**20:.1f} -> {va.rss_end / 2**20:.1f} MiB{short})",
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> int:
    points = [int(n) for n in args.curve.split(",")] if args.curve else [args.calls]
    print(machine(), flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="voiceagent-load-"))
    model_port = free_port()
    processes = args.model_processes or max(1, math.ceil(max(points) / 50))
    models: list[Peer] = []
    for _ in range(processes):
        models.append(await Peer.start(["model", "--port", str(model_port)], scratch / "model.log", "model"))
    for model in models:
        await model.read(60)
    options = Options(
        seconds=args.seconds, ramp=args.ramp, settle=args.settle, calls_per_process=args.calls_per_process,
        levers=args.lever, scratch=scratch, model_endpoint=f"http://127.0.0.1:{model_port}", models=models,
    )  # fmt: skip
    bridges = BRIDGES[:1] if args.no_bare else BRIDGES
    print(
        f"{processes} fake model process(es), callers {args.calls_per_process} per process, ramp {args.ramp:.0f} s, "
        f"settle {args.settle:.0f} s, window {args.seconds:.0f} s; levers: {', '.join(args.lever) or 'none'}; "
        f"logs in {scratch}",
        flush=True,
    )
    curve: list[tuple[int, list[Result]]] = []
    if args.compare:
        try:
            await compare(args, options, points[-1])
        finally:
            for model in models:
                await model.stop()
        return 0
    try:
        for n in points:
            if args.paired:
                rows = await run_together(
                    [(bridge, options.levers if bridge == "voiceagent" else []) for bridge in bridges], n, options
                )
            else:
                rows = [await run_once(bridge, n, options) for bridge in bridges]
            curve.append((n, rows))
            print(f"\n{n} calls, {args.seconds:.0f} s steady window:\n{table(rows)}", flush=True)
            for row in rows:
                print(details(row), flush=True)
        if args.profile:
            options.profile = Path(args.profile)
            print(f"\nprofiling voiceagent at {points[-1]} calls (py-spy, an extra run; its figures not used)...")
            await run_once("voiceagent", points[-1], options)
            folded = options.profile.with_suffix(".folded")
            if folded.exists():
                print(f"{profile_summary(folded)}\n(collapsed stacks: {folded})")
            else:
                print(f"py-spy wrote no profile: {tail(options.profile.with_suffix('.py-spy.log'))}")
    finally:
        for model in models:
            await model.stop()
    if len(curve) > 1:
        print("\ncurve (CPU per call as N grows):")
        print("   N | voiceagent % core/call | bare % core/call | ratio | va in/out p99 ms | va lost | load")
        for n, rows in curve:
            va, bare = rows[0], rows[1] if len(rows) > 1 else None
            bare_text = f"{100 * bare.core_per_call:.3f}" if bare else "-"
            ratio = f"{va.core_per_call / bare.core_per_call:.2f}x" if bare else "-"
            p99 = f"{percentile(va.in_us, 0.99):.2f} / {percentile(va.out_us, 0.99):.2f}"
            print(
                f"{n:4d} | {100 * va.core_per_call:22.3f} | {bare_text:>16} | {ratio:>5} | {p99:>16} | "
                f"{va.lost:7d} | {va.load}"
            )
    last = curve[-1][1]
    at_100 = next((rows[0] for n, rows in curve if n == 100), None)
    print("\n" + goals(last, at_100))
    print(machine())
    return 0


async def compare(args: argparse.Namespace, options: Options, calls: int) -> None:
    """voiceagent alone, with each set of levers in turn (rounds interleaved, so that drifting load on the
    machine falls on every set alike), against the first set."""
    sets = [[] if name == "none" else name.split("+") for name in args.compare.split(",")]
    runs: dict[str, list[Result]] = {}
    for round_ in range(args.repeat):
        if args.paired:
            together = await run_together([("voiceagent", levers) for levers in sets], calls, options)
        for k, levers in enumerate(sets):
            options.levers = levers
            name = "+".join(levers) or "none"
            result = together[k] if args.paired else await run_once("voiceagent", calls, options)
            runs.setdefault(name, []).append(result)
            print(
                f"round {round_ + 1} {name}: {100 * result.core_per_call:.3f}% core/call, "
                f"waited {100 * result.waited_s / result.seconds:.0f}%, in p50/p99 {latency(result.in_us)}, "
                f"out {latency(result.out_us)}, lost {result.lost}, load {result.load}",
                flush=True,
            )
    base = statistics.mean(r.core_per_call for r in next(iter(runs.values())))
    print(f"\nlevers at {calls} calls x {args.seconds:.0f} s ({args.repeat} round(s)); % of a core per call:")
    for name, results in runs.items():
        each = ", ".join(f"{100 * r.core_per_call:.3f}" for r in results)
        mean = statistics.mean(r.core_per_call for r in results)
        rss = statistics.mean(r.rss_per_call for r in results) / 1024
        print(
            f"  {name:40} {100 * mean:.3f} ({each})  {100 * (mean / base - 1):+5.1f}%  "
            f"calls/core {1 / mean:.0f}  RSS/call {rss:.0f} KB  lost {sum(r.lost for r in results)}  "
            f"truncate errors {sum(r.truncate_errors for r in results)}  "
            f"violations {sum(r.violations for r in results)}"
        )
    print(machine())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50, help="concurrent calls (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="steady window measured (default 30)")
    parser.add_argument("--curve", help="comma-separated call counts, e.g. 10,25,50,100: CPU per call at each")
    parser.add_argument("--ramp", type=float, default=2.0, help="seconds over which the calls are dialled")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after the ramp before measuring")
    parser.add_argument("--calls-per-process", type=int, default=25, help="fake callers per caller process")
    parser.add_argument("--model-processes", type=int, default=0, help="fake model processes (default N/50)")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare relay")
    parser.add_argument("--lever", action="append", default=[], help="monkeypatch a lever into voiceagent (levers.py)")
    parser.add_argument(
        "--compare",
        help="lever sets to compare on voiceagent alone, e.g. none,batch-60,batch-60+direct-send (one point)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="with --compare: rounds, interleaved")
    parser.add_argument(
        "--paired",
        action="store_true",
        help="run the bridges (or the --compare sets) at the same time, N calls each: steadier ratios, busier machine",
    )
    parser.add_argument("--profile", help="after the runs, profile voiceagent with py-spy; output path prefix")
    args = parser.parse_args()
    if args.calls < 1 or args.seconds < 1:
        parser.error("--calls and --seconds must be at least 1")
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
