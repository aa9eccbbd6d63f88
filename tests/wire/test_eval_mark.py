"""Eval calls (``voiceagent eval``): marked only by whoever holds the auth token, recorded as such, and kept
out of the operator's history (the API's list, the CLI's list and export, the per-call metrics) unless
asked, and delivered to the call-ended webhook marked — on SQLite, and on PostgreSQL when
``VOICEAGENT_TEST_POSTGRES_URL`` names one."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.helpers import GREETING, WAIT, call_stack, heard_in_full
from tests.wire.test_call_webhook import SECRET, receiver
from tests.wire.test_store import postgres_schema
from voiceagent.eval.run import run_once
from voiceagent.eval.scenario import Scenario
from voiceagent.records_cli import export, list_calls
from voiceagent.store import CallRecord, CallStore, RecordsSettings, StoreError
from voiceagent.store.backend import connect
from voiceagent.store.schema import MIGRATIONS, NEWEST_VERSION
from voiceagent.testing import TEST_AUTH_TOKEN, new_sid, wait_until, webhook_params
from voiceagent.testing.speech import Speech
from voiceagent.testing.twilio_dial import parse_twiml, post_webhook, twiml_of
from voiceagent.twilio.eval_mark import EVAL_PARAMETER, STREAM_PARAMETER, EvalMarks

TOKEN = "operator-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty store: a SQLite file, or a fresh schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'calls.db'}"
        return
    with postgres_schema() as settings:
        yield settings.database_url


def with_store(database_url: str) -> dict[str, str]:
    return {"VOICEAGENT_DATABASE_URL": database_url, "VOICEAGENT_API_TOKEN": TOKEN, "VOICEAGENT_METRICS": "open"}


def api(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10)


async def sids(http: httpx.AsyncClient, query: str = "") -> list[str]:
    response = await http.get(f"/api/calls{query}", headers=AUTH)
    assert response.status_code == 200, response.text
    return [call["call_sid"] for call in response.json()["calls"]]


def sample(metrics: str, name: str) -> float:
    """The sum of a counter's samples in a Prometheus exposition."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(name + "{"))


async def test_an_eval_run_against_a_served_instance_is_marked_and_listed_only_when_asked(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        call_stack(env=with_store(database_url)) as stack,
        httpx.AsyncClient(base_url=stack.app.base_url) as http,
    ):
        async with stack.caller() as caller:  # a real call
            assert await caller.dial(), caller.refusal
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            await caller.hangup()
        real = caller.call_sid
        # `voiceagent eval --url`: the runner's own call, as it places it
        scenario = Scenario.model_validate(
            {"name": "marked", "settle_seconds": 0.5, "caller": {"turns": [{"hang_up": True}]}}
        )
        out = tmp_path / "results"
        out.mkdir()
        result = await run_once(
            scenario, 1, out=out, speech=Speech(), url=stack.app.base_url, auth_token=TEST_AUTH_TOKEN, speed=stack.speed
        )
        assert result.ending == "caller" and not result.problems, result.problems
        assert result.wav is not None and result.wav.stat().st_size > 44  # the run's own files, as before
        assert result.transcript is not None and result.transcript.exists()
        await wait_until(lambda: not stack.app.service.calls and not stack.app.service.recorder.live, WAIT)
        store = stack.app.service.recorder.store
        assert store is not None and await asyncio.to_thread(store.flush, WAIT)

        assert await sids(http) == [real]  # the history: real calls only
        assert await sids(http, "?kind=live") == [real]
        [marked] = await sids(http, "?kind=eval")
        assert marked != real
        assert sorted(await sids(http, "?kind=all")) == sorted([real, marked])
        shown = (await http.get(f"/api/calls/{marked}", headers=AUTH)).json()["call"]
        assert shown["kind"] == "eval" and not shown["in_progress"]  # asked for by its sid: shown, marked
        assert (await http.get(f"/api/calls/{real}", headers=AUTH)).json()["call"]["kind"] == "live"
        bad = await http.get("/api/calls?kind=test", headers=AUTH)
        assert bad.status_code == 400 and "kind must be live, eval or all" in bad.json()["error"]

        # the callers' figures leave it out; it is counted apart
        metrics = (await http.get("/metrics")).text
        assert sample(metrics, "voiceagent_calls_ended_total") == 1
        assert sample(metrics, "voiceagent_eval_calls_ended_total") == 1

    # the CLI reads the same: real calls unless asked
    records = RecordsSettings.from_env({"VOICEAGENT_DATABASE_URL": database_url})
    listed, err = io.StringIO(), io.StringIO()
    assert list_calls(records, out=listed, err=err) == 0, err.getvalue()
    assert real in listed.getvalue() and marked not in listed.getvalue()
    for kind, expected in (("live", {real}), ("eval", {marked}), ("all", {real, marked})):
        exported = io.StringIO()
        assert export(records, format="csv", kind=kind, out=exported, err=err) == 0, err.getvalue()
        rows = list(csv.DictReader(io.StringIO(exported.getvalue())))
        assert {row["call_sid"] for row in rows} == expected
        assert {row["kind"] for row in rows} == {"eval" if sid == marked else "live" for sid in expected}
    assert export(records, format="jsonl", kind="test", out=io.StringIO(), err=err) == 2


