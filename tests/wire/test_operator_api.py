"""The operator API: off without a token, refuses without it (and never logs it), lists and shows calls
from the store, shows live calls and events, and steps into a live call — ``say`` makes the agent speak
in a real end-to-end call (the real app between the fake caller and the fake model)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import GREETING, WAIT, call_stack, event_types, heard_in_full
from voiceagent.api_auth import FailedLogins
from voiceagent.call import Farewell
from voiceagent.store import CallRecord
from voiceagent.store.live import EventHub
from voiceagent.testing import FIXTURE_TEXTS, load_fixture, wait_until

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def records_env(tmp_path: Path) -> Path:
    """This test's directory, which holds its store (``with_records``)."""
    return tmp_path


def with_records(directory: Path, **more: str) -> dict[str, str]:
    """The app's records settings (the test kit reads no others): a store in ``directory``, the API token."""
    return {"VOICEAGENT_DATABASE_URL": f"sqlite:///{directory / 'calls.db'}", "VOICEAGENT_API_TOKEN": TOKEN, **more}


def api(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10)


async def test_without_a_token_the_api_is_off_and_says_so(
    tmp_path: Path, caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    env = {"VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}"}
    async with call_stack(env=env) as stack, api(stack.app.base_url) as http:
        for method, path in (
            ("GET", "/api/calls"),
            ("GET", "/api/events"),
            ("POST", "/api/calls/CA" + "0" * 32 + "/say"),
        ):
            response = await http.request(method, path, headers={"Authorization": "Bearer anything-at-all"})
            assert response.status_code == 404
            assert "VOICEAGENT_API_TOKEN" in response.json()["error"]
        closed = await http.get("/metrics")  # no token set: the public port does not show its figures
        assert closed.status_code == 404 and "VOICEAGENT_METRICS=open" in closed.json()["error"]
    off = [line for line in caplog_json() if line["event"] == "operator_api_off"]
    assert off and "VOICEAGENT_API_TOKEN" in off[0]["detail"]
    async with call_stack(env={**env, "VOICEAGENT_METRICS": "open"}) as stack, api(stack.app.base_url) as http:
        assert (await http.get("/metrics")).status_code == 200  # opened on purpose


async def test_the_api_refuses_without_the_token_and_never_logs_it(
    records_env: Path, caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    sid = "CA" + "1" * 32
    routes = [
        ("GET", "/api/calls"),
        ("GET", "/api/calls/live"),
        ("GET", f"/api/calls/{sid}"),
        ("GET", f"/api/calls/{sid}/transcript.txt"),
        ("GET", f"/api/calls/{sid}/recording.wav"),
        ("GET", "/api/events"),
        ("POST", f"/api/calls/{sid}/say"),
        ("POST", f"/api/calls/{sid}/note"),
        ("POST", f"/api/calls/{sid}/hangup"),
        ("POST", f"/api/calls/{sid}/transfer"),
        ("GET", "/metrics"),  # with a token set, metrics want it too
    ]
    wrong: list[dict[str, str] | dict[bytes, bytes]] = [
        {},
        {"Authorization": TOKEN},  # no scheme
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {b"Authorization": "Bearer é".encode("latin-1")},  # not ASCII: still a plain 401, not a 500
    ]
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        stack.app.service.failed_logins = FailedLogins(limit=10_000)  # this test guesses on purpose, a lot
        for method, path in routes:
            for headers in wrong:
                response = await http.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.json() == {"error": "missing or wrong bearer token"}
                assert response.headers["www-authenticate"].startswith("Bearer")
        response = await http.get("/api/calls", headers=AUTH)
        assert response.status_code == 200 and response.json() == {"calls": [], "next_cursor": None}
        assert (await http.get("/metrics", headers=AUTH)).status_code == 200
    assert any(line["event"] == "operator_api_on" for line in caplog_json())
    assert TOKEN not in caplog_json.text()  # type: ignore[attr-defined]
    assert TOKEN[:-1] not in caplog_json.text()  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def listening(http: httpx.AsyncClient) -> AsyncIterator[list[tuple[str, dict[str, Any]]]]:
    """Server-sent events from /api/events, collected as (event, data) while the block runs."""
    received: list[tuple[str, dict[str, Any]]] = []
    connected = asyncio.Event()

    async def read() -> None:
        async with http.stream("GET", "/api/events", headers=AUTH, timeout=None) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            connected.set()
            kind = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: ") and kind is not None:
                    received.append((kind, json.loads(line[len("data: ") :])))

    task = asyncio.create_task(read())
    await asyncio.wait_for(connected.wait(), WAIT)
    try:
        yield received
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_say_makes_the_agent_speak_in_a_live_call_and_the_operator_sees_it_all(records_env: Path) -> None:
    async with (
        call_stack(env=with_records(records_env), replies=("agent_goodbye",)) as stack,
        api(stack.app.base_url) as http,
    ):
        async with listening(http) as events, stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            sid = caller.call_sid
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            [session] = stack.model.sessions
            await stack.model.wait_for(lambda: not session.response_live, timeout=WAIT)

            live = (await http.get("/api/calls/live", headers=AUTH)).json()["calls"]
            assert [(call["call_sid"], call["phase"], call["in_progress"]) for call in live] == [(sid, "in_call", True)]
            assert live[0]["from_number"] == "+1555***4567"

            # the agent says what the operator typed: one response, asked for in those words, heard in full
            text = "Your table for two is confirmed for eight o'clock."
            response = await http.post(f"/api/calls/{sid}/say", headers=AUTH, json={"text": text})
            assert response.status_code == 202, response.text
            creates = await stack.model.wait_for(
                lambda: event_types(session.received, "response.create")[1:], WAIT
            )  # the first asked for the greeting
            assert len(creates) == 1 and text in json.dumps(creates[0])
            spoken = load_fixture("agent_goodbye")  # what the fake model says to any response.create
            await caller.wait_until(heard_in_full(caller, len(GREETING) + len(spoken)), timeout=WAIT)
            assert bytes(caller.played) == GREETING + spoken

            # a note reaches the model as context, and nobody speaks
            response = await http.post(f"/api/calls/{sid}/note", headers=AUTH, json={"text": "VIP guest"})
            assert response.status_code == 202
            await stack.model.wait_for(
                lambda: any(
                    "VIP guest" in json.dumps(e) for e in event_types(session.received, "conversation.item.create")
                ),
                WAIT,
            )
            assert len(event_types(session.received, "response.create")) == 2  # the greeting's and say's

            # bad requests are refused with a reason
            for body, problem in (({"text": ""}, "non-empty"), ({"words": "hi"}, "non-empty"), ([1], "JSON object")):
                response = await http.post(f"/api/calls/{sid}/say", headers=AUTH, json=body)
                assert response.status_code == 400 and problem in response.json()["error"]
            response = await http.post(f"/api/calls/{sid}/transfer", headers=AUTH, json={"to": "5551230001"})
            assert response.status_code == 400 and "E.164" in response.json()["error"]

            # the record while the call goes on: in progress, with the lines so far
            shown = (await http.get(f"/api/calls/{sid}", headers=AUTH)).json()
            assert shown["call"]["in_progress"] and shown["call"]["answered_at"] is not None
            said = [(line["role"], line["text"]) for line in shown["transcript"]]
            assert said == [("agent", FIXTURE_TEXTS["agent_greeting"]), ("agent", FIXTURE_TEXTS["agent_goodbye"])]

            response = await http.post(f"/api/calls/{sid}/hangup", headers=AUTH)
            assert response.status_code == 202
            await caller.wait_closed(timeout=WAIT)
        await wait_until(lambda: sid not in stack.app.service.calls, WAIT)
        await wait_until(lambda: any(kind == "call_ended" for kind, _ in events), WAIT)

        # the call is over: actions say so (409), unknown calls are 404
        response = await http.post(f"/api/calls/{sid}/say", headers=AUTH, json={"text": "hello?"})
        assert response.status_code == 409 and "not in progress on this instance" in response.json()["error"]
        for unknown in ("CA" + "f" * 32, "not-a-sid"):
            assert (await http.post(f"/api/calls/{unknown}/hangup", headers=AUTH)).status_code == 404
            assert (await http.get(f"/api/calls/{unknown}", headers=AUTH)).status_code == 404

        store = stack.app.service.recorder.store
        assert store is not None and await asyncio.to_thread(store.flush, WAIT)
        shown = (await http.get(f"/api/calls/{sid}", headers=AUTH)).json()
        assert shown["call"]["end_reason"] == "an operator hung up" and not shown["call"]["in_progress"]
        assert [line["text"] for line in shown["transcript"]][:2] == [
            FIXTURE_TEXTS["agent_greeting"],
            FIXTURE_TEXTS["agent_goodbye"],
        ]
        text_form = (await http.get(f"/api/calls/{sid}/transcript.txt", headers=AUTH)).text
        assert text_form.startswith(f"Call {sid}\nFrom +1555***4567 to +1555***4321\n")
        assert f"agent: {FIXTURE_TEXTS['agent_greeting']}" in text_form and "(an operator hung up)" in text_form
        listed = (await http.get("/api/calls", headers=AUTH)).json()
        assert [call["call_sid"] for call in listed["calls"]] == [sid]
        response = await http.get(f"/api/calls/{sid}/recording.wav", headers=AUTH)
        assert response.status_code == 404 and "recordings are off" in response.json()["error"]

    kinds = [kind for kind, data in events if data.get("call_sid") == sid]
    assert kinds[0] == "call_started" and kinds[-1] == "call_ended"
    assert kinds.count("utterance") == 2 and "call_answered" in kinds
    ended = [data for kind, data in events if kind == "call_ended"]
    assert ended[0]["reason"] == "an operator hung up"


async def test_transfer_hands_the_caller_over_and_the_answer_dials(records_env: Path) -> None:
    env = with_records(records_env, VOICEAGENT_TRANSFER_ALLOW="sip:desk@")
    async with call_stack(env=env) as stack, api(stack.app.base_url) as http:
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            response = await http.post(
                f"/api/calls/{caller.call_sid}/transfer", headers=AUTH, json={"to": "sip:desk@pbx.example.com"}
            )
            assert response.status_code == 202
            await caller.wait_closed(timeout=WAIT)
        end = await wait_until(lambda: stack.app.service.end_of(caller.call_sid), WAIT)
        assert end is not None
        assert end.farewell is Farewell.TRANSFER and end.transfer_to == "sip:desk@pbx.example.com"


async def test_a_call_the_store_knows_but_another_instance_has_is_a_conflict(records_env: Path) -> None:
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        store = stack.app.service.recorder.store
        assert store is not None
        elsewhere = "CA" + "e" * 32
        store.call_started(CallRecord(call_sid=elsewhere, instance="other-host:8080", started_at=time.time()))
        assert await asyncio.to_thread(store.flush, WAIT)
        response = await http.post(f"/api/calls/{elsewhere}/say", headers=AUTH, json={"text": "hello"})
        assert response.status_code == 409 and "another instance" in response.json()["error"]
        shown = (await http.get(f"/api/calls/{elsewhere}", headers=AUTH)).json()
        assert shown["call"]["in_progress"] and shown["call"]["instance"] == "other-host:8080"


async def test_calls_are_paged_with_an_opaque_cursor_and_filtered(records_env: Path) -> None:
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        store = stack.app.service.recorder.store
        assert store is not None
        t0 = time.time() - 3600
        for n in range(7):
            number = "+1555***0001" if n % 2 else "+1555***0002"
            record = CallRecord(call_sid=f"CA{n:032x}", instance="x", started_at=t0 + n, from_number=number)
            store.call_started(record)
        assert await asyncio.to_thread(store.flush, WAIT)
        seen: list[str] = []
        cursor = ""
        for _ in range(10):
            page = (await http.get(f"/api/calls?limit=3&cursor={cursor}", headers=AUTH)).json()
            seen += [call["call_sid"] for call in page["calls"]]
            if page["next_cursor"] is None:
                break
            cursor = page["next_cursor"]
        assert seen == [f"CA{n:032x}" for n in reversed(range(7))]
        # a full number is matched through its masked form; an unencoded + arrives as a space
        for query in ("number=%2B15551230001", "number=+15551230001"):
            found = (await http.get(f"/api/calls?{query}", headers=AUTH)).json()["calls"]
            assert sorted(call["call_sid"] for call in found) == [f"CA{n:032x}" for n in (1, 3, 5)]
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + 5))
        found = (await http.get(f"/api/calls?from={since}", headers=AUTH)).json()["calls"]
        assert [call["call_sid"] for call in found] == [f"CA{n:032x}" for n in (6, 5)]
        for query, problem in (("cursor=garbage", "cursor"), ("limit=0", "limit"), ("from=yesterday", "ISO 8601")):
            response = await http.get(f"/api/calls?{query}", headers=AUTH)
            assert response.status_code == 400 and problem in response.json()["error"]


