"""One phone line on two instances: real PostgreSQL, two ``voiceagent serve`` processes and haproxy
(round robin, health checks on ``/readyz``) in front; the fake Twilio dials through the proxy, the fake
model serves both instances.

Needs ``VOICEAGENT_TEST_POSTGRES_URL`` (``.ci/postgres.sh``) and ``haproxy`` (``.ci/run`` installs it);
without them the module is skipped, and says so. Each case prints its figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.helpers import FAST, GREETING, MODEL_LEAD, WAIT
from voiceagent.testing import (
    FIXTURE_TEXTS,
    TEST_AUTH_TOKEN,
    FakeRealtimeServer,
    FakeTwilioCaller,
    app_environment,
    wait_until,
)
from voiceagent.testing.fake_twilio import new_sid, webhook_params
from voiceagent.testing.twilio_dial import Dial, post_webhook

POSTGRES_URL = os.environ.get("VOICEAGENT_TEST_POSTGRES_URL")
API_TOKEN = "line-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DRAIN_SECONDS = 2.0
COMMIT_WINDOW_SECONDS = 0.3  # the writer commits within milliseconds; the margin before a kill

pytestmark = [
    pytest.mark.skipif(
        not POSTGRES_URL,
        reason='several instances NOT RUN: VOICEAGENT_TEST_POSTGRES_URL is not set (eval "$(.ci/postgres.sh)")',
    ),
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="several instances NOT RUN: haproxy is not installed"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Instance:
    port: int
    log: Path
    process: asyncio.subprocess.Process

    @property
    def name(self) -> str:
        return f"{socket.gethostname()}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logged(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("event") == event]


@dataclass
class Line:
    proxy: str
    instances: list[Instance]
    model: FakeRealtimeServer
    http: httpx.AsyncClient
    started: dict[str, float] = field(default_factory=dict)

    def named(self, name: str) -> Instance:
        return next(instance for instance in self.instances if instance.name == name)

    def other(self, instance: Instance) -> Instance:
        return next(each for each in self.instances if each is not instance)

    async def owner(self, call_sid: str, via: str | None = None) -> Instance:
        """The instance holding ``call_sid``, as ``/api/calls/live`` (of the whole line) says."""

        async def found() -> str | None:
            calls = (await self.http.get((via or self.proxy) + "/api/calls/live", headers=AUTH)).json()["calls"]
            return next((c["instance"] for c in calls if c["call_sid"] == call_sid and c["phase"] != "ending"), None)

        owner = await wait_until(found, WAIT)
        assert owner is not None
        return self.named(owner)


async def start_instance(env: dict[str, str], tmp_path: Path, port: int) -> Instance:
    log = tmp_path / f"voiceagent-{port}.log"
    out = await asyncio.to_thread(open, log, "ab")
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voiceagent", "serve", env={**env, "PORT": str(port)}, stdout=out, stderr=out
        )
    finally:
        out.close()
    instance = Instance(port, log, process)
    async with httpx.AsyncClient(timeout=5) as http:

        async def ready() -> bool:
            if process.returncode is not None:
                raise AssertionError(f"voiceagent serve exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                return (await http.get(instance.url + "/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_until(ready, WAIT)
    return instance


HAPROXY = """
global
    maxconn 4000
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
    balance roundrobin
    option httpchk GET /readyz
    default-server inter 300ms fall 1 rise 2
{servers}
"""


@pytest.fixture
def schema_url() -> Iterator[str]:
    assert POSTGRES_URL is not None
    import psycopg

    schema = f"line_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    try:
        yield POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + f"options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def line_environment() -> dict[str, str]:
    """What the instances get besides the line's own variables (another module may say more)."""
    return {}


