"""The store's schema, as ordered migrations per backend.

A migration is applied once, at start-up, in one transaction with its row in ``schema_version``; a
database already at the newest version is left alone. Never edit a released migration: add the next one.
Each is written once for both backends, with ``{real}``, ``{bigint}`` and ``{serial}`` where their column
types differ (``str.format``: a literal brace is written twice).

Times are Unix seconds (floating point), so that both backends sort and compare them the same way.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "NEWEST_VERSION"]

# Version 1, written once for both backends: the column types that differ are named in _TYPES.
_V1 = (
    """
    CREATE TABLE calls (
        call_sid TEXT PRIMARY KEY,
        stream_sid TEXT,
        from_number TEXT,
        to_number TEXT,
        instance TEXT NOT NULL,
        started_at {real} NOT NULL,
        answered_at {real},
        ended_at {real},
        duration_s {real},
        end_reason TEXT,
        farewell TEXT,
        transfer_to TEXT,
        model TEXT,
        dialect TEXT,
        turns INTEGER,
        barge_ins INTEGER,
        truncations INTEGER,
        model_sessions INTEGER,
        tool_calls INTEGER,
        bad_inputs INTEGER,
        transcription_failures INTEGER,
        input_tokens {bigint},
        output_tokens {bigint},
        total_tokens {bigint},
        first_audio_ms INTEGER,
        turn_latency_ms_median INTEGER,
        turn_latency_ms_max INTEGER,
        summary TEXT
    )
    """,
    "CREATE INDEX calls_newest_first ON calls (started_at DESC, call_sid DESC)",
    "CREATE INDEX calls_open ON calls (instance) WHERE ended_at IS NULL",
    """
    CREATE TABLE transcript_lines (
        id {serial},
        call_sid TEXT NOT NULL REFERENCES calls (call_sid) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at {real} NOT NULL,
        offset_ms INTEGER NOT NULL,
        role TEXT NOT NULL,
        text TEXT NOT NULL,
        interrupted INTEGER NOT NULL DEFAULT 0,
        heard_ms INTEGER
    )
    """,
    "CREATE INDEX transcript_lines_of_call ON transcript_lines (call_sid, seq)",
    """
    CREATE TABLE instances (
        instance TEXT PRIMARY KEY,
        started_at {real} NOT NULL,
        last_seen {real} NOT NULL
    )
    """,
)


# Version 2: what the instances of one line share (voiceagent.line.postgres; SQLite creates the tables too,
# unused: one schema for both backends keeps the migrations simple).
_V2 = (
    "CREATE TABLE line_owners (call_sid TEXT PRIMARY KEY, instance TEXT NOT NULL, since {real} NOT NULL)",
    "CREATE TABLE line_ends (call_sid TEXT PRIMARY KEY, end_json TEXT NOT NULL, at {real} NOT NULL)",
    "CREATE TABLE line_keys (key TEXT PRIMARY KEY, expires_at {real} NOT NULL)",
    "CREATE TABLE line_resumes (call_sid TEXT NOT NULL, at {real} NOT NULL)",
    "CREATE INDEX line_resumes_of_call ON line_resumes (call_sid, at)",
)


# Version 3: call-ended webhook deliveries not yet delivered, so that a restart or an outage longer than
# the retry window loses none (voiceagent.store.outbox).
_V3 = (
    "CREATE TABLE webhook_outbox (delivery_id TEXT PRIMARY KEY, call_sid TEXT NOT NULL, "
    "payload TEXT NOT NULL, created_at {real} NOT NULL)",
)


# Version 4: the call's kind, ``live`` or ``eval`` (a call placed by ``voiceagent eval`` and marked so by
# whoever holds the auth token: voiceagent.twilio.eval_mark), so that the history shows real calls unless
# asked. Rows made before it were all real calls.
_V4 = (
    "ALTER TABLE calls ADD COLUMN kind TEXT NOT NULL DEFAULT 'live'",
    "CREATE INDEX calls_kind_newest_first ON calls (kind, started_at DESC, call_sid DESC)",
)


_TYPES = {
    "sqlite": {"real": "REAL", "bigint": "INTEGER", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgresql": {
        "real": "DOUBLE PRECISION",
        "bigint": "BIGINT",
        "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    },
}


def _for(backend: str, statements: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(statement.format_map(_TYPES[backend]) for statement in statements)


MIGRATIONS: dict[str, list[tuple[int, tuple[str, ...]]]] = {
    backend: [(version, _for(backend, statements)) for version, statements in enumerate((_V1, _V2, _V3, _V4), 1)]
    for backend in _TYPES
}
"""backend -> [(version, statements)], in order."""

NEWEST_VERSION = 4