async def test_a_slow_subscriber_is_dropped_and_the_others_keep_receiving() -> None:
    dropped: list[int] = []
    hub = EventHub(limit=3, on_drop=lambda: dropped.append(1))
    slow, fast = hub.subscribe(), hub.subscribe()
    for n in range(5):
        hub.publish("utterance", {"n": n})
        event = await fast.next(timeout=1)
        assert event is not None and event.data["n"] == n
    assert slow.dropped and dropped == [1] and hub.subscribers == 1
    with pytest.raises(EOFError):
        await slow.next(timeout=1)
    hub.close()
    with pytest.raises(EOFError):
        await fast.next(timeout=1)
    assert hub.subscribe().closed  # after shutdown, a new stream ends at once


async def test_draining_ends_the_event_streams_so_that_the_server_can_exit(records_env: Path) -> None:
    """An open event stream is a request that never finishes: uvicorn would wait for it for ever."""
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        hub = stack.app.service.recorder.events

        async def read() -> list[str]:
            async with http.stream("GET", "/api/events", headers=AUTH, timeout=None) as response:
                return [line async for line in response.aiter_lines()]

        reader = asyncio.create_task(read())
        try:
            await wait_until(lambda: hub.subscribers == 1, WAIT)
            await stack.app.service.drain()  # what SIGTERM does (no calls: at once)
            lines = await asyncio.wait_for(reader, WAIT)
        finally:
            reader.cancel()
        assert lines[0] == "retry: 3000" and hub.subscribers == 0
        response = await http.get("/api/events", headers=AUTH)  # a new stream ends at once, too
        assert response.status_code == 200 and response.text == "retry: 3000\n\n"