async def test_a_mark_not_made_with_the_auth_token_for_this_call_is_ignored(
    database_url: str, caplog_json: Callable[[], list[dict[str, Any]]]
) -> None:
    async with (
        call_stack(env=with_store(database_url)) as stack,
        httpx.AsyncClient(base_url=stack.app.base_url) as http,
    ):
        url = stack.app.base_url + "/twilio/voice"
        validator = RequestValidator(TEST_AUTH_TOKEN)
        forged = {
            "another call's": EvalMarks(TEST_AUTH_TOKEN).sign(new_sid("CA")),
            "another token's": EvalMarks("not-the-auth-token-0123456789abcd").sign("whatever"),
            "made up": "1",
        }
        placed: list[str] = []
        for mark in forged.values():
            call_sid = new_sid("CA")
            form = webhook_params(
                account_sid=new_sid("AC"), call_sid=call_sid, from_number="+15551234567", to_number="+15557654321"
            )
            response = await post_webhook(url, {**form, EVAL_PARAMETER: mark}, validator=validator)
            assert response.status_code == 200
            assert STREAM_PARAMETER not in parse_twiml(twiml_of(response)).parameters  # the stream is not marked
            placed.append(call_sid)
        # unsigned, with a good mark: refused outright, as any unsigned webhook
        call_sid = new_sid("CA")
        form = webhook_params(
            account_sid=new_sid("AC"), call_sid=call_sid, from_number="+15551234567", to_number="+15557654321"
        )
        unsigned = await post_webhook(
            url, {**form, EVAL_PARAMETER: EvalMarks(TEST_AUTH_TOKEN).sign(call_sid)}, validator=None
        )
        assert unsigned.status_code == 403
        store = stack.app.service.recorder.store
        assert store is not None and await asyncio.to_thread(store.flush, WAIT)
        assert sorted(await sids(http)) == sorted(placed)  # recorded as the real calls they claim not to be
        assert await sids(http, "?kind=eval") == []
    ignored = [line for line in caplog_json() if line["event"] == "eval_mark_ignored"]
    assert len(ignored) == 1  # a flood of them logs once a minute


