"""The store's schema, as ordered migrations per backend.

A migration is applied once, at start-up, in one transaction with its row in ``schema_version``; a
database already at the newest version is left alone. Never edit a released migration: add the next one
(to both backends, with the same number).

Times are Unix seconds (floating point), so that both backends sort and compare them the same way.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS", "NEWEST_VERSION"]

_SQLITE_V1 = (
    """
    CREATE TABLE calls (
        call_sid TEXT PRIMARY KEY,
        stream_sid TEXT,
        from_number TEXT,
        to_number TEXT,
        instance TEXT NOT NULL,
        started_at REAL NOT NULL,
        answered_at REAL,
        ended_at REAL,
        duration_s REAL,
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
        input_tokens INTEGER,
        output_tokens INTEGER,
        total_tokens INTEGER,
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
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        call_sid TEXT NOT NULL REFERENCES calls (call_sid) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
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
        started_at REAL NOT NULL,
        last_seen REAL NOT NULL
    )
    """,
)

_POSTGRES_V1 = (
    """
    CREATE TABLE calls (
        call_sid TEXT PRIMARY KEY,
        stream_sid TEXT,
        from_number TEXT,
        to_number TEXT,
        instance TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        answered_at DOUBLE PRECISION,
        ended_at DOUBLE PRECISION,
        duration_s DOUBLE PRECISION,
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
        input_tokens BIGINT,
        output_tokens BIGINT,
        total_tokens BIGINT,
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
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        call_sid TEXT NOT NULL REFERENCES calls (call_sid) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        at DOUBLE PRECISION NOT NULL,
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
        started_at DOUBLE PRECISION NOT NULL,
        last_seen DOUBLE PRECISION NOT NULL
    )
    """,
)

MIGRATIONS: dict[str, list[tuple[int, tuple[str, ...]]]] = {
    "sqlite": [(1, _SQLITE_V1)],
    "postgresql": [(1, _POSTGRES_V1)],
}
"""backend -> [(version, statements)], in order."""

NEWEST_VERSION = 1
