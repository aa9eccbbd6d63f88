"""``voiceagent calls list | show SID | export --format jsonl|csv``: call records from the command line.

Reads the store that ``VOICEAGENT_DATABASE_URL`` names (the service need not run, and nothing is
changed: a SQLite file is opened read-only). Needs none of the model or Twilio settings.

    voiceagent calls list --from 2025-11-01 --number +15551234567 --reason "hung up" --limit 20
    voiceagent calls show CA0123…
    voiceagent calls export --format csv --output calls.csv

``list`` and ``export`` show real calls; ``--kind eval`` the calls ``voiceagent eval`` placed, ``--kind all`` both.

Each function returns the command's exit status: 0, 1 (not found), 2 (bad arguments or no store).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from voiceagent.config import ConfigError
from voiceagent.store.backend import StoreError
from voiceagent.store.records import CALL_COLUMNS, call_as_text, iso_time, kind_filter, number_filter, parse_time
from voiceagent.store.settings import RecordsSettings
from voiceagent.store.store import CallStore

__all__ = ["add_calls_command", "export", "list_calls", "run_calls_command", "show_call"]

EXPORT_FORMATS = ("jsonl", "csv")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell that starts so as a formula
CSV_COLUMNS = (*[c for c in CALL_COLUMNS if c != "summary"], "summary", "transcript")


@contextmanager
def _reading(records: RecordsSettings) -> Iterator[CallStore]:
    store = CallStore(records)
    store.open(write=False)
    try:
        yield store
    finally:
        store.close()


def _fail(message: str, err: TextIO) -> int:
    print(f"voiceagent: {message}", file=err)
    return 2


def list_calls(
    records: RecordsSettings,
    *,
    since: str | None = None,
    until: str | None = None,
    number: str | None = None,
    reason: str | None = None,
    kind: str = "live",
    limit: int = 50,
    full_numbers: bool = False,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Calls, newest first: one line each (``--json``: one JSON object each). ``number`` matches the
    caller or the called number, full or masked; ``reason`` a part of the end reason."""
    try:
        window = parse_time("--from", since), parse_time("--to", until)
        with _reading(records) as store:
            page = store.list_calls(
                since=window[0],
                until=window[1],
                numbers=number_filter(number, full=full_numbers),
                reason=reason,
                kind=kind_filter(kind),
                limit=limit,
            )
    except (ValueError, StoreError) as exc:
        return _fail(str(exc), err)
    for call in page.calls:
        if as_json:
            out.write(json.dumps(call.to_json(), ensure_ascii=False) + "\n")
            continue
        duration = "" if call.duration_s is None else f"{call.duration_s:.0f}s"
        reason_text = "(in progress)" if call.in_progress else (call.end_reason or "")
        when = iso_time(call.started_at) or ""
        out.write(
            f"{when[:19].replace('T', ' ')}  {call.call_sid}  {call.from_number or '-':>14} → "
            f"{call.to_number or '-':<14}  {duration:>6}  {reason_text}\n"
        )
    if not as_json and page.next_cursor is not None:
        print(f"(more than {limit}: narrow the search or raise --limit)", file=err)
    return 0