async def test_a_recorded_call_has_the_caller_left_and_what_the_caller_heard_right(records_env: Path) -> None:
    import io
    import warnings
    import wave

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

    env = with_records(
        records_env, VOICEAGENT_RECORDINGS="on", VOICEAGENT_RECORDINGS_DIR=str(records_env / "recordings")
    )
    async with call_stack(env=env, replies=("agent_goodbye",)) as stack, api(stack.app.base_url) as http:
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            await caller.wait_until(lambda: len(caller.played) > 1500 * 8, timeout=WAIT)
            await caller.say("caller_interrupt")  # talks over the greeting: the rest of it is cleared
            [clear] = await caller.wait_until(lambda: caller.clears, timeout=WAIT)
            [session] = stack.model.sessions
            await stack.model.wait_for(lambda: len(session.produced) >= 2 and not session.response_live, timeout=WAIT)
            await caller.wait_until(lambda: not caller.pending_marks and caller.buffered_bytes == 0, timeout=WAIT)
            await caller.pause(200)
            await caller.hangup()
        await wait_until(lambda: not stack.app.service.calls, WAIT)
        wav_path = records_env / "recordings" / f"{caller.call_sid}.wav"
        size = 44 + 4 * len(caller.sent_audio)  # the header, and 4 bytes per sample of the caller's timeline
        await wait_until(lambda: wav_path.exists() and wav_path.stat().st_size == size, WAIT)
        response = await http.get(f"/api/calls/{caller.call_sid}/recording.wav", headers=AUTH)
        assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
        unauthorized = await http.get(f"/api/calls/{caller.call_sid}/recording.wav")
        assert unauthorized.status_code == 401

    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        pcm = wav.readframes(wav.getnframes())
    left, right = audioop.tomono(pcm, 2, 1, 0), audioop.tomono(pcm, 2, 0, 1)
    assert left == audioop.ulaw2lin(bytes(caller.sent_audio), 2)  # the caller, to the sample

    # the greeting starts the agent's track (as soon as the model's first audio came: within a second of
    # the stream's start even on a loaded machine) ...
    greeting = audioop.ulaw2lin(GREETING, 2)
    start = right.find(greeting[: 2 * 4000])
    assert 0 <= start <= 2 * 8000, start
    # ... and stops about where the caller stopped hearing it: what was cleared is not in the recording
    heard = clear.played_bytes
    assert right[start : start + 2 * (heard - 400)] == greeting[: 2 * (heard - 400)]
    after_cut = slice(start + 2 * (heard + 1600), start + 2 * (heard + 3200))
    assert audioop.rms(greeting[after_cut.start - start : after_cut.stop - start], 2) > 100  # speech was cut ...
    assert audioop.rms(right[after_cut], 2) == 0  # ... and is not in the recording
    # the answer is in it, whole
    answer = audioop.ulaw2lin(load_fixture("agent_goodbye"), 2)
    assert right.find(answer) > start + 2 * heard


