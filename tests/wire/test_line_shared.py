"""The line's shared state and bus, both backends: in process (one instance) and PostgreSQL (several).

The PostgreSQL variants run on a schema of their own in the server ``VOICEAGENT_TEST_POSTGRES_URL``
names (``.ci/postgres.sh``); without it they are skipped, and say so.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from voiceagent.call import EndCall, EndReason, Farewell
from voiceagent.line.node import LineNode, line_node
from voiceagent.store.backend import connect, migrate
from voiceagent.store.settings import RecordsSettings

POSTGRES_URL = os.environ.get("VOICEAGENT_TEST_POSTGRES_URL")
SID = "CA" + "1" * 32


@pytest.fixture(params=["local", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "local":
        yield None
        return
    if not POSTGRES_URL:
        pytest.skip('PostgreSQL variant NOT RUN: VOICEAGENT_TEST_POSTGRES_URL is not set (eval "$(.ci/postgres.sh)")')
    import psycopg

    schema = f"l_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + f"options=-csearch_path%3D{schema}"
    connection = connect(RecordsSettings.model_validate({"database_url": url}))
    migrate(connection)
    connection.execute("INSERT INTO instances (instance, started_at, last_seen) VALUES ('a', 0, 1e12), ('b', 0, 1e12)")
    connection.close()
    try:
        yield url
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
async def node(database_url: str | None) -> AsyncIterator[LineNode]:
    started = line_node("a", database_url)
    await started.start()
    yield started
    await started.stop()


async def test_owners_ends_and_single_use_keys(node: LineNode, database_url: str | None) -> None:
    state = node.state
    assert state.shared is (database_url is not None)
    assert await state.owner_of(SID) is None
    assert await state.own(SID) is None
    assert await state.owner_of(SID) == "a"
    assert await state.end_of(SID) is None
    end = EndCall(EndReason.AGENT_TRANSFERRED, "transferred", Farewell.TRANSFER, transfer_to="+15551230001")
    await state.record_end(SID, end)
    assert await state.owner_of(SID) is None  # an ended call is owned by nobody
    assert await state.end_of(SID) == end
    assert await state.first_use("webhook:" + SID, 60.0)
    assert not await state.first_use("webhook:" + SID, 60.0)
    assert await state.first_use("token:x", 60.0)
    assert [await state.resumed(SID, 600.0) for _ in range(3)] == [1, 2, 3]
    assert "a" in await state.instances()
    await state.forget_older_than(0.0)  # housekeeping (in process: bounded by count instead)
    if database_url is not None:
        assert await state.end_of(SID) is None
        assert not await state.first_use("token:x", 60.0)  # not expired yet: still remembered


async def test_request_and_reply_between_instances(node: LineNode, database_url: str | None) -> None:
    if database_url is None:
        other = node  # one instance: the bus is a loopback
    else:
        other = line_node("b", database_url)
        await other.start()
        assert await other.state.own(SID) is None
        assert await node.state.own(SID) == "b"  # the stream moved: the earlier owner is named
    seen: list[tuple[str, dict[str, Any]]] = []
    arrived = asyncio.Event()

    def on_event(kind: str, data: dict[str, Any]) -> None:
        seen.append((kind, data))
        arrived.set()

    node.on_event = on_event

    async def control(body: dict[str, Any]) -> dict[str, Any]:
        return {"status": 202, "body": {"said": body["text"]}}

    other.answer("control", control)
    try:
        answer = await node.request(other.instance, "control", {"text": "hello"})
        assert answer is not None
        assert answer["status"] == 202
        assert answer["body"] == {"said": "hello"}
        assert await node.request("nobody-there", "control", {"text": "x"}, timeout=0.3) is None
        if other is not node:
            await other.publish("utterance", {"call_sid": SID, "text": "hi"})
            await asyncio.wait_for(arrived.wait(), 5)
            assert seen == [("utterance", {"call_sid": SID, "text": "hi", "instance": "b"})]
            # a message longer than NOTIFY's 8000 bytes arrives whole, in pieces
            arrived.clear()
            long = "é" * 20_000
            await other.publish("utterance", {"call_sid": SID, "text": long})
            await asyncio.wait_for(arrived.wait(), 5)
            assert seen[-1] == ("utterance", {"call_sid": SID, "text": long, "instance": "b"})
            # and one that does not compress below the limit, in several pieces
            arrived.clear()
            noise = os.urandom(16_000).hex()
            await other.publish("utterance", {"call_sid": SID, "text": noise})
            await asyncio.wait_for(arrived.wait(), 5)
            assert seen[-1] == ("utterance", {"call_sid": SID, "text": noise, "instance": "b"})
    finally:
        if other is not node:
            await other.stop()
