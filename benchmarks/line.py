"""One line on two instances: what the sharing costs, and how fast control reaches a call's owner.

    eval "$(.ci/postgres.sh)"; python benchmarks/line.py [--calls 40]

Runs ``--calls`` calls at once through haproxy (round robin, and ``use-server`` rules that send a stream
to the instance its TwiML names: ``/instances/<instance>/twilio/media``, the one that answered the webhook
and pre-warmed the model session) in front of one ``voiceagent serve``, then in front of two, on the
same PostgreSQL records (a schema of its own, dropped after); the fake model and the fake callers run in
this process. Each call hears the greeting, asks one question and hears the answer start, then hangs up;
each instance count runs two batches: the calls alone, then the same calls with an operator's work in
each (a live view of the line, then a note to each instance); one instance also runs half the calls alone,
the control: each of two instances carries half the calls, and an instance's CPU per call falls the more
calls it carries. Prints the servers' CPU time per call (from ``/proc``), for one instance and for two
(their sum), batch by batch, and, on two, the latency of
``GET /api/calls/live`` (every instance asked over the bus) and of ``POST /api/calls/{sid}/note`` sent to
the instance that does *not* own the call (passed to the owner over the bus) against the owner itself.
Needs ``haproxy`` and ``VOICEAGENT_TEST_POSTGRES_URL`` (or ``--database-url``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from voiceagent.testing.audio import load_fixture
from voiceagent.testing.fake_realtime import FakeRealtimeServer
from voiceagent.testing.fake_twilio import FakeTwilioCaller
from voiceagent.testing.harness import TEST_AUTH_TOKEN, app_environment

Latencies = dict[str, list[float]]


@dataclass(frozen=True)
class Run:
    call_cpu: float  # seconds of the servers' CPU per call, the call alone
    operated_call_cpu: float  # ... a call with a live view and two notes
    half_call_cpu: float  # ... the call alone, half as many calls at once (one instance only: the control)
    sessions_per_call: float  # model sessions opened per call (a released pre-warm is one more)
    latencies: Latencies


GREETING = load_fixture("agent_greeting")
API_TOKEN = "line-benchmark-token-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
TICKS = os.sysconf("SC_CLK_TCK")
HAPROXY = """
defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    timeout tunnel 1h
    retries 3
    option redispatch 1