async def test_event_streams_are_capped_so_that_callers_are_always_served(records_env: Path) -> None:
    """Far more streams than the cap: the ones past it are refused with a 503 that says so, and the Twilio
    webhook, the media stream and the health check keep answering."""
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        hub = stack.app.service.recorder.events
        opened: list[httpx.Response] = []
        async with contextlib.AsyncExitStack() as streams:
            for _ in range(hub.max_subscribers + 10):
                request = http.build_request("GET", "/api/events", headers=AUTH, timeout=None)
                opened.append(await streams.enter_async_context(_streaming(http, request)))
            statuses = [response.status_code for response in opened]
            assert statuses.count(200) == hub.max_subscribers and statuses.count(503) == 10
            refused = next(response for response in opened if response.status_code == 503)
            assert "event streams are open already" in json.loads(await refused.aread())["error"]
            assert refused.headers["retry-after"] == "30"
            assert hub.subscribers == hub.max_subscribers
            assert (await http.get("/healthz")).status_code == 200
            async with stack.caller() as caller:
                assert await caller.dial(), caller.refusal  # the webhook answered and the stream opened
                await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
                await caller.hangup()
        await wait_until(lambda: hub.subscribers == 0, WAIT)


@contextlib.asynccontextmanager
async def _streaming(http: httpx.AsyncClient, request: httpx.Request) -> AsyncIterator[httpx.Response]:
    response = await http.send(request, stream=True)
    try:
        yield response
    finally:
        await response.aclose()