async def test_a_stream_landing_without_the_pre_warmed_call_keeps_its_mark(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line of several instances: the stream can be claimed where the webhook was not; the mark the
    service put in the ``<Stream>`` carries the call's kind there."""
    async with (
        call_stack(env=with_store(database_url)) as stack,
        httpx.AsyncClient(base_url=stack.app.base_url) as http,
    ):
        monkeypatch.setattr(stack.app.service, "prewarm", lambda *args, **kwargs: None)  # the webhook was elsewhere
        async with stack.caller(eval_mark=True) as caller:
            assert await caller.dial(), caller.refusal
            assert caller.parameters[STREAM_PARAMETER] == EvalMarks(TEST_AUTH_TOKEN).sign(caller.call_sid)
            await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
            live = (await http.get("/api/calls/live", headers=AUTH)).json()["calls"]
            assert [(call["call_sid"], call["kind"]) for call in live] == [(caller.call_sid, "eval")]
            await caller.hangup()
        await wait_until(lambda: not stack.app.service.recorder.live, WAIT)
        store = stack.app.service.recorder.store
        assert store is not None and await asyncio.to_thread(store.flush, WAIT)
        assert await sids(http) == [] and await sids(http, "?kind=eval") == [caller.call_sid]


async def test_a_stream_cannot_mark_its_own_call(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``<Stream>``'s ``eval`` parameter counts only as the service wrote it: a stream that brings one of
    its own (made up, or another call's mark) is recorded as the real call it is."""
    async with (
        call_stack(env=with_store(database_url)) as stack,
        httpx.AsyncClient(base_url=stack.app.base_url) as http,
    ):
        monkeypatch.setattr(stack.app.service, "prewarm", lambda *args, **kwargs: None)  # the stream decides
        validator = RequestValidator(TEST_AUTH_TOKEN)
        placed: list[str] = []
        for forged in ("1", EvalMarks(TEST_AUTH_TOKEN).sign(new_sid("CA"))):
            call_sid = new_sid("CA")
            form = webhook_params(
                account_sid=new_sid("AC"), call_sid=call_sid, from_number="+15551234567", to_number="+15557654321"
            )
            answer = twiml_of(
                await post_webhook(stack.app.base_url + "/twilio/voice", form, validator=validator)
            ).decode()
            assert STREAM_PARAMETER not in parse_twiml(answer).parameters
            added = answer.replace("</Stream>", f'<Parameter name="{STREAM_PARAMETER}" value="{forged}" /></Stream>')
            async with stack.caller(call_sid=call_sid) as caller:
                assert await caller.follow(added), caller.refusal
                assert caller.parameters[STREAM_PARAMETER] == forged  # sent, as a tampered stream would
                await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
                await caller.hangup()
            placed.append(call_sid)
        await wait_until(lambda: not stack.app.service.recorder.live, WAIT)
        store = stack.app.service.recorder.store
        assert store is not None and await asyncio.to_thread(store.flush, WAIT)
        assert sorted(await sids(http)) == sorted(placed)
        assert await sids(http, "?kind=eval") == []


def test_a_call_is_marked_once_and_an_older_database_is_migrated_or_named(tmp_path: Path, database_url: str) -> None:
    settings = RecordsSettings.from_env({"VOICEAGENT_DATABASE_URL": database_url})
    connection = connect(settings)
    with connection.transaction():  # a database as the previous version left it, with a call in it
        connection.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)")
        for version, statements in MIGRATIONS[connection.backend]:
            if version < NEWEST_VERSION:
                for statement in statements:
                    connection.execute(statement)
                connection.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (version,))
        connection.execute(
            "INSERT INTO calls (call_sid, instance, started_at) VALUES (?, 'old:1', 1.0)", ("CA" + "0" * 32,)
        )
    connection.close()
    reader = CallStore(settings)
    with pytest.raises(StoreError, match="start the service once"):  # the CLI does not migrate: it says so
        reader.open(write=False)
    reader.close()

    store = CallStore(settings)
    store.open()
    try:
        now = time.time()
        store.call_started(CallRecord(call_sid="CA" + "e" * 32, instance="x", started_at=now, kind="eval"))
        store.call_started(CallRecord(call_sid="CA" + "1" * 32, instance="x", started_at=now + 1))
        # the end written by an instance that knows nothing of the mark (a resumed call) keeps it
        store.call_ended(CallRecord(call_sid="CA" + "e" * 32, instance="y", started_at=now, ended_at=now + 5))
        assert store.flush(WAIT)
        assert [c.call_sid for c in store.list_calls().calls] == ["CA" + "1" * 32, "CA" + "0" * 32]
        [marked] = store.list_calls(kind="eval").calls
        assert (marked.call_sid, marked.kind, marked.ended_at) == ("CA" + "e" * 32, "eval", now + 5)
        assert len(store.list_calls(kind=None).calls) == 3
        assert [c.kind for c in store.iter_calls(kind=None)] == ["live", "eval", "live"]
    finally:
        store.close()


async def test_the_call_ended_webhook_delivers_an_eval_call_marked_as_one(tmp_path: Path) -> None:
    """The receiver (a CRM, a ticket queue) gets every call, as a test of the integration should: an eval
    call says so in ``call.kind``, for the receiver to leave it out of what it does for real callers."""
    async with receiver() as hooks:
        env = {
            "VOICEAGENT_DATABASE_URL": f"sqlite:///{tmp_path / 'calls.db'}",
            "VOICEAGENT_CALL_ENDED_WEBHOOK": hooks.url,
            "VOICEAGENT_WEBHOOK_SECRET": SECRET,
        }
        async with call_stack(env=env) as stack:
            for delivered, marked in enumerate((False, True), 1):
                async with stack.caller(eval_mark=marked) as caller:
                    assert await caller.dial(), caller.refusal
                    await caller.wait_until(heard_in_full(caller, len(GREETING)), timeout=WAIT)
                    await caller.hangup()
                await wait_until(lambda n=delivered: len(hooks.received) == n, WAIT)  # type: ignore[misc]
    kinds = [json.loads(body)["call"]["kind"] for body, _ in hooks.received]
    assert kinds == ["live", "eval"]