@pytest.fixture
async def line(schema_url: str, tmp_path: Path, line_environment: dict[str, str]) -> AsyncIterator[Line]:
    async with FakeRealtimeServer(speed=FAST * MODEL_LEAD, replies=("agent_reply_long", "agent_goodbye")) as model:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("AZURE_", "OPENAI_", "VOICEAGENT_"))},
            **app_environment(model.endpoint),
            "HOST": "127.0.0.1",
            "VOICEAGENT_DATABASE_URL": schema_url,
            "VOICEAGENT_API_TOKEN": API_TOKEN,
            "VOICEAGENT_DRAIN_SECONDS": str(DRAIN_SECONDS),
            "VOICEAGENT_TRANSFER_TO": "+15551230001",
            **line_environment,
        }
        proxy_port = free_port()
        env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{proxy_port}"  # Twilio's URLs (and signatures) name the proxy
        instances = [await start_instance(env, tmp_path, free_port()) for _ in range(2)]
        servers = "\n".join(f"    server i{i} 127.0.0.1:{each.port} check" for i, each in enumerate(instances))
        # a stream whose TwiML names an instance goes to it (the one that pre-warmed); a server down: round robin
        servers += "".join(
            f"\n    use-server i{i} if {{ path_beg /instances/{each.name}/ }}" for i, each in enumerate(instances)
        )
        config = tmp_path / "haproxy.cfg"
        config.write_text(HAPROXY.format(port=proxy_port, servers=servers))
        haproxy = await asyncio.create_subprocess_exec(
            "haproxy", "-db", "-f", str(config), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        proxy = f"http://127.0.0.1:{proxy_port}"
        async with httpx.AsyncClient(timeout=10) as http:

            async def proxied() -> bool:
                try:
                    return (await http.get(proxy + "/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                await wait_until(proxied, WAIT)
                yield Line(proxy, instances, model, http)
            finally:
                haproxy.terminate()
                for each in instances:
                    if each.process.returncode is None:
                        each.process.kill()
                await asyncio.gather(haproxy.wait(), *(each.process.wait() for each in instances))


def caller(line: Line, **options: Any) -> FakeTwilioCaller:
    return FakeTwilioCaller(line.proxy, auth_token=TEST_AUTH_TOKEN, speed=FAST, **options)


async def greeted(call: FakeTwilioCaller) -> None:
    assert await call.dial(), call.refusal
    await call.wait_until(lambda: len(call.played) >= len(GREETING), timeout=WAIT)


def figure(name: str, value: object) -> None:
    print(f"FIGURE {name}: {value}")


async def collect_events(http: httpx.AsyncClient, url: str, into: list[dict[str, Any]]) -> None:
    async with http.stream("GET", url + "/api/events", headers=AUTH, timeout=None) as response:
        kind = ""
        async for text in response.aiter_lines():
            if text.startswith("event: "):
                kind = text[len("event: ") :]
            elif text.startswith("data: "):
                into.append({"kind": kind, **json.loads(text[len("data: ") :])})


def model_was_told(model: FakeRealtimeServer, text: str) -> bool:
    return any(text in json.dumps(session.received) for session in model.sessions)


async def test_control_events_and_transfer_from_any_instance(line: Line) -> None:
    events: dict[str, list[dict[str, Any]]] = {each.name: [] for each in line.instances}
    watchers = [asyncio.create_task(collect_events(line.http, each.url, events[each.name])) for each in line.instances]
    try:
        async with caller(line) as call:
            await greeted(call)
            a = await line.owner(call.call_sid)
            b = line.other(a)
            sid = call.call_sid
            # /api/events on B shows A's call, tagged with A
            await wait_until(
                lambda: any(e.get("call_sid") == sid and e.get("instance") == a.name for e in events[b.name]), WAIT
            )
            # say posted to B is spoken in A's call
            asked = time.perf_counter()
            said = await line.http.post(
                f"{b.url}/api/calls/{sid}/say", json={"text": "Your table is ready."}, headers=AUTH
            )
            figure("say via the other instance, ms", round((time.perf_counter() - asked) * 1000, 1))
            assert said.status_code == 202, said.text
            await wait_until(lambda: model_was_told(line.model, "Your table is ready."), WAIT)
            unknown = await line.http.post(f"{b.url}/api/calls/{new_sid('CA')}/say", json={"text": "x"}, headers=AUTH)
            assert unknown.status_code == 404
            # a transfer decided on A (posted to B) is <Dial>ed by whichever instance the action reaches
            moved = await line.http.post(f"{b.url}/api/calls/{sid}/transfer", json={"to": "+15551230001"}, headers=AUTH)
            assert moved.status_code == 202, moved.text
            after = await call.wait_after_stream(timeout=WAIT)
            assert any(isinstance(verb, Dial) and verb.number == "+15551230001" for verb in after.verbs), after
            form = webhook_params(
                account_sid=call.account_sid, call_sid=sid, from_number=call.from_number, to_number=call.to_number,
                call_status="in-progress",
            )  # fmt: skip
            for each in (a, b):  # B's answer (and A's) to the same <Connect action> request
                url = line.proxy + "/twilio/stream-ended"
                response = await post_webhook(url, form, validator=RequestValidator(TEST_AUTH_TOKEN), via=each.url)
                assert "<Dial" in response.text and "+15551230001" in response.text, (each.name, response.text)
            figure("call owner", a.name)
            figure("events of A's call seen on B", sum(e.get("call_sid") == sid for e in events[b.name]))
    finally:
        for watcher in watchers:
            watcher.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)


async def test_replayed_webhook_and_a_stream_on_the_other_instance(line: Line) -> None:
    a, b = line.instances
    validator = RequestValidator(TEST_AUTH_TOKEN)
    sid = new_sid("CA")
    form = webhook_params(account_sid=new_sid("AC"), call_sid=sid, from_number="+15551234567", to_number="+15557654321")
    voice = line.proxy + "/twilio/voice"  # signed for the public URL, sent to one instance
    first = await post_webhook(voice, form, validator=validator, via=a.url)
    assert "<Stream" in first.text
    await wait_until(lambda: len(line.model.sessions) == 1, WAIT)  # A's pre-warm
    replayed = await post_webhook(voice, form, validator=validator, via=b.url)
    assert "<Stream" not in replayed.text
    await wait_until(lambda: b.logged("webhook_replayed"), WAIT)
    assert len(line.model.sessions) == 1 and line.model.connection_attempts == 1  # no second session
    figure("model sessions after a replay on B", len(line.model.sessions))

    # a stream landing on B releases A's pre-warm at once
    async with FakeTwilioCaller(
        a.url, auth_token=TEST_AUTH_TOKEN, speed=FAST, public_base_url=line.proxy, stream_via=b.url
    ) as call:
        await greeted(call)
        prewarmed = line.model.sessions[1]
        released = time.perf_counter()
        await wait_until(lambda: prewarmed.closed, WAIT)
        figure(
            "pre-warm on A released after the stream started on B, ms", round((time.perf_counter() - released) * 1000)
        )
        assert (await line.owner(call.call_sid)).name == b.name
        assert [e["released"] for e in b.logged("prewarm_release")] == [True]
        await call.hangup()


async def test_sigterm_drains_with_a_goodbye_and_new_calls_go_to_the_other(line: Line) -> None:
    async with caller(line) as first:
        await greeted(first)
        a = await line.owner(first.call_sid)
        b = line.other(a)
        a.process.send_signal(signal.SIGTERM)
        async with httpx.AsyncClient(timeout=5) as http:
            await wait_until(lambda: _status(http, a.url + "/readyz", 503), WAIT)
        async with caller(line) as second:  # the proxy saw /readyz fail: B serves it
            await greeted(second)
            assert (await line.owner(second.call_sid, via=b.url)).name == b.name
            await first.wait_closed(timeout=WAIT + DRAIN_SECONDS)
            assert await asyncio.wait_for(a.process.wait(), WAIT) == 0
            ended = [e for e in a.logged("call_ended") if e.get("call_sid") == first.call_sid]
            assert ended and "shutting down" in ended[0]["reason"], ended
            assert line.model.sessions and model_was_told(line.model, "The call is ending now")  # the goodbye
            figure("first call's audio heard, ms", len(first.played) // 8)
            await second.hangup()


async def _status(http: httpx.AsyncClient, url: str, status: int) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return (await http.get(url)).status_code == status
    return False


async def test_kill_9_mid_call_resumes_on_the_other_with_the_conversation(line: Line) -> None:
    async with caller(line, follow_connect=True) as call:
        await greeted(call)
        a = await line.owner(call.call_sid)
        b = line.other(a)
        await call.say("caller_book_table")
        await wait_until(lambda: len(a.logged("transcript")) >= 2, WAIT)  # the greeting and the caller's turn
        await asyncio.sleep(COMMIT_WINDOW_SECONDS)
        sessions_before = len(line.model.sessions)
        a.process.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        assert await asyncio.wait_for(a.process.wait(), WAIT) == -signal.SIGKILL
        await call.wait_until(lambda: call.streams == 2, timeout=WAIT)
        figure("kill -9 to the resumed stream, s", round(time.perf_counter() - killed, 2))
        resumed = await wait_until(lambda: line.model.sessions[sessions_before:] or None, WAIT)
        assert resumed is not None
        heard = len(call.played)
        await call.wait_until(lambda: len(call.played) >= heard + len(GREETING) // 2, timeout=WAIT)  # the resume line
        assert any("Sorry, we were cut off" in json.dumps(session.received) for session in resumed)
        assert any(FIXTURE_TEXTS["caller_book_table"] in json.dumps(s.received) for s in resumed)  # the context
        assert (await line.owner(call.call_sid, via=b.url)).name == b.name
        heard = len(call.played)
        await call.say("caller_transfer")
        await call.wait_until(lambda: len(call.played) > heard + len(GREETING) // 2, timeout=WAIT)  # answered
        figure("streams of the call", call.streams)
        figure("audio heard after the resume, ms", (len(call.played) - heard) // 8)
        await call.hangup()


async def test_resumes_are_bounded_then_the_caller_hears_the_apology(line: Line, schema_url: str) -> None:
    from voiceagent.line.postgres import PostgresState

    sid = new_sid("CA")
    ghost = PostgresState(schema_url, "ghost:8080")  # an instance that owned the call and died
    await ghost.start()
    try:
        assert await ghost.own(sid) is None
    finally:
        await ghost.stop()
    form = webhook_params(
        account_sid=new_sid("AC"), call_sid=sid, from_number="+15551234567", to_number="+15557654321",
        call_status="in-progress",
    )  # fmt: skip
    answers = []
    for each in (*line.instances, line.instances[0]):  # VOICEAGENT_MAX_RESUMES=2 (the default), then one more
        response = await post_webhook(
            line.proxy + "/twilio/stream-ended", form, validator=RequestValidator(TEST_AUTH_TOKEN), via=each.url
        )
        answers.append(response.text)
    assert ["<Stream" in text for text in answers] == [True, True, False], answers
    assert "<Say" in answers[-1] and "<Hangup" in answers[-1]
    figure("answers to a lost call's action", ["resume", "resume", "apology"])


def used_by_a_stream(session: Any) -> bool:
    """The caller's audio reached this model session (a pre-warm released unused never gets any)."""
    appended = "input_audio_buffer.append"
    return any(isinstance(event, dict) and event.get("type") == appended for event in session.received)


async def test_round_robin_streams_reach_the_instance_that_prewarmed(line: Line) -> None:
    """Round robin spreads the webhooks; each TwiML's stream URL names the instance that answered and
    pre-warmed, and haproxy's ``use-server`` rule takes the stream there: no session opened twice."""
    calls = 3  # odd: without the rule, round robin would send streams elsewhere than their webhooks
    owners: list[str] = []

    async def one_call() -> None:
        async with caller(line) as call:
            await greeted(call)
            owner = await line.owner(call.call_sid, via=line.instances[0].url)  # not through the round robin
            assert call.stream_url is not None and f"/instances/{owner.name}/twilio/media" in call.stream_url
            owners.append(owner.name)
            await call.hangup()

    await asyncio.gather(*(one_call() for _ in range(calls)))
    await wait_until(lambda: all(session.closed for session in line.model.sessions), WAIT)
    sessions = line.model.sessions
    assert len(sessions) == calls and line.model.connection_attempts == calls  # one model session per call
    assert all(used_by_a_stream(session) for session in sessions)  # none released unused
    assert not any(each.logged("prewarm_release") for each in line.instances)
    assert set(owners) == {each.name for each in line.instances}  # the webhooks were spread (round robin)
    figure("model sessions per call through round robin", len(sessions) / calls)
    figure("calls per instance", {name: owners.count(name) for name in sorted(set(owners))})