async def test_bad_queries_and_bodies_are_a_400_with_a_sentence(records_env: Path) -> None:
    nested = "[" * 4_000 + "]" * 4_000  # within the body limit, past the parser's recursion limit
    cursor = base64.urlsafe_b64encode(nested.encode()).decode()
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        for params, says in (
            ({"limit": "abc"}, "limit must be a whole number from 1 to 500, not 'abc'"),
            ({"limit": "0"}, "limit must be a whole number from 1 to 500"),
            ({"cursor": cursor}, "not a cursor this server gave out"),
        ):
            response = await http.get("/api/calls", params=params, headers=AUTH)
            assert response.status_code == 400 and says in response.json()["error"], response.text
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            response = await http.post(f"/api/calls/{caller.call_sid}/say", content=nested, headers=AUTH)
            await caller.hangup()
        assert response.status_code == 400 and response.json()["error"] == "the body is nested too deeply"


async def test_a_hung_database_is_a_503_and_leaves_the_tools_their_own_threads(
    records_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL stopped by SIGSTOP, as the reader sees it: every read blocks. The API answers 503 with a
    sentence once a read has waited too long (or too many wait), and a sync tool still answers at once."""
    import threading

    from tests import tool_samples
    from voiceagent.store import store as store_module
    from voiceagent.tools import load_toolbox

    monkeypatch.setattr(store_module, "READ_TIMEOUT_SECONDS", 0.5)
    hung = threading.Event()
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        store = stack.app.service.recorder.store
        assert store is not None
        monkeypatch.setattr(store, "get_call", lambda sid: hung.wait(WAIT))
        try:
            sid = "CA" + "3" * 32
            answers = await asyncio.gather(*(http.get(f"/api/calls/{sid}", headers=AUTH) for _ in range(40)))
            assert {response.status_code for response in answers} == {503}
            messages = {response.json()["error"] for response in answers}
            assert any("did not answer within 0.5 s" in message for message in messages), messages
            assert any("reads are waiting" in message for message in messages), messages
            async with load_toolbox(modules=["tests.tool_samples"], env={}, timeout_seconds=10) as box:
                result = await box.run("shout", '{"text": "hi", "times": 2}')
            assert result.ok, result
            assert tool_samples.shout("hi", 2) in result.output
        finally:
            hung.set()


async def test_a_client_guessing_tokens_is_logged_once_and_then_stopped(
    records_env: Path, caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        limit = stack.app.service.failed_logins._limit
        statuses = [
            (await http.get("/api/calls", headers={"Authorization": f"Bearer guess-{n:04d}"})).status_code
            for n in range(limit + 5)
        ]
        assert statuses == [401] * limit + [429] * 5
        right = await http.get("/api/calls", headers=AUTH)  # even the right token waits out the minute
        assert right.status_code == 429 and right.headers["retry-after"] == "60"
    lines = caplog_json()
    assert [line["event"] for line in lines if line["event"].startswith("api_auth")] == [
        "api_auth_failed",
        "api_auth_blocked",
    ]
    assert "guess-" not in caplog_json.text()  # type: ignore[attr-defined]


async def test_a_transfer_goes_only_where_the_operator_said_calls_may_go(records_env: Path) -> None:
    """A leaked token must not buy premium-rate or foreign calls on the line's caller ID (toll fraud)."""
    env = with_records(records_env, VOICEAGENT_TRANSFER_TO="sales=+15551230001", VOICEAGENT_TRANSFER_ALLOW="+4420")
    async with call_stack(env=env) as stack, api(stack.app.base_url) as http:
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            path = f"/api/calls/{caller.call_sid}/transfer"
            for refused in ("+19005550100", "+88213456789", "sip:anyone@evil.example"):
                response = await http.post(path, headers=AUTH, json={"to": refused})
                assert response.status_code == 403, response.text
                assert "not a transfer destination of this line" in response.json()["error"]
            for malformed in ("sip:nul\x00byte@pbx.example.com", "sip:desk@pbx.example.com\r\nX: y"):
                assert (await http.post(path, headers=AUTH, json={"to": malformed})).status_code == 400
            assert stack.app.service.end_of(caller.call_sid) is None  # nothing was dialled
            response = await http.post(path, headers=AUTH, json={"to": "+442079460000"})  # an allowed prefix
            assert response.status_code == 202
            await caller.wait_closed(timeout=WAIT)
        end = await wait_until(lambda: stack.app.service.end_of(caller.call_sid), WAIT)
        assert end is not None and end.transfer_to == "+442079460000"


async def test_says_and_notes_are_rate_limited_per_call(records_env: Path) -> None:
    """3000 says of 2000 characters would keep the agent talking for hours; 1000 notes would fill the
    model's context: past the limit the API answers 429 and nothing more is queued."""
    async with call_stack(env=with_records(records_env)) as stack, api(stack.app.base_url) as http:
        limit = stack.app.service.operator_lines.limit
        async with stack.caller() as caller:
            assert await caller.dial(), caller.refusal
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            for kind in ("note", "say"):
                path = f"/api/calls/{caller.call_sid}/{kind}"
                statuses = [
                    (await http.post(path, headers=AUTH, json={"text": f"line {n}"})).status_code
                    for n in range(limit + 3)
                ]
                assert statuses == [202] * limit + [429] * 3, (kind, statuses)
            [session] = stack.model.sessions
            notes = [e for e in session.received if e.get("type") == "conversation.item.create" and "line " in str(e)]
            assert len(notes) >= limit  # the accepted notes went to the model; the refused ones did not
            assert len(notes) <= 2 * limit
            await caller.hangup()
