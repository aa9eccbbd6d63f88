"""Structured logging: one JSON object per line on stderr, secrets scrubbed, phone numbers masked.

Use ``CallLog`` to log for one call: every line carries the call SID. Secrets (API keys, auth tokens,
Entra tokens, per-call stream tokens) are never passed to a log call on purpose; the formatter also
scrubs any registered secret and anything shaped like a bearer token, as a second line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any, TextIO

from voiceagent.redaction import REDACTED, Redactor

LOGGER_NAME = "voiceagent"
CONFIGURED_LOGGERS = (
    LOGGER_NAME,
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "websockets",
    "asyncio",  # "Task exception was never retrieved" and friends: JSON too
    "py.warnings",  # warnings.warn(), captured
)
"""Every logger ``configure_logging`` takes over (tests restore them all afterwards)."""
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}")


def mask_number(number: str | None, *, full: bool = False) -> str | None:
    """``+15551234567`` → ``+1555***4567``. Short or odd values keep at most their last two characters."""
    if not number or full:
        return number
    if len(number) >= 10:
        return f"{number[:5]}***{number[-4:]}"
    return "***" + number[-2:]


class JsonFormatter(logging.Formatter):
    """Formats records as JSON lines: ``{"ts", "level", "event", "call_sid", ...fields}``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._redact = Redactor(s for s in secrets if s and len(s) >= 4)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        call_sid = getattr(record, "call_sid", None)
        if call_sid:
            line["call_sid"] = call_sid
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self.scrub(json.dumps(line, ensure_ascii=False, default=str))

    def scrub(self, text: str) -> str:
        text = self._redact(text)  # each secret in every form it can take (plain, JSON-escaped, URL, base64)
        return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)


def configure_logging(
    secrets: Iterable[str] = (), level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Send the ``voiceagent`` logger (and uvicorn's) to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    quiet = {"websockets": logging.WARNING, "asyncio": logging.WARNING}
    levels = {name: level for name in CONFIGURED_LOGGERS} | quiet
    for name, name_level in levels.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(name_level)
        logger.propagate = False
    access = logging.getLogger("uvicorn.access")
    access.filters[:] = [_without_query_string]
    logging.captureWarnings(True)
    return handler


def _without_query_string(record: logging.LogRecord) -> bool:
    """uvicorn's access line carries the full path; a query string can hold phone numbers or tokens."""
    if isinstance(record.args, tuple) and len(record.args) >= 3 and isinstance(record.args[2], str):
        record.args = (*record.args[:2], record.args[2].split("?", 1)[0], *record.args[3:])
    return True


class CallLog:
    """Logs for one call: ``log.info("barge_in", heard_ms=120)``."""

    def __init__(self, call_sid: str | None = None, logger: logging.Logger | None = None) -> None:
        self.call_sid = call_sid
        self._logger = logger or logging.getLogger(LOGGER_NAME)
        self.started = time.monotonic()

    def log(self, level: str, event: str, **fields: Any) -> None:
        self._logger.log(
            logging.getLevelName(level.upper()), event, extra={"call_sid": self.call_sid, "fields": fields}
        )

    def info(self, event: str, **fields: Any) -> None:
        self.log("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self.log("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self.log("error", event, **fields)
