"""Tools for a restaurant's phone line: free tables and bookings for tonight, kept in a SQLite file.

Offered to the agent with ``VOICEAGENT_TOOLS=restaurant_tools`` (and ``PYTHONPATH=examples/restaurant``);
the file is ``$RESTAURANT_DB`` (default ``restaurant.sqlite3`` in the working directory). The functions are
plain ``sqlite3`` code: voiceagent runs a sync tool in a worker thread, so a slow disk never holds up a
call's audio. Each call opens its own connection (a connection must not cross threads), and a booking
takes the database's write lock first, so two callers can never get the same table.

``booking_service.py`` (the HTTP service behind ``tools.json``) changes bookings in the same file.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import closing
from typing import Annotated, Any

from pydantic import Field

from voiceagent.tools import tool

DB_ENV = "RESTAURANT_DB"
DEFAULT_DB = "restaurant.sqlite3"
FIRST_SEATING, LAST_SEATING = 17 * 60, 22 * 60  # minutes after midnight
SITTING = 120  # minutes a table is taken
TABLES = {1: 2, 2: 2, 3: 2, 4: 4, 5: 4, 6: 6, 7: 8}  # table number: seats
MAX_PARTY = max(TABLES.values())
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")

PartySize = Annotated[int, Field(ge=1, le=MAX_PARTY, description="How many people, children included.")]
Time = Annotated[str, "Tonight, 24-hour clock HH:MM, e.g. 19:30 (we seat guests from 17:00 to 22:00)."]


def db_path() -> str:
    return os.environ.get(DB_ENV) or DEFAULT_DB


def connect() -> sqlite3.Connection:
    db = sqlite3.connect(db_path(), timeout=5.0, isolation_level=None)  # transactions are explicit
    db.row_factory = sqlite3.Row
    db.execute(
        "CREATE TABLE IF NOT EXISTS bookings (id INTEGER PRIMARY KEY, name TEXT NOT NULL, phone TEXT,"
        " party_size INTEGER NOT NULL, minutes INTEGER NOT NULL, table_no INTEGER NOT NULL)"
    )
    return db


def minutes(time: str) -> int:
    """``"19:30"`` -> 1170. A ValueError's message reaches the model, which can then ask again."""
    match = _TIME.match(time.strip())
    if match is None:
        raise ValueError(f"the time must be HH:MM on the 24-hour clock, e.g. 19:30, not {time!r}")
    value = int(match[1]) * 60 + int(match[2])
    if not FIRST_SEATING <= value <= LAST_SEATING:
        raise ValueError("we seat guests from 17:00 to 22:00")
    return value


def clock(value: int) -> str:
    return f"{value // 60:02d}:{value % 60:02d}"


def free_tables(db: sqlite3.Connection, party_size: int, at: int, *, ignore_booking: int | None = None) -> list[int]:
    """Tables that seat the party and are not taken within a sitting of ``at``, smallest first."""
    taken = {
        row["table_no"]
        for row in db.execute(
            "SELECT table_no FROM bookings WHERE ABS(minutes - ?) < ? AND id IS NOT ?", (at, SITTING, ignore_booking)
        )
    }
    fitting = [table for table, seats in sorted(TABLES.items(), key=lambda item: item[1]) if seats >= party_size]
    return [table for table in fitting if table not in taken]


def other_times(db: sqlite3.Connection, party_size: int, at: int) -> list[str]:
    """Up to three nearby half hours with a table for the party, nearest first."""
    candidates = sorted(range(FIRST_SEATING, LAST_SEATING + 1, 30), key=lambda slot: abs(slot - at))
    return [clock(slot) for slot in candidates if slot != at and free_tables(db, party_size, slot)][:3]


@tool
def check_availability(party_size: PartySize, time: Time) -> dict[str, Any]:
    """Check which tables are free tonight for a party of this size around this time."""
    at = minutes(time)
    with closing(connect()) as db:
        free = free_tables(db, party_size, at)
        return {
            "time": clock(at),
            "party_size": party_size,
            "available": bool(free),
            "free_tables": len(free),
            "other_times": [] if free else other_times(db, party_size, at),
        }


@tool
def book_table(
    name: Annotated[str, Field(min_length=1, max_length=100)],
    party_size: PartySize,
    time: Time,
    phone: str | None = None,
) -> dict[str, Any]:
    """Book a table tonight. Call it only once the caller has confirmed the name, party size and time.

    Args:
        name: The name the booking is under.
        phone: A number to reach the caller, if they gave one.
    """
    at = minutes(time)
    with closing(connect()) as db:
        db.execute("BEGIN IMMEDIATE")  # the write lock: nobody books between our look and our insert
        try:
            free = free_tables(db, party_size, at)
            if not free:
                suggestions = other_times(db, party_size, at)
                db.execute("ROLLBACK")
                return {"booked": False, "reason": "no table is free then", "other_times": suggestions}
            cursor = db.execute(
                "INSERT INTO bookings (name, phone, party_size, minutes, table_no) VALUES (?, ?, ?, ?, ?)",
                (name.strip(), phone, party_size, at, free[0]),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return {"booked": True, "booking_id": cursor.lastrowid, "time": clock(at), "party_size": party_size}


def change_booking(booking_id: int, *, party_size: int | None = None, time: str | None = None) -> dict[str, Any] | None:
    """Move a booking to another time or party size (for booking_service.py; not a tool of its own). ``None``:
    there is no such booking. Raises ValueError when no table fits the change."""
    with closing(connect()) as db:
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT * FROM bookings WHERE id = ?", (booking_id,)).fetchone()
            if row is None:
                db.execute("ROLLBACK")
                return None
            size = party_size if party_size is not None else row["party_size"]
            at = minutes(time) if time is not None else row["minutes"]
            free = free_tables(db, size, at, ignore_booking=booking_id)
            if not free:
                raise ValueError(f"no table for {size} is free at {clock(at)}")
            table = row["table_no"] if row["table_no"] in free else free[0]
            db.execute(
                "UPDATE bookings SET party_size = ?, minutes = ?, table_no = ? WHERE id = ?",
                (size, at, table, booking_id),
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return {"booking_id": booking_id, "name": row["name"], "party_size": size, "time": clock(at)}