listen line
    bind 127.0.0.1:{port}
    balance {balance}
    option httpchk GET /readyz
    default-server inter 1s fall 1 rise 1
{servers}
"""


def instance_rules(ports: list[int]) -> str:
    """haproxy's rules for ``/instances/<instance>/…`` (an instance is named ``host:PORT``)."""
    host = socket.gethostname()
    return "\n".join(f"    use-server i{i} if {{ path_beg /instances/{host}:{port}/ }}" for i, port in enumerate(ports))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def print_logs(work: Path) -> None:
    """What the servers said, before their folder goes (a run that failed)."""
    for log in sorted(work.glob("serve-*.log")):
        print(f"--- {log.name}, last lines:\n{log.read_text()[-3000:]}", file=sys.stderr)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def start_instance(env: dict[str, str], port: int, log: Path) -> asyncio.subprocess.Process:
    out = await asyncio.to_thread(open, log, "ab")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voiceagent", "serve", env={**env, "PORT": str(port)}, stdout=out, stderr=out
        )
    finally:
        out.close()
    async with httpx.AsyncClient(timeout=2) as http:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.returncode is not None:
                tail = (await asyncio.to_thread(log.read_text))[-2000:]
                raise SystemExit(f"voiceagent serve exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                    return process
            await asyncio.sleep(0.2)
    raise SystemExit("voiceagent serve did not become ready within 60 s")


async def one_call(
    proxy: str, http: httpx.AsyncClient, ports: list[int], latencies: Latencies, *, operator: bool
) -> None:
    async with FakeTwilioCaller(proxy, auth_token=TEST_AUTH_TOKEN) as caller:
        assert await caller.dial(), caller.refusal
        await caller.wait_until(lambda: len(caller.played) >= len(GREETING), 120)
        if operator:  # the same work on one instance and on two: a live view, then a note to each instance
            started = time.perf_counter()
            live = (await http.get(proxy + "/api/calls/live", headers=AUTH)).json()["calls"]
            latencies["live"].append((time.perf_counter() - started) * 1000)
            owner = next(c["instance"] for c in live if c["call_sid"] == caller.call_sid)
            for port in ports if len(ports) > 1 else ports * 2:
                kind = "owner" if owner.endswith(f":{port}") else "other"
                started = time.perf_counter()
                url = f"http://127.0.0.1:{port}/api/calls/{caller.call_sid}/note"
                answer = await http.post(url, json={"text": "benchmark note"}, headers=AUTH)
                assert answer.status_code == 202, answer.text
                latencies[kind].append((time.perf_counter() - started) * 1000)
        await caller.say("caller_book_table")
        await caller.wait_until(lambda: len(caller.played) >= len(GREETING) + 8000, 120)
        await caller.hangup()


async def run(
    instances: int,
    calls: int,
    model: FakeRealtimeServer,
    database_url: str,
    work: Path,
    balance: str,
    instance_routes: bool,
) -> Run:
    proxy_port = free_port()
    proxy = f"http://127.0.0.1:{proxy_port}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "VOICEAGENT_"))},
        **app_environment(model.endpoint, VOICEAGENT_MAX_CALLS=str(calls)),
        "HOST": "127.0.0.1",
        "PUBLIC_BASE_URL": proxy,
        "VOICEAGENT_DATABASE_URL": database_url,
        "VOICEAGENT_API_TOKEN": API_TOKEN,
    }
    ports = [free_port() for _ in range(instances)]
    servers = [await start_instance(env, port, work / f"serve-{port}.log") for port in ports]
    config = work / f"haproxy-{instances}.cfg"
    lines = "\n".join(f"    server i{i} 127.0.0.1:{port} check" for i, port in enumerate(ports))
    if instance_routes:  # the stream to the instance its TwiML names (the one that pre-warmed the call)
        lines += "\n" + instance_rules(ports)
    config.write_text(HAPROXY.format(port=proxy_port, servers=lines, balance=balance))
    haproxy = await asyncio.create_subprocess_exec("haproxy", "-db", "-f", str(config))
    latencies: Latencies = {"owner": [], "other": [], "live": []}
    spent: dict[tuple[int, bool], float] = {}
    # the calls alone, then the same calls with an operator's work; one instance also half the calls alone
    batches = [(calls, False), (calls, True)] + ([(calls // 2, False)] if instances == 1 else [])
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            for _ in range(100):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(proxy + "/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            # warm every instance up first (its first call imports and builds what later calls reuse):
            # two instances would otherwise pay that twice in the figures
            await asyncio.gather(
                *(one_call(proxy, http, ports, latencies, operator=False) for _ in range(2 * instances))
            )
            sessions_before = len(model.sessions)
            for count, operator in batches:
                before = sum(cpu_seconds(server.pid) for server in servers)
                await asyncio.gather(
                    *(one_call(proxy, http, ports, latencies, operator=operator) for _ in range(count))
                )
                spent[count, operator] = (sum(cpu_seconds(server.pid) for server in servers) - before) / count
            sessions = len(model.sessions) - sessions_before  # a released pre-warm is one more
            batch_calls = sum(count for count, _ in batches)
    except BaseException:
        print_logs(work)
        raise
    finally:
        haproxy.terminate()
        for server in servers:
            server.terminate()
        await asyncio.gather(haproxy.wait(), *(server.wait() for server in servers))
    half = spent.get((calls // 2, False), float("nan"))
    return Run(spent[calls, False], spent[calls, True], half, sessions / batch_calls, latencies)


async def main(calls: int, database_url: str, balance: str, instance_routes: bool, repeat: int) -> None:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = database_url + ("&" if "?" in database_url else "?") + f"options=-csearch_path%3D{schema}"
    rounds: list[tuple[Run, Run]] = []
    try:
        with tempfile.TemporaryDirectory() as work:
            async with FakeRealtimeServer(speed=4.0) as model:
                for round_number in range(repeat):  # one then two, then two then one: the order cancels out
                    counts = (1, 2) if round_number % 2 == 0 else (2, 1)
                    done = {n: await run(n, calls, model, url, Path(work), balance, instance_routes) for n in counts}
                    rounds.append((done[1], done[2]))
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
    routes = "streams routed to the instance that pre-warmed" if instance_routes else "no per-instance routes"
    print(f"{calls} calls at once through haproxy (balance {balance}, {routes}), PostgreSQL records, {repeat} rounds")
    one, two = rounds[-1]
    print(f"model sessions per call: one instance {one.sessions_per_call:.2f}, two {two.sessions_per_call:.2f}")
    comparisons = (
        ("the call alone", "call_cpu", "call_cpu", calls),
        ("with a live view and two notes", "operated_call_cpu", "operated_call_cpu", calls),
        # the control: as many calls per instance as each of the two carries
        ("the call alone, one at half", "half_call_cpu", "call_cpu", calls // 2),
    )
    for label, cost_one, cost_two, calls_on_one in comparisons:
        alone = [getattr(one, cost_one) * 1000 for one, _ in rounds]
        split = [getattr(two, cost_two) * 1000 for _, two in rounds]
        changes = [(b / a - 1) * 100 for a, b in zip(alone, split, strict=True)]
        each = ", ".join(f"{change:+.0f}" for change in changes)
        print(
            f"CPU per call, {label:<31}: one instance ({calls_on_one} calls) {statistics.median(alone):.1f} ms, "
            f"two ({calls} calls) {statistics.median(split):.1f} ms "
            f"(median change {statistics.median(changes):+.1f} %; rounds {each} %)"
        )
    rows = [("live", "GET /api/calls/live, two instances"), ("owner", "note to the owner")]
    rows.append(("other", "note to the other (over the bus)"))
    for kind, label in rows:
        values = [value for _, two in rounds for value in two.latencies[kind]]
        p50, p99 = statistics.median(values), percentile(values, 0.99)
        print(f"{label:<36}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(values)} requests)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument(
        "--balance",
        default="roundrobin",
        choices=("roundrobin", "source"),
        help="source: every call on one instance (all callers are 127.0.0.1): the line's cost without split calls",
    )
    parser.add_argument(
        "--no-instance-routes",
        action="store_true",
        help="a proxy without the /instances/<instance>/ rules: streams land anywhere (the pre-warm is released)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds of one instance and two (default 3)")
    parser.add_argument("--database-url", default=os.environ.get("VOICEAGENT_TEST_POSTGRES_URL"))
    options = parser.parse_args()
    if not options.database_url or shutil.which("haproxy") is None:
        raise SystemExit("needs PostgreSQL (VOICEAGENT_TEST_POSTGRES_URL or --database-url) and haproxy")
    asyncio.run(
        main(options.calls, options.database_url, options.balance, not options.no_instance_routes, options.repeat)
    )
