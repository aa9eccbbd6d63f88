"""Call records: written by one thread (``StoreWriter``), read by the operator API and the CLI.

Writes (``call_started``, ``line``, ...) only enqueue, so they are safe on the event loop. Reads block:
from async code, run them through ``read`` — on the store's own two threads, each read bounded by
``READ_TIMEOUT_SECONDS`` and at most ``MAX_PENDING_READS`` waiting (``StoreUnavailable`` beyond), so a
database that hangs can never take the event loop's shared thread pool (and the tools on it) down with it.

Calls left open by a process that died (``kill -9``, a crash, a power cut) are closed with the reason
``process ended``: at start-up, those of this instance (same host and port: a restart), and, by any
instance, those of an instance whose heartbeat has gone stale (``STALE_SECONDS``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from voiceagent.store.backend import Connection, StoreError, connect, migrate, require_newest
from voiceagent.store.records import CALL_COLUMNS, CallRecord, LineRecord
from voiceagent.store.settings import RecordsSettings
from voiceagent.store.writer import Statement, StoreWriter, WriterObserver

__all__ = ["PROCESS_ENDED", "CallPage", "CallStore", "StoreError", "StoreUnavailable"]

T = TypeVar("T")
READ_TIMEOUT_SECONDS = 5.0
MAX_PENDING_READS = 8
READ_THREADS = 2
STATEMENT_TIMEOUT_MS = 5000  # PostgreSQL ends a read that runs longer (the reader connection only)


class StoreUnavailable(StoreError):
    """The store did not answer a read in time, or too many reads are waiting for it already."""


PROCESS_ENDED = "process ended"
HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # six missed heartbeats: that instance is gone
RETENTION_CHUNK = 500  # calls deleted per transaction, so that retention never holds the writer for long
MAX_PAGE = 500
# a call's kind is set once, with its row: an end (here, or on the instance a call was resumed on) never unmarks
_UPDATED_AT_END = tuple(c for c in CALL_COLUMNS if c not in ("call_sid", "instance", "started_at", "kind"))
_LINE_COLUMNS = "seq, at, offset_ms, role, text, interrupted, heard_ms"


@dataclass(frozen=True)
class CallPage:
    calls: list[CallRecord]
    next_cursor: str | None  # opaque; None on the last page


def _encode_cursor(record: CallRecord) -> str:
    raw = json.dumps([record.started_at, record.call_sid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_at, call_sid = json.loads(raw)
        if isinstance(started_at, int | float) and isinstance(call_sid, str):
            return float(started_at), call_sid
    except (ValueError, TypeError, binascii.Error, RecursionError):  # RecursionError: 16 000 nested '['
        pass
    raise ValueError("not a cursor this server gave out")


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class CallStore:
    """The store for one app (or one CLI command). ``open()`` before use, ``close()`` after."""

    def __init__(
        self,
        settings: RecordsSettings,
        *,
        observer: WriterObserver | None = None,
        before_commit: Callable[[int], None] | None = None,
        batch_size: int = 500,
    ) -> None:
        self.settings = settings
        self.instance = settings.instance
        self.writer = StoreWriter(
            lambda: connect(settings), observer=observer, before_commit=before_commit, batch_size=batch_size
        )
        self._reader: Connection | None = None
        self._reader_lock = threading.Lock()
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="voiceagent-store-read")
        self._pending_reads = 0
        self._pending_lock = threading.Lock()
        self.closed_at_start = 0  # calls left open by a dead process, closed by open()

    # ------------------------------------------------------------ lifecycle (blocking)

    def open(self, *, write: bool = True) -> None:
        """Connect, migrate, close what a dead predecessor left open, start the writer. ``write=False``:
        reads only (the CLI), nothing changed — not even the schema."""
        if not write:
            reader = connect(self.settings, read_only=True)
            try:
                require_newest(reader)
            except BaseException:
                reader.close()
                raise
            self._reader = reader
            return
        connection = connect(self.settings)
        try:
            migrate(connection)
            now = time.time()
            with connection.transaction():
                self.closed_at_start = _close_orphans(connection, self.instance, now, include_self=True)
                _heartbeat(connection, self.instance, now, starting=True)
        except BaseException:
            connection.close()
            raise
        self.writer.start(connection)
        self._reader = self._connect_reader()

    def _connect_reader(self) -> Connection:
        reader = connect(self.settings)
        if reader.backend == "postgresql":
            reader.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
        return reader

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, say this instance is gone, disconnect."""
        if self.writer.running:
            self.writer.put(Statement("DELETE FROM instances WHERE instance = ?", (self.instance,), "instance gone"))
            self.writer.stop(timeout)
        self._reads.shutdown(wait=False, cancel_futures=True)
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    # ------------------------------------------------------------ reads from async code

    async def read(self, query: Callable[..., T], *args: Any) -> T:
        """``query(*args)`` (one of the blocking reads below) on the store's own threads, bounded in time
        and in how many may wait. ``StoreUnavailable`` when the store does not answer."""
        with self._pending_lock:
            if self._pending_reads >= MAX_PENDING_READS:
                raise StoreUnavailable(f"the store is not answering: {MAX_PENDING_READS} reads are waiting")
            self._pending_reads += 1
        try:
            started: Future[T] = self._reads.submit(query, *args)
        except RuntimeError:  # shut down
            self._read_done(None)
            raise StoreUnavailable("the store is closed") from None
        started.add_done_callback(self._read_done)  # when the thread is really free again, not at the timeout
        try:
            return await asyncio.wait_for(asyncio.wrap_future(started), READ_TIMEOUT_SECONDS)
        except TimeoutError:
            raise StoreUnavailable(f"the store did not answer within {READ_TIMEOUT_SECONDS:g} s") from None

    def _read_done(self, _: object) -> None:
        with self._pending_lock:
            self._pending_reads -= 1

    # ------------------------------------------------------------ writes (never block)

    def call_started(self, record: CallRecord) -> None:
        columns = ", ".join(CALL_COLUMNS)
        marks = ", ".join("?" for _ in CALL_COLUMNS)
        sql = f"INSERT INTO calls ({columns}) VALUES ({marks}) ON CONFLICT (call_sid) DO NOTHING"
        self.writer.put(Statement(sql, tuple(record.db_values()), "call started"))

    def stream_started(self, call_sid: str, stream_sid: str | None, answered_at: float) -> None:
        sql = "UPDATE calls SET stream_sid = ?, answered_at = ? WHERE call_sid = ?"
        self.writer.put(Statement(sql, (stream_sid, answered_at, call_sid), "stream started"))

    def line(self, call_sid: str, line: LineRecord) -> None:
        sql = (
            "INSERT INTO transcript_lines (call_sid, seq, at, offset_ms, role, text, interrupted, heard_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        params = (
            call_sid,
            line.seq,
            line.at,
            line.offset_ms,
            line.role,
            line.text,
            int(line.interrupted),
            line.heard_ms,
        )
        self.writer.put(Statement(sql, params, "transcript line"))

    def call_ended(self, record: CallRecord) -> None:
        """Everything known at the end (it also corrects a row closed too early as ``process ended``)."""
        values = dict(zip(CALL_COLUMNS, record.db_values(), strict=True))
        assignments = ", ".join(f"{name} = ?" for name in _UPDATED_AT_END)
        sql = f"UPDATE calls SET {assignments} WHERE call_sid = ?"
        params = tuple(values[name] for name in _UPDATED_AT_END) + (record.call_sid,)
        self.writer.put(Statement(sql, params, "call ended"))

    def heartbeat(self) -> None:
        """This instance is alive; and close the calls of instances that are not."""
        instance = self.instance

        def heartbeat(connection: Connection) -> None:
            now = time.time()
            _heartbeat(connection, instance, now)
            _close_orphans(connection, instance, now, include_self=False)

        self.writer.put(heartbeat)

    def delete_older_than(self, cutoff: float, on_deleted: Callable[[list[str]], None] | None = None) -> None:
        """Delete calls (and their transcripts) that started before ``cutoff`` and have ended, a chunk per
        transaction; ``on_deleted`` gets each chunk's CallSids (on the writer thread)."""
        writer = self.writer

        def retention(connection: Connection) -> None:
            rows = connection.query(
                "SELECT call_sid FROM calls WHERE started_at < ? AND ended_at IS NOT NULL LIMIT ?",
                (cutoff, RETENTION_CHUNK),
            )
            sids = [str(row["call_sid"]) for row in rows]
            if not sids:
                return
            marks = ", ".join("?" for _ in sids)
            connection.execute(f"DELETE FROM transcript_lines WHERE call_sid IN ({marks})", sids)
            connection.execute(f"DELETE FROM calls WHERE call_sid IN ({marks})", sids)
            if on_deleted is not None:
                on_deleted(sids)
            if len(sids) == RETENTION_CHUNK:
                writer.put(retention)  # more: after whatever else is queued

        writer.put(retention)

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until everything written so far is committed (tests, shutdown)."""
        return self.writer.flush(timeout)

    # ------------------------------------------------------------ reads (blocking)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._reader_lock:
            if self._reader is None:
                raise StoreError("the store is not open")
            try:
                return self._reader.query(sql, params)
            except StoreError:
                raise
            except Exception:
                if self.settings.backend != "postgresql":
                    raise
                # a PostgreSQL connection dropped (server restart, idle timeout): once more, on a new one
                self._reader.close()
                self._reader = self._connect_reader()
                return self._reader.query(sql, params)

    def get_call(self, call_sid: str) -> CallRecord | None:
        rows = self._query(f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE call_sid = ?", (call_sid,))
        return CallRecord.from_db(rows[0]) if rows else None

    def transcript(self, call_sid: str) -> list[LineRecord]:
        rows = self._query(
            f"SELECT {_LINE_COLUMNS} FROM transcript_lines WHERE call_sid = ? ORDER BY seq, id", (call_sid,)
        )
        return [LineRecord.from_db(row) for row in rows]

    def list_calls(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        numbers: tuple[str, ...] = (),
        reason: str | None = None,
        kind: str | None = "live",
        limit: int = 50,
        cursor: str | None = None,
    ) -> CallPage:
        """Newest first. ``numbers``: the call was from or to one of these (as stored: masked unless
        full numbers are kept); ``reason``: a case-insensitive part of the end reason; ``kind``: ``live``
        (real calls, the default), ``eval``, or None for both. ValueError for a cursor not given out here."""
        limit = max(1, min(limit, MAX_PAGE))
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        if until is not None:
            where.append("started_at < ?")
            params.append(until)
        if numbers:
            marks = ", ".join("?" for _ in numbers)
            where.append(f"(from_number IN ({marks}) OR to_number IN ({marks}))")
            params += [*numbers, *numbers]
        if reason:
            where.append("LOWER(end_reason) LIKE ? ESCAPE '\\'")
            params.append(_like(reason))
        if cursor:
            started_at, call_sid = _decode_cursor(cursor)
            where.append("(started_at < ? OR (started_at = ? AND call_sid < ?))")
            params += [started_at, started_at, call_sid]
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {', '.join(CALL_COLUMNS)} FROM calls {clause} ORDER BY started_at DESC, call_sid DESC LIMIT ?"
        rows = self._query(sql, (*params, limit + 1))
        calls = [CallRecord.from_db(row) for row in rows[:limit]]
        more = len(rows) > limit
        return CallPage(calls, _encode_cursor(calls[-1]) if more and calls else None)

    def iter_calls(self, *, kind: str | None = "live", chunk: int = MAX_PAGE) -> Iterator[CallRecord]:
        """Every call of ``kind`` (as ``list_calls``), newest first, a page at a time (exports)."""
        cursor: str | None = None
        while True:
            page = self.list_calls(kind=kind, limit=chunk, cursor=cursor)
            yield from page.calls
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


def _heartbeat(connection: Connection, instance: str, now: float, *, starting: bool = False) -> None:
    if starting:
        connection.execute(
            "INSERT INTO instances (instance, started_at, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (instance) DO UPDATE SET started_at = excluded.started_at, last_seen = excluded.last_seen",
            (instance, now, now),
        )
    else:
        connection.execute(
            "INSERT INTO instances (instance, started_at, last_seen) VALUES (?, ?, ?) "
            "ON CONFLICT (instance) DO UPDATE SET last_seen = excluded.last_seen",
            (instance, now, now),
        )


def _close_orphans(connection: Connection, me: str, now: float, *, include_self: bool) -> int:
    """Close the calls left open by dead instances (and by this instance's predecessor if
    ``include_self``); each ends at the last sign of life: its last line, or its instance's last heartbeat.
    Returns how many were closed."""
    dead: dict[str, float | None] = {}
    for row in connection.query("SELECT instance, last_seen FROM instances"):
        name, seen = str(row["instance"]), float(row["last_seen"])
        if (name == me and include_self) or (name != me and seen < now - STALE_SECONDS):
            dead[name] = seen
    if include_self:
        dead.setdefault(me, None)
    # open calls of an instance with no row at all (removed by hand, or a store written by an old version)
    for orphan in connection.query(
        "SELECT DISTINCT instance FROM calls WHERE ended_at IS NULL AND started_at < ? "
        "AND instance NOT IN (SELECT instance FROM instances)",
        (now - STALE_SECONDS,),
    ):
        dead.setdefault(str(orphan["instance"]), None)
    closed = 0
    for instance, last_seen in dead.items():
        open_calls = connection.query(
            "SELECT c.call_sid, c.started_at, c.answered_at, MAX(t.at) AS last_line FROM calls c "
            "LEFT JOIN transcript_lines t ON t.call_sid = c.call_sid "
            "WHERE c.ended_at IS NULL AND c.instance = ? GROUP BY c.call_sid, c.started_at, c.answered_at",
            (instance,),
        )
        for call in open_calls:
            started = float(call["started_at"])
            answered = None if call["answered_at"] is None else float(call["answered_at"])
            signs = [started, answered, last_seen, None if call["last_line"] is None else float(call["last_line"])]
            ended = min(now, max(sign for sign in signs if sign is not None))
            duration = round(max(0.0, ended - (answered if answered is not None else started)), 3)
            closed += connection.execute(
                "UPDATE calls SET ended_at = ?, duration_s = ?, end_reason = ?, farewell = ? "
                "WHERE call_sid = ? AND ended_at IS NULL",
                (ended, duration, PROCESS_ENDED, "hang_up", call["call_sid"]),
            )
        if instance != me:
            connection.execute("DELETE FROM instances WHERE instance = ?", (instance,))
    return closed
