"""The several-instance backend: the shared state in the store's PostgreSQL database, the bus on
``LISTEN``/``NOTIFY`` there — one engine to operate, the one the call records already need.

Tables (migration 2, ``voiceagent.store.schema``): ``line_owners`` (CallSid -> instance, liveness from
the store's ``instances`` heartbeats), ``line_ends``, ``line_keys`` (single-use keys with an expiry),
``line_resumes``. Each instance holds two ``psycopg.AsyncConnection``\\s: one for statements, one that
only listens. A NOTIFY payload is at most 8000 bytes: a longer message (a live view's reply) is
compressed, and if still too long goes in numbered pieces, sent in one transaction (so that they arrive
together and in order) and put together by the listener.

Two channels per instance: the line's (messages to everyone) and its own (messages to it: requests,
replies). An instance is woken only by what is addressed to it, so the others' control traffic (a live
view's reply of several pieces, say) costs it nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
import uuid
import zlib
from typing import Any

from voiceagent.call import EndCall
from voiceagent.line.shared import EVERYONE, Handler, Message, end_from_json, end_to_json
from voiceagent.logs import CallLog
from voiceagent.store.backend import error_kind
from voiceagent.store.store import STALE_SECONDS

__all__ = ["CHANNEL", "PostgresBus", "PostgresState"]

CHANNEL = "voiceagent_line"
MAX_PAYLOAD = 7900  # NOTIFY's limit is 8000 bytes
PIECE_CHARS = 7000  # of a longer message's compressed, base64 form (ASCII)
MAX_MESSAGE_BYTES = 4 * 2**20  # a compressed message that would unpack to more is dropped
MAX_UNFINISHED = 100  # messages whose pieces are still arriving, at most (the oldest go first)
STATEMENT_TIMEOUT_MS = 3000
CONNECT_TIMEOUT_SECONDS = 10


async def _connect(url: str) -> Any:
    import psycopg

    connection = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    await connection.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
    return connection


class PostgresState:
    shared = True

    def __init__(self, url: str, instance: str) -> None:
        self.url = url
        self.instance = instance
        self._db: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._db = await _connect(self.url)

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement; a dropped connection is replaced once."""
        async with self._lock:
            for attempt in (1, 2):
                try:
                    if self._db is None:
                        self._db = await _connect(self.url)
                    cursor = await self._db.execute(sql, params)
                    return list(await cursor.fetchall()) if cursor.description is not None else []
                except Exception as exc:
                    # a dropped connection (a server restart, an admin's pg_terminate_backend: AdminShutdown,
                    # SQLSTATE 57P01) is replaced once; a data error is the caller's
                    if attempt == 2 or error_kind(exc) != "transient":
                        raise
                    with contextlib.suppress(Exception):
                        await self._db.close()
                    self._db = None
        raise AssertionError("unreachable")

    async def own(self, call_sid: str) -> str | None:
        now = time.time()
        rows = await self._rows(
            "WITH before AS (SELECT instance FROM line_owners WHERE call_sid = %s) "
            "INSERT INTO line_owners (call_sid, instance, since) VALUES (%s, %s, %s) "
            "ON CONFLICT (call_sid) DO UPDATE SET instance = excluded.instance, since = excluded.since "
            "RETURNING (SELECT instance FROM before)",
            (call_sid, call_sid, self.instance, now),
        )
        before = rows[0][0] if rows else None
        return None if before in (None, self.instance) else str(before)

    async def owner_of(self, call_sid: str) -> str | None:
        rows = await self._rows("SELECT instance FROM line_owners WHERE call_sid = %s", (call_sid,))
        return str(rows[0][0]) if rows else None

    async def record_end(self, call_sid: str, end: EndCall) -> None:
        await self._rows(
            "WITH gone AS (DELETE FROM line_owners WHERE call_sid = %s AND instance = %s) "
            "INSERT INTO line_ends (call_sid, end_json, at) VALUES (%s, %s, %s) "
            "ON CONFLICT (call_sid) DO UPDATE SET end_json = excluded.end_json, at = excluded.at",
            (call_sid, self.instance, call_sid, json.dumps(end_to_json(end)), time.time()),
        )

    async def end_of(self, call_sid: str) -> EndCall | None:
        rows = await self._rows("SELECT end_json FROM line_ends WHERE call_sid = %s", (call_sid,))
        return end_from_json(json.loads(rows[0][0])) if rows else None

    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        now = time.time()
        rows = await self._rows(
            "INSERT INTO line_keys (key, expires_at) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE line_keys.expires_at < %s "
            "RETURNING 1",
            (key, now + ttl_seconds, now),
        )
        return bool(rows)

    async def resumed(self, call_sid: str, window_seconds: float) -> int:
        now = time.time()
        rows = await self._rows(
            "WITH added AS (INSERT INTO line_resumes (call_sid, at) VALUES (%s, %s)) "
            "SELECT COUNT(*) + 1 FROM line_resumes WHERE call_sid = %s AND at > %s",
            (call_sid, now, call_sid, now - window_seconds),
        )
        return int(rows[0][0])

    async def instances(self) -> list[str]:
        rows = await self._rows(
            "SELECT instance FROM instances WHERE last_seen > %s ORDER BY instance", (time.time() - STALE_SECONDS,)
        )
        names = [str(row[0]) for row in rows]
        return names if self.instance in names else [*names, self.instance]

    async def forget_older_than(self, seconds: float) -> None:
        now = time.time()
        await self._rows("DELETE FROM line_keys WHERE expires_at < %s", (now,))
        await self._rows("DELETE FROM line_ends WHERE at < %s", (now - seconds,))
        await self._rows("DELETE FROM line_resumes WHERE at < %s", (now - seconds,))
        # a call whose instance died and which nobody resumed (the caller hung up meanwhile)
        await self._rows("DELETE FROM line_owners WHERE since < %s", (now - seconds,))


