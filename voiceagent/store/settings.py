"""Settings of call records, the operator API, the call-ended webhook and recordings.

Read once at start-up from the environment, like ``voiceagent.config``; every problem names its variable.
"""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from voiceagent.config import ConfigError

__all__ = ["MIN_API_TOKEN_CHARS", "RecordsSettings"]

DEFAULT_DATABASE = "voiceagent.db"
DEFAULT_RECORDINGS_DIR = "recordings"
MIN_API_TOKEN_CHARS = 16  # a bearer token guessable in a weekend is no token
MIN_WEBHOOK_SECRET_CHARS = 16


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


def _database_url(env: Mapping[str, str]) -> str:
    """``sqlite:///relative/or/absolute/path`` or ``postgresql://…``; unset: SQLite at ./voiceagent.db.
    SQLite paths are made absolute here, so that a later ``chdir`` changes nothing."""
    name = "VOICEAGENT_DATABASE_URL"
    raw = _text(env, name)
    if raw is None:
        return f"sqlite:///{Path(DEFAULT_DATABASE).resolve()}"
    scheme = raw.split(":", 1)[0].lower()
    if scheme == "sqlite":
        if not raw.startswith("sqlite:///") or len(raw) <= len("sqlite:///"):
            raise ConfigError(f"{name} must look like sqlite:///path/to/voiceagent.db (three slashes, then a path)")
        path = raw[len("sqlite:///") :]
        if path == ":memory:":
            raise ConfigError(f"{name}: an in-memory SQLite database would lose every call record; name a file")
        return f"sqlite:///{Path(path).resolve()}"
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(raw)
        if not parts.hostname and "host=" not in parts.query:
            raise ConfigError(f"{name} must name a host: postgresql://user:password@host:5432/database")
        return raw
    # never echo the value: it may carry a password
    raise ConfigError(f"{name} must start with sqlite:/// or postgresql:// (found a {scheme or 'schemeless'} URL)")


def _retention_days(env: Mapping[str, str]) -> float | None:
    name = "VOICEAGENT_RETENTION_DAYS"
    raw = _text(env, name)
    if raw is None:
        return None
    try:
        days = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of days") from None
    if not math.isfinite(days) or days <= 0:
        raise ConfigError(f"{name}={raw!r} must be a positive number of days (unset: keep every call)")
    return days


def _secret(env: Mapping[str, str], name: str, minimum: int) -> str | None:
    value = _text(env, name)
    if value is not None and len(value) < minimum:
        raise ConfigError(f"{name} must be at least {minimum} characters (use e.g. `openssl rand -hex 32`)")
    return value


def _webhook(env: Mapping[str, str]) -> str | None:
    name = "VOICEAGENT_CALL_ENDED_WEBHOOK"
    raw = _text(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// URL")
    return raw


def _recordings(env: Mapping[str, str]) -> bool:
    name = "VOICEAGENT_RECORDINGS"
    raw = (_text(env, name) or "off").lower()
    if raw not in ("on", "off"):
        raise ConfigError(f"{name}={raw!r} must be on or off")
    return raw == "on"


def _instance(env: Mapping[str, str]) -> str:
    """Who writes the open call rows: the host and port. A process restarted on the same host and port
    closes the rows its predecessor left open at once; others are closed when its heartbeat goes stale."""
    port = _text(env, "PORT") or "8080"
    return f"{socket.gethostname()}:{port}"


@dataclass(frozen=True)
class RecordsSettings:
    database_url: str = field(repr=False)  # may carry a password
    retention_days: float | None = None  # None: keep every call
    api_token: str | None = field(default=None, repr=False)  # None: the operator API is off
    call_ended_webhook: str | None = field(default=None, repr=False)  # URLs may carry credentials
    webhook_secret: str | None = field(default=None, repr=False)
    recordings: bool = False
    recordings_dir: str = DEFAULT_RECORDINGS_DIR
    instance: str = field(default_factory=lambda: f"{socket.gethostname()}:8080")

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return "sqlite" if self.database_url.startswith("sqlite:") else "postgresql"

    @property
    def sqlite_path(self) -> str:
        return self.database_url[len("sqlite:///") :]

    @classmethod
    def sqlite(cls, path: str | os.PathLike[str], **options: Any) -> RecordsSettings:
        """Settings for a SQLite file (tests, tools)."""
        return cls(database_url=f"sqlite:///{Path(path).resolve()}", **options)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RecordsSettings:
        """Read the ``VOICEAGENT_*`` variables of records; ``ConfigError`` names the one that is wrong."""
        webhook = _webhook(env)
        secret = _secret(env, "VOICEAGENT_WEBHOOK_SECRET", MIN_WEBHOOK_SECRET_CHARS)
        if webhook is not None and secret is None:
            raise ConfigError(
                "VOICEAGENT_WEBHOOK_SECRET is not set: VOICEAGENT_CALL_ENDED_WEBHOOK posts are signed with it "
                "(X-Voiceagent-Signature), so that the receiver can tell them from forgeries"
            )
        recordings = _recordings(env)
        recordings_dir = _text(env, "VOICEAGENT_RECORDINGS_DIR") or DEFAULT_RECORDINGS_DIR
        return cls(
            database_url=_database_url(env),
            retention_days=_retention_days(env),
            api_token=_secret(env, "VOICEAGENT_API_TOKEN", MIN_API_TOKEN_CHARS),
            call_ended_webhook=webhook,
            webhook_secret=secret,
            recordings=recordings,
            recordings_dir=str(Path(recordings_dir).resolve()),
            instance=_instance(env),
        )

    def secrets(self) -> list[str]:
        """What the log formatter must scrub (``configure_logging(secrets=...)``)."""
        found = [s for s in (self.api_token, self.webhook_secret) if s]
        password = urlsplit(self.database_url).password if self.backend == "postgresql" else None
        return found + ([password] if password else [])
