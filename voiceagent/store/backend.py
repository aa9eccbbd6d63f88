"""One database connection, SQLite or PostgreSQL, behind the few calls the store makes.

SQL is written once with ``?`` placeholders (no literal ``?`` or ``%`` in statements); the PostgreSQL
connection turns them into psycopg's ``%s``. Both connections run in autocommit mode, with explicit
transactions from ``transaction()``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from voiceagent.store.schema import MIGRATIONS, NEWEST_VERSION
from voiceagent.store.settings import RecordsSettings

__all__ = ["Connection", "StoreError", "connect", "error_kind", "migrate", "require_newest"]

SQLITE_BUSY_TIMEOUT_SECONDS = 5.0
SQLITE_PAGE_CACHE_KIB = 512  # per connection; SQLite's default is 2000
POSTGRES_CONNECT_TIMEOUT_SECONDS = 10
MIGRATION_LOCK = 7_205_201_010  # pg_advisory_xact_lock key: one instance migrates at a time

Row = dict[str, Any]


class StoreError(RuntimeError):
    """The store cannot be used (cannot connect, a schema newer than this code, a missing driver)."""


ErrorKind = Literal["transient", "data", "unknown"]

# SQLite result codes (``sqlite3.Error.sqlite_errorname``) that pass once the cause goes away: another
# process holds a lock (a backup, someone in ``sqlite3``), the disk is full or failing, the file is away
_SQLITE_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
)
# PostgreSQL SQLSTATE classes of the same kind: connection exceptions, insufficient resources (53100 disk
# full), operator intervention (an admin shutdown, a cancelled query), a lock not granted, serialisation
_POSTGRES_TRANSIENT_CLASSES = ("08", "53", "57", "58")
_POSTGRES_TRANSIENT_STATES = frozenset({"40001", "40P01", "55P03"})


def error_kind(exc: BaseException) -> ErrorKind:
    """Whether a failed write will pass if tried again (``transient``: keep it and retry), is refused for
    what it holds (``data``: retrying cannot help, only that write is lost), or cannot be told."""
    if isinstance(exc, StoreError | OSError | ConnectionError):
        return "transient"  # cannot connect, or the connection went away
    if isinstance(exc, sqlite3.Error):
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(_SQLITE_TRANSIENT):
            return "transient"
        return "data" if isinstance(exc, sqlite3.IntegrityError | sqlite3.DataError) else "unknown"
    state = getattr(exc, "sqlstate", None)  # psycopg.Error, without importing psycopg here
    if isinstance(state, str) and len(state) == 5:
        if state[:2] in _POSTGRES_TRANSIENT_CLASSES or state in _POSTGRES_TRANSIENT_STATES:
            return "transient"
        return "data" if state[:2] in ("22", "23") else "unknown"
    if type(exc).__module__.startswith("psycopg") and type(exc).__name__ in ("OperationalError", "InterfaceError"):
        return "transient"  # a connection lost mid-statement carries no SQLSTATE
    return "unknown"


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only: transcripts are personal data. SQLite gives the
    ``-wal`` and ``-shm`` files the database file's own permissions."""
    Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


class Connection(Protocol):
    backend: str

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def transaction(self) -> contextlib.AbstractContextManager[None]: ...
    def close(self) -> None: ...


class SqliteConnection:
    backend = "sqlite"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        if not read_only:
            _create_private(path)
        target = f"file:{path}?mode=ro" if read_only else f"file:{path}"
        self._db = sqlite3.connect(
            target, uri=True, isolation_level=None, check_same_thread=False, timeout=SQLITE_BUSY_TIMEOUT_SECONDS
        )
        if not read_only:
            # WAL: readers (the API, the CLI) never wait for the writer. synchronous=NORMAL: a commit is in
            # the WAL file, and so survives the process being killed (not a power cut; FULL would fsync)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        # A small page cache, full within minutes: the store appends and reads back recent rows, the OS
        # keeps the file's pages anyway, and SQLite's default (2 MiB a connection) otherwise fills over
        # the first twenty minutes of a busy line, which reads as a leak (benchmarks/soak.py)
        self._db.execute(f"PRAGMA cache_size=-{SQLITE_PAGE_CACHE_KIB}")
        self._db.execute("PRAGMA foreign_keys=ON")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cursor = self._db.execute(sql, tuple(params))
        names = [column[0] for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, tuple(params)).rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")  # take the write lock now, not half-way through
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk, SQLITE_FULL)
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


@functools.lru_cache(maxsize=256)
def _psycopg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresConnection:
    backend = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise StoreError(
                "VOICEAGENT_DATABASE_URL names PostgreSQL, but psycopg is not installed: "
                "pip install 'voiceagent[postgres]'"
            ) from None
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=POSTGRES_CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as exc:
            # the message names host and port, never the password
            raise StoreError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._db.cursor() as cursor:
            cursor.execute(_psycopg_sql(sql), tuple(params))
            if cursor.description is None:
                return []
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._db.cursor() as cursor:
            cursor.execute(_psycopg_sql(sql), tuple(params))
            return int(cursor.rowcount)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._db.transaction():
            yield

    def close(self) -> None:
        self._db.close()


def connect(settings: RecordsSettings, *, read_only: bool = False) -> Connection:
    """A new connection to the store ``settings`` name. ``read_only`` (SQLite): never creates the file."""
    if settings.backend == "sqlite":
        path = settings.sqlite_path
        if read_only and not Path(path).exists():
            raise StoreError(f"no call records at {path} (VOICEAGENT_DATABASE_URL)")
        try:
            return SqliteConnection(path, read_only=read_only)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite database {path}: {exc}") from None
    return PostgresConnection(settings.database_url)


def migrate(connection: Connection) -> int:
    """Bring the schema to the newest version (one transaction); return the version it is at."""
    with connection.transaction():
        if connection.backend == "postgresql":
            connection.query("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            if connection.backend == "sqlite"
            else "CREATE TABLE IF NOT EXISTS schema_version "
            "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
        )
        [row] = connection.query("SELECT MAX(version) AS version FROM schema_version")
        current = int(row["version"] or 0)
        if current > NEWEST_VERSION:
            raise StoreError(
                f"the database's schema is at version {current}, newer than this voiceagent knows "
                f"({NEWEST_VERSION}): run the newer version, or point VOICEAGENT_DATABASE_URL elsewhere"
            )
        for version, statements in MIGRATIONS[connection.backend]:
            if version <= current:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, time.time()))
            current = version
    return current


def require_newest(connection: Connection) -> None:
    """For a reader that changes nothing (the CLI): StoreError unless the schema is the one this code reads
    (a database the service has not yet migrated says so, rather than failing on a missing column)."""
    try:
        [row] = connection.query("SELECT MAX(version) AS version FROM schema_version")
    except Exception:
        raise StoreError("the database holds no call records schema (VOICEAGENT_DATABASE_URL)") from None
    current = int(row["version"] or 0)
    if current < NEWEST_VERSION:
        raise StoreError(
            f"the database's schema is at version {current}, older than this voiceagent reads "
            f"({NEWEST_VERSION}): start the service once (it migrates the schema), then try again"
        )
