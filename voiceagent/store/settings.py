"""Settings of call records, the operator API, the call-ended webhook and recordings.

Declared like ``voiceagent.config.Settings`` (which holds them as ``settings.records``), by the same
machinery, so that ``voiceagent calls`` can read them alone, without a model or Twilio configured.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, model_validator

from voiceagent.variables import ConfigError, Variables, one_of, present, problem, read_variables, secret

__all__ = ["MIN_API_TOKEN_CHARS", "RecordsSettings"]

DEFAULT_DATABASE = "sqlite:///./voiceagent.db"
DEFAULT_RECORDINGS_DIR = "recordings"
METRICS_REFUSAL = "{name}={value!r} must be protected or open"
MIN_API_TOKEN_CHARS = 16  # a bearer token guessable in a weekend is no token
MIN_WEBHOOK_SECRET_CHARS = 16


def _database_url(raw: str) -> str:
    """``sqlite:///relative/or/absolute/path`` or ``postgresql://…``. SQLite paths are made absolute here,
    so that a later ``chdir`` changes nothing. The value is never echoed: it may carry a password."""
    name = "VOICEAGENT_DATABASE_URL"
    scheme = raw.split(":", 1)[0].lower()
    if scheme == "sqlite":
        if not raw.startswith("sqlite:///") or len(raw) <= len("sqlite:///"):
            raise problem(f"{name} must look like sqlite:///path/to/voiceagent.db (three slashes, then a path)")
        path = raw[len("sqlite:///") :]
        if path == ":memory:":
            raise problem(f"{name}: an in-memory SQLite database would lose every call record; name a file")
        return f"sqlite:///{Path(path).resolve()}"
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(raw)
        if not parts.hostname and "host=" not in parts.query:
            raise problem(f"{name} must name a host: postgresql://user:password@host:5432/database")
        return raw
    raise problem(f"{name} must start with sqlite:/// or postgresql:// (found a {scheme or 'schemeless'} URL)")


def _webhook(raw: str | None) -> str | None:
    if raw is not None:
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise problem("VOICEAGENT_CALL_ENDED_WEBHOOK must be an http:// or https:// URL")
    return raw


def _retention_days(days: float | None) -> float | None:
    if days is not None and days <= 0:
        raise problem(f"VOICEAGENT_RETENTION_DAYS={days:g} must be a positive number of days (unset: keep every call)")
    return days


class RecordsSettings(Variables):
    database_url: Annotated[str, AfterValidator(_database_url)] = Field(
        DEFAULT_DATABASE,
        alias="VOICEAGENT_DATABASE_URL",
        repr=False,  # may carry a password
        description="sqlite:///path or postgresql://user:pass@host/db",
    )
    retention_days: Annotated[float | None, AfterValidator(_retention_days)] = Field(
        None, alias="VOICEAGENT_RETENTION_DAYS", allow_inf_nan=False, description="delete calls older; unset: keep"
    )
    api_token: Annotated[str | None, secret("VOICEAGENT_API_TOKEN", MIN_API_TOKEN_CHARS)] = Field(
        None, alias="VOICEAGENT_API_TOKEN", repr=False, description="the operator API's bearer token; unset: off"
    )
    metrics: Annotated[str, one_of("VOICEAGENT_METRICS", ("protected", "open"), METRICS_REFUSAL, lower=True)] = Field(
        "protected",
        alias="VOICEAGENT_METRICS",
        description="protected: /metrics wants the API token (closed without one); open: anyone may scrape",
    )
    call_ended_webhook: Annotated[str | None, AfterValidator(_webhook)] = Field(
        None,
        alias="VOICEAGENT_CALL_ENDED_WEBHOOK",
        repr=False,
        description="POST each call here",  # may hold creds
    )
    webhook_secret: Annotated[str | None, secret("VOICEAGENT_WEBHOOK_SECRET", MIN_WEBHOOK_SECRET_CHARS)] = Field(
        None, alias="VOICEAGENT_WEBHOOK_SECRET", repr=False, description="signs each webhook POST"
    )
    recordings: bool = Field(False, alias="VOICEAGENT_RECORDINGS", description="a stereo WAV per call")
    recordings_dir: Annotated[str, AfterValidator(lambda path: str(Path(path).resolve()) if path else path)] = Field(
        "",
        alias="VOICEAGENT_RECORDINGS_DIR",
        description="where recordings go; unset: a recordings folder beside the SQLite file (required with PostgreSQL)",
    )
    # Who writes the open call rows: the host and PORT. A process restarted on the same host and port closes
    # the rows its predecessor left open at once; others are closed when its heartbeat goes stale.
    instance: str = Field(default_factory=lambda: f"{socket.gethostname()}:8080")

    @model_validator(mode="before")
    @classmethod
    def _instance_from_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and "instance" not in data and "PORT" in data:
            data = {**data, "instance": f"{socket.gethostname()}:{data['PORT']}"}
        return data

    @model_validator(mode="before")
    @classmethod
    def _recordings_beside_the_database(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("VOICEAGENT_RECORDINGS_DIR") and "recordings_dir" not in data:
            url = str(data.get("VOICEAGENT_DATABASE_URL") or data.get("database_url") or DEFAULT_DATABASE)
            if url.startswith("sqlite:///"):
                data = {
                    **data,
                    "VOICEAGENT_RECORDINGS_DIR": str(Path(url[len("sqlite:///") :]).parent / DEFAULT_RECORDINGS_DIR),
                }
        return data

    @model_validator(mode="after")
    def _recordings_where(self) -> RecordsSettings:
        """Recordings go beside the SQLite file unless told otherwise (not into whatever the working
        directory is: in the Docker image that is the root-owned /app). With PostgreSQL there is no file to
        go beside, so the folder must be named. A folder that cannot be made is a configuration error."""
        if not self.recordings:
            return self
        if not self.recordings_dir:
            raise problem(
                "VOICEAGENT_RECORDINGS_DIR must be set when VOICEAGENT_RECORDINGS is on with PostgreSQL "
                "(a folder every instance can write, e.g. a shared volume)"
            )
        try:
            Path(self.recordings_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise problem(
                f"VOICEAGENT_RECORDINGS_DIR={self.recordings_dir!r} cannot be created ({exc.strerror}): "
                "name a folder the service can write"
            ) from None
        return self

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
        """Read the ``VOICEAGENT_*`` variables of records; ``ConfigError`` names every one that is wrong."""
        values = present(env)
        records, problems = read_variables(cls, values)
        problems += cls.needed_together(values)
        if problems:
            raise ConfigError.of(problems)
        assert isinstance(records, RecordsSettings)
        return records

    @staticmethod
    def needed_together(env: Mapping[str, str]) -> list[str]:
        if "VOICEAGENT_CALL_ENDED_WEBHOOK" in env and "VOICEAGENT_WEBHOOK_SECRET" not in env:
            return [
                "VOICEAGENT_WEBHOOK_SECRET is not set: VOICEAGENT_CALL_ENDED_WEBHOOK posts are signed with it "
                "(X-Voiceagent-Signature), so that the receiver can tell them from forgeries"
            ]
        return []

    def secrets(self) -> list[str]:
        """What the log formatter must scrub (``configure_logging(secrets=...)``)."""
        found = [s for s in (self.api_token, self.webhook_secret) if s]
        password = urlsplit(self.database_url).password if self.backend == "postgresql" else None
        return found + ([password] if password else [])
