"""What the store keeps: one row per call, one row per transcript line, and their JSON shape.

The same ``to_json`` serves the operator API, the call-ended webhook and the CLI's exports, so that
all three agree on field names.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from voiceagent.logs import mask_number

__all__ = [
    "CALL_COLUMNS",
    "CALL_KINDS",
    "FIGURES",
    "CallRecord",
    "LineRecord",
    "call_as_text",
    "iso_time",
    "kind_filter",
    "number_filter",
    "parse_time",
]

FIGURES = (
    "turns",
    "barge_ins",
    "truncations",
    "model_sessions",
    "bad_inputs",
    "transcription_failures",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "first_audio_ms",
    "turn_latency_ms_median",
    "turn_latency_ms_max",
)
"""Columns copied from ``EndCall.summary`` (the core's ``call_ended`` figures) when present."""

_TIMES = ("started_at", "answered_at", "ended_at")

CALL_KINDS = ("live", "eval")
"""``live``: a real call. ``eval``: placed by ``voiceagent eval``, out of the history unless asked."""


def iso_time(seconds: float | None) -> str | None:
    """Unix seconds as ISO 8601 in UTC, to the millisecond: ``2025-11-22T08:26:40.123Z``."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class CallRecord:
    call_sid: str
    instance: str
    started_at: float  # the webhook (pre-warm) or the stream, whichever made the call
    stream_sid: str | None = None
    from_number: str | None = None  # masked unless VOICEAGENT_LOG_FULL_NUMBERS
    to_number: str | None = None
    answered_at: float | None = None  # the media stream started
    ended_at: float | None = None
    duration_s: float | None = None
    end_reason: str | None = None
    farewell: str | None = None
    transfer_to: str | None = None
    model: str | None = None
    dialect: str | None = None
    turns: int | None = None
    barge_ins: int | None = None
    truncations: int | None = None
    model_sessions: int | None = None
    tool_calls: int | None = None
    bad_inputs: int | None = None
    transcription_failures: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    first_audio_ms: int | None = None
    turn_latency_ms_median: int | None = None
    turn_latency_ms_max: int | None = None
    summary: dict[str, Any] | None = field(default=None)
    kind: str = "live"  # live | eval (voiceagent.twilio.eval_mark): set when the row is made, never changed

    @property
    def in_progress(self) -> bool:
        return self.ended_at is None

    def db_values(self) -> list[Any]:
        """The row's values in ``CALL_COLUMNS`` order (the summary as JSON text)."""
        values = asdict(self)
        values["summary"] = None if self.summary is None else json.dumps(self.summary, separators=(",", ":"))
        return [values[name] for name in CALL_COLUMNS]

    @classmethod
    def from_db(cls, row: dict[str, Any]) -> CallRecord:
        values = {name: row[name] for name in CALL_COLUMNS}
        raw = values.get("summary")
        values["summary"] = json.loads(raw) if isinstance(raw, str) and raw else None
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """For people and programs: times in ISO 8601 UTC, ``in_progress`` said outright."""
        out = asdict(self)
        for name in _TIMES:
            out[name] = iso_time(out[name])
        out["in_progress"] = self.in_progress
        return out


CALL_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(CallRecord))


@dataclass(frozen=True, slots=True)
class LineRecord:
    seq: int
    at: float  # when the utterance ended (Unix seconds)
    offset_ms: int  # into the call: since the stream started (or since the call did, before that)
    role: str  # caller | agent | tool
    text: str
    interrupted: bool = False
    heard_ms: int | None = None

    @classmethod
    def from_db(cls, row: dict[str, Any]) -> LineRecord:
        return cls(
            seq=int(row["seq"]),
            at=float(row["at"]),
            offset_ms=int(row["offset_ms"]),
            role=str(row["role"]),
            text=str(row["text"]),
            interrupted=bool(row["interrupted"]),
            heard_ms=None if row["heard_ms"] is None else int(row["heard_ms"]),
        )

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = iso_time(self.at)
        return out

    def as_text(self) -> str:
        """``[01:02.3] agent: Certainly… (interrupted, heard 2480 ms)``"""
        minutes, millis = divmod(max(0, self.offset_ms), 60_000)
        stamp = f"{minutes:02d}:{millis / 1000:04.1f}"
        cut = f" (interrupted, heard {self.heard_ms} ms)" if self.interrupted and self.heard_ms is not None else ""
        cut = cut or (" (interrupted)" if self.interrupted else "")
        return f"[{stamp}] {self.role}: {self.text}{cut}"


def call_as_text(record: CallRecord, lines: list[LineRecord]) -> str:
    """A call as people read it: a header, then one line per utterance."""
    ended = (
        f", ended {iso_time(record.ended_at)} ({record.end_reason})" if record.ended_at is not None else ", in progress"
    )
    head = [
        f"Call {record.call_sid}",
        f"From {record.from_number or '?'} to {record.to_number or '?'}",
        f"Started {iso_time(record.started_at)}{ended}",
        "",
    ]
    return "\n".join(head + [line.as_text() for line in lines]) + "\n"


def parse_time(name: str, raw: str | None) -> float | None:
    """Unix seconds, or ISO 8601 (a date, or a date and time; UTC unless it says otherwise)."""
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ValueError(f"{name}={raw[:40]!r} is not a time")
        return seconds
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise ValueError(f"{name}={raw[:40]!r} is neither ISO 8601 nor Unix seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def kind_filter(raw: str | None) -> str | None:
    """The ``kind`` a listing asks for: ``live`` (the default), ``eval``, or ``all`` (None: both)."""
    kind = (raw or "live").strip().lower()
    if kind == "all":
        return None
    if kind not in CALL_KINDS:
        raise ValueError(f"kind must be live, eval or all, not {kind[:20]!r}")
    return kind


def number_filter(raw: str | None, *, full: bool) -> tuple[str, ...]:
    """The forms a number is stored in (as given, and masked unless full numbers are kept)."""
    if raw is None or not raw.strip():
        return ()
    number = raw.strip()
    if raw.startswith(" ") and number.isdigit():
        number = "+" + number  # an unencoded + in a query string arrives as a space
    masked = mask_number(number, full=full) or number
    return tuple(dict.fromkeys((number, masked)))