def show_call(
    records: RecordsSettings,
    call_sid: str,
    *,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """One call: its record and transcript, as text (or ``--json``)."""
    try:
        with _reading(records) as store:
            record = store.get_call(call_sid)
            lines = store.transcript(call_sid) if record is not None else []
    except StoreError as exc:
        return _fail(str(exc), err)
    if record is None:
        print(f"voiceagent: no call {call_sid} in the records", file=err)
        return 1
    if as_json:
        document = {"call": record.to_json(), "transcript": [line.to_json() for line in lines]}
        out.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        return 0
    out.write(call_as_text(record, lines))
    figures = {
        name: getattr(record, name)
        for name in ("duration_s", "turns", "barge_ins", "tool_calls", "first_audio_ms", "total_tokens")
        if getattr(record, name) is not None
    }
    if figures:
        out.write("\n" + "  ".join(f"{name}={value}" for name, value in figures.items()) + "\n")
    return 0


def export(
    records: RecordsSettings,
    *,
    format: str = "jsonl",
    kind: str = "live",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Every call with its transcript, newest first. ``jsonl``: one ``{"call", "transcript"}`` object per
    line. ``csv``: one row per call, the summary as JSON and the transcript as ``role: text`` lines."""
    if format not in EXPORT_FORMATS:
        return _fail(f"--format must be one of {', '.join(EXPORT_FORMATS)}", err)
    try:
        wanted = kind_filter(kind)
        with _reading(records) as store:
            writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS) if format == "csv" else None
            if writer is not None:
                writer.writeheader()
            for record in store.iter_calls(kind=wanted):
                lines = store.transcript(record.call_sid)
                if writer is None:
                    document = {"call": record.to_json(), "transcript": [line.to_json() for line in lines]}
                    out.write(json.dumps(document, ensure_ascii=False) + "\n")
                    continue
                row: dict[str, Any] = record.to_json()
                row.pop("in_progress")
                row["summary"] = "" if record.summary is None else json.dumps(record.summary, ensure_ascii=False)
                row["transcript"] = "\n".join(f"{line.role}: {line.text}" for line in lines)
                writer.writerow({column: _inert(value) for column, value in row.items()})
    except (ValueError, StoreError) as exc:
        return _fail(str(exc), err)
    return 0


def _inert(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one that would start a formula (what a caller said, a masked
    ``+1555***4567``) gets a leading ``'`` (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


# ------------------------------------------------------------ the argparse wiring (for voiceagent.cli)


def add_calls_command(commands: Any) -> None:
    """Add ``calls list|show|export`` to ``commands`` (the ``add_subparsers()`` of ``voiceagent``)."""
    calls = commands.add_parser("calls", help="call records: list, show, export (VOICEAGENT_DATABASE_URL)")
    sub = calls.add_subparsers(dest="calls_command", required=True)
    listing = sub.add_parser("list", help="calls, newest first")
    listing.add_argument("--from", dest="since", metavar="TIME", help="started at or after (ISO 8601 or Unix time)")
    listing.add_argument("--to", dest="until", metavar="TIME", help="started before")
    listing.add_argument("--number", help="from or to this number")
    listing.add_argument("--reason", help="a part of the end reason, e.g. 'hung up'")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1-500; default 50)")
    kinds = {"choices": ("live", "eval", "all"), "default": "live"}
    kind_help = "live: real calls (default); eval: those voiceagent eval placed; all: both"
    listing.add_argument("--kind", **kinds, help=kind_help)
    listing.add_argument("--json", action="store_true", help="one JSON object per call")
    show = sub.add_parser("show", help="one call: record and transcript")
    show.add_argument("call_sid", metavar="SID", help="the call's CallSid (CA followed by 32 hex digits)")
    show.add_argument("--json", action="store_true", help="the record and transcript as one JSON object")
    exporting = sub.add_parser("export", help="every call with its transcript")
    exporting.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="jsonl",
        help="jsonl: one {call, transcript} object per line; csv: one row per call (default: jsonl)",
    )
    exporting.add_argument("--output", "-o", metavar="FILE", help="write here instead of standard output")
    exporting.add_argument("--kind", **kinds, help=kind_help)


def run_calls_command(
    args: argparse.Namespace, env: Mapping[str, str], *, out: TextIO = sys.stdout, err: TextIO = sys.stderr
) -> int:
    """Run ``voiceagent calls …`` parsed by ``add_calls_command``; ``env``: the process environment."""
    try:
        records = RecordsSettings.from_env(env)
        full = (env.get("VOICEAGENT_LOG_FULL_NUMBERS") or "").strip().lower() in ("1", "true", "yes", "on")
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", err)
    match args.calls_command:
        case "list":
            return list_calls(
                records,
                since=args.since,
                until=args.until,
                number=args.number,
                reason=args.reason,
                kind=args.kind,
                limit=max(1, min(args.limit, 500)),
                full_numbers=full,
                as_json=args.json,
                out=out,
                err=err,
            )
        case "show":
            return show_call(records, args.call_sid, as_json=args.json, out=out, err=err)
        case "export":
            if args.output:
                with open(args.output, "w", encoding="utf-8", newline="") as file:
                    return export(records, format=args.format, kind=args.kind, out=file, err=err)
            return export(records, format=args.format, kind=args.kind, out=out, err=err)
    return _fail(f"unknown calls command {args.calls_command!r}", err)
