"""The one thread that writes to the store.

The event loop only *enqueues* (a ``SimpleQueue.put``: no lock held across I/O, no database call, never
blocks). The writer takes whatever is queued — up to ``batch_size`` items — and commits it in one
transaction, straight away: under light load every utterance is committed within a few milliseconds of
being spoken; under heavy load batches grow and the transaction count stays low.

A database that is away (down, restarting, locked by another process, its disk full or failing) holds
the batch, retried with back-off for as long as it takes: the queue meanwhile grows, up to
``max_backlog`` items (the memory cap), beyond which new writes are dropped, counted and logged. Only a
batch the database refuses for what it holds (a data error: a constraint, a bad value) is split, so one
bad write loses only itself; a transient error never splits a batch (``error_kind``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voiceagent.logs import CallLog
from voiceagent.store.backend import Connection, error_kind

__all__ = ["Statement", "StoreWriter", "WriteOp", "WriterObserver"]

BATCH_SIZE = 500
MAX_BACKLOG = 100_000
RETRY_FIRST_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str
    params: tuple[Any, ...]
    what: str  # for logs: the kind of write, never its data


WriteOp = Statement | Callable[[Connection], None]
"""A statement, or a function run on the writer's connection inside the batch's transaction."""


class WriterObserver:
    """What the writer reports (the metrics); each method is called on the writer thread."""

    def batch_written(self, size: int, transaction_seconds: float, lag_seconds: float) -> None:
        pass

    def writes_lost(self, count: int, reason: str) -> None:
        pass

    def write_failed(self) -> None:
        pass


class _Barrier:
    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop:
    pass


_Item = tuple[float, WriteOp] | _Barrier | _Stop


class StoreWriter:
    """Writes enqueued ops on its own thread, batched. ``put`` is safe from any thread, and cheap."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        *,
        batch_size: int = BATCH_SIZE,
        max_backlog: int = MAX_BACKLOG,
        observer: WriterObserver | None = None,
        before_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._connect = connect
        self._batch_size = batch_size
        self._max_backlog = max_backlog
        self._observer = observer or WriterObserver()
        self._before_commit = before_commit  # tests: a slow database
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._connection: Connection | None = None
        self._thread: threading.Thread | None = None
        self._give_up_at: float | None = None  # stopping: a database still away by then loses what is queued
        self._log = CallLog()
        self._failing = False
        self._dropping = False  # the backlog reached max_backlog: logged once, until it has room again

    # ------------------------------------------------------------ any thread

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def put(self, op: WriteOp) -> bool:
        """Queue ``op``; False (and counted) if the backlog is full. Never blocks."""
        if self._queue.qsize() >= self._max_backlog:
            self._observer.writes_lost(1, "backlog full")
            if not self._dropping:
                self._dropping = True
                self._log.error("store_backlog_full", max_backlog=self._max_backlog)
            return False
        self._queue.put((time.perf_counter(), op))
        return True

    def start(self, connection: Connection | None = None) -> None:
        """Start the thread (with ``connection`` if one is open already)."""
        self._connection = connection
        self._thread = threading.Thread(target=self._run, name="voiceagent-store-writer", daemon=True)
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Block until everything queued before now is committed (or lost); False on timeout."""
        if not self.running:
            return False
        barrier = _Barrier()
        self._queue.put(barrier)
        return barrier.done.wait(timeout)

    def stop(self, timeout: float) -> bool:
        """Write what is queued (a database that stays away for ``timeout`` loses it), then end the thread."""
        if self._thread is None:
            return True
        self._give_up_at = time.monotonic() + timeout
        self._queue.put(_Stop())
        self._thread.join(timeout + 1.0)
        stopped = not self._thread.is_alive()
        if stopped and self._connection is not None:
            self._connection.close()
            self._connection = None
        return stopped

    # ------------------------------------------------------------ the writer thread

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                return
            batch: list[tuple[float, WriteOp]] = []
            barriers: list[_Barrier] = []
            stop = False
            while True:
                if isinstance(item, _Barrier):
                    barriers.append(item)
                elif isinstance(item, _Stop):
                    stop = True
                    break
                else:
                    batch.append(item)
                if len(batch) >= self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._write(batch)
                if self._dropping and self._queue.qsize() < self._max_backlog // 2:
                    self._dropping = False
                    self._log.info("store_backlog_has_room", backlog=self._queue.qsize())
            for barrier in barriers:
                barrier.done.set()
            if stop:
                return

    def _write(self, batch: list[tuple[float, WriteOp]]) -> None:
        delay = RETRY_FIRST_SECONDS
        attempts = 0
        while True:
            attempts += 1
            error = self._try(batch)
            if error is None:
                if self._failing:
                    self._failing = False
                    self._log.info("store_recovered", attempts=attempts)
                return
            self._observer.write_failed()
            kind = error_kind(error)
            if not self._failing:
                self._failing = True
                self._log.error(
                    "store_write_failed", error=_described(error), kind=kind, batch=len(batch), backlog=self.backlog
                )
            refused = kind == "data" or (kind == "unknown" and attempts >= 2 and self._database_answers())
            if refused:
                self._one_by_one(batch)  # the database is there but refuses this batch: isolate the bad write
                self._failing = False
                return
            if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                self._observer.writes_lost(len(batch), "database unavailable at shutdown")
                self._log.error("store_writes_lost", count=len(batch), reason="database unavailable at shutdown")
                return
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def _try(self, batch: list[tuple[float, WriteOp]]) -> Exception | None:
        """Commit ``batch`` in one transaction; None, or what went wrong."""
        try:
            connection = self._connection or self._connect()
            self._connection = connection
            started = time.perf_counter()
            with connection.transaction():
                for _, op in batch:
                    if isinstance(op, Statement):
                        connection.execute(op.sql, op.params)
                    else:
                        op(connection)
                if self._before_commit is not None:
                    self._before_commit(len(batch))
            done = time.perf_counter()
        except Exception as exc:
            self._discard_connection()
            return exc
        self._observer.batch_written(len(batch), done - started, done - batch[0][0])
        return None

    def _one_by_one(self, batch: list[tuple[float, WriteOp]]) -> None:
        for item in batch:
            error = self._try([item])
            if error is not None:
                op = item[1]
                what = op.what if isinstance(op, Statement) else getattr(op, "__name__", "job")
                self._observer.writes_lost(1, "refused by the database")
                self._log.error("store_write_refused", what=what, error=_described(error))

    def _database_answers(self) -> bool:
        try:
            connection = self._connection or self._connect()
            self._connection = connection
            connection.query("SELECT 1 AS ok")
            return True
        except Exception:
            self._discard_connection()
            return False

    def _discard_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:
                pass
            self._connection = None


def _described(error: Exception) -> str:
    """What went wrong, safe to log: the driver's message names tables and constraints, never the data."""
    return f"{type(error).__name__}: {str(error).strip()[:300]}"