class PostgresBus:
    def __init__(self, url: str, instance: str) -> None:
        self.url = url
        self.instance = instance
        self._listener: Any = None
        self._sender: Any = None
        self._task: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self.channel = CHANNEL

    async def start(self, deliver: Handler) -> None:
        self._listener = await _connect(self.url)
        self._sender = await _connect(self.url)
        cursor = await self._sender.execute("SELECT current_schema()")
        row = await cursor.fetchone()
        schema = str(row[0]) if row and row[0] else "public"
        # one line per schema: databases shared by several lines (tests, staging) keep their buses apart
        self.channel = CHANNEL if schema == "public" else f"{CHANNEL}_{schema}"[:63]
        await self._listen_on(self._listener)
        self._task = asyncio.get_running_loop().create_task(self._listen(deliver), name="line-bus")

    async def _listen(self, deliver: Handler) -> None:
        log = CallLog()
        pieces: dict[str, list[str]] = {}
        while True:
            try:
                async for notify in self._listener.notifies():
                    payload = _assembled(notify.payload, pieces)
                    if payload is None:
                        continue
                    message = _parse(payload)
                    if message is None or message.to not in (self.instance, EVERYONE):
                        continue
                    try:
                        await deliver(message)
                    except Exception as exc:  # one bad message never stops the bus
                        log.warning("line_message_failed", kind=message.kind, error=repr(exc)[:200])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("line_bus_lost", error=str(exc)[:200])
                with contextlib.suppress(Exception):
                    await self._listener.close()
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    self._listener = await _connect(self.url)
                    await self._listen_on(self._listener)

    def channel_of(self, instance: str) -> str:
        """``instance``'s own channel (a hash: instance names hold characters channels may not)."""
        return f"{self.channel[:50]}_{hashlib.sha256(instance.encode()).hexdigest()[:12]}"

    async def _listen_on(self, listener: Any) -> None:
        await listener.execute(f'LISTEN "{self.channel}"')
        await listener.execute(f'LISTEN "{self.channel_of(self.instance)}"')

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for connection in (self._listener, self._sender):
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()

    async def send(self, message: Message) -> None:
        payload = json.dumps(
            {"to": message.to, "from": message.sender, "kind": message.kind, "body": message.body},
            separators=(",", ":"),
        )
        payloads = [payload] if len(payload.encode()) <= MAX_PAYLOAD else _packed(payload)
        channel = self.channel if message.to == EVERYONE else self.channel_of(message.to)
        async with self._send_lock:
            try:
                await self._notify(channel, payloads)
            except Exception:
                with contextlib.suppress(Exception):
                    await self._sender.close()
                self._sender = None
                await self._notify(channel, payloads)

    async def _notify(self, channel: str, payloads: list[str]) -> None:
        if self._sender is None:
            self._sender = await _connect(self.url)
        async with self._sender.transaction():
            for payload in payloads:
                await self._sender.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def _packed(payload: str) -> list[str]:
    """A message too long for one NOTIFY: compressed (JSON shrinks four- to tenfold), in pieces if need be."""
    packed = base64.b64encode(zlib.compress(payload.encode(), 6)).decode()
    key = uuid.uuid4().hex
    parts = [packed[at : at + PIECE_CHARS] for at in range(0, len(packed), PIECE_CHARS)]
    return [json.dumps({"piece": key, "i": i, "n": len(parts), "data": part}) for i, part in enumerate(parts)]


def _assembled(payload: str, pieces: dict[str, list[str]]) -> str | None:
    """The payload of a whole message, once its last piece has come (pieces of one message arrive in order)."""
    if not payload.startswith('{"piece"'):
        return payload
    try:
        piece = json.loads(payload)
        key, index, count, data = str(piece["piece"]), int(piece["i"]), int(piece["n"]), str(piece["data"])
    except (ValueError, KeyError, TypeError):
        return None
    parts = pieces.setdefault(key, [])
    if index != len(parts):  # a piece missed: the message is lost
        pieces.pop(key, None)
        return None
    parts.append(data)
    while len(pieces) > MAX_UNFINISHED:
        pieces.pop(next(iter(pieces)))
    if len(parts) < count:
        return None
    del pieces[key]
    return _unpacked("".join(parts))


def _unpacked(packed: str) -> str | None:
    try:
        inflater = zlib.decompressobj()
        data = inflater.decompress(base64.b64decode(packed, validate=True), MAX_MESSAGE_BYTES)
        return None if inflater.unconsumed_tail else data.decode()
    except (ValueError, zlib.error):  # binascii.Error and UnicodeDecodeError are ValueErrors
        return None


def _parse(payload: str) -> Message | None:
    try:
        data = json.loads(payload)
        return Message(str(data["to"]), str(data["from"]), str(data["kind"]), dict(data["body"]))
    except (ValueError, KeyError, TypeError):
        return None
