"""Settings from the environment, read and validated once at start-up.

Every problem is reported with the variable's name and what is wrong; nothing deeper in the code
reads ``os.environ``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from voiceagent.realtime.events import SessionConfig
from voiceagent.realtime.target import ModelTarget

DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise phone assistant. Speak naturally, keep answers short, "
    "and let the caller interrupt you."
)
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
GA_ONLY_VOICES = ("marin", "cedar")
VAD_MODES = ("server_vad", "semantic_vad")


# Azure's Realtime preview protocol versions (the GA protocol takes no api-version at all).
PREVIEW_API_VERSIONS = ("2024-12-17-preview", "2025-04-01-preview")
RETIRED_API_VERSIONS = ("2024-10-01-preview",)
_PREVIEW_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}-preview", re.ASCII)
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)
_LOCAL_NAMES = ("localhost", "test")  # RFC 6761: never resolvable on the internet, so never Twilio's way in

T = TypeVar("T")


class ConfigError(ValueError):
    """One or more settings are missing or invalid. The message names each variable; ``problems`` lists
    them one by one (all of them, not only the first)."""

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]


class _Problems:
    """Collects every ``ConfigError`` while the settings are read, so all of them are reported at once."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, problem: str) -> None:
        self.found.append(problem)

    def read(self, reader: Callable[[], T], fallback: T) -> T:
        """``reader()``, or ``fallback`` after noting what it refused."""
        try:
            return reader()
        except ConfigError as exc:
            self.found.extend(exc.problems)
            return fallback

    def raise_if_any(self) -> None:
        if len(self.found) == 1:
            raise ConfigError(self.found[0])
        if self.found:
            listed = "\n".join(f"  - {problem}" for problem in self.found)
            raise ConfigError(f"{len(self.found)} problems in the configuration:\n{listed}", self.found)


@dataclass(frozen=True)
class Settings:
    model: ModelTarget
    session: SessionConfig
    greeting: str = ""
    host: str = "0.0.0.0"
    port: int = 8080
    public_base_url: str | None = None
    twilio_auth_token: str | None = field(default=None, repr=False)
    insecure_skip_validation: bool = False
    log_full_numbers: bool = False
    prewarm_seconds: float = 10.0
    max_calls: int = 50
    max_call_seconds: float = 3600.0
    caller_silence_seconds: float = 120.0
    session_recycle_seconds: float = 25 * 60.0
    drain_seconds: float = 30.0
    connect_timeout_seconds: float = 10.0
    connect_attempts: int = 3
    session_ready_seconds: float = 5.0
    model_connects_per_minute: int = 120
    calls_per_number_per_minute: int = 5
    caller_audio_pace: float = 1.25
    caller_audio_batch_ms: int = 20
    tool_modules: tuple[str, ...] = ()
    tools_file: str | None = None
    tool_timeout_seconds: float = 10.0
    end_call: bool = True
    transfer_to: dict[str, str] = field(default_factory=dict)  # name -> number or SIP URI; "" if only one
    transfer_caller_id: str | None = None  # None: the number that was called
    dtmf_to_model: bool = True
    busy_message: str = "Sorry, all our lines are busy right now. Please call again later."
    unavailable_message: str = "Sorry, our assistant is not available right now. Please call again later."


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _number(
    env: Mapping[str, str], name: str, kind: type[int] | type[float], low: float | None, high: float | None
) -> float | None:
    """The variable as a finite number within bounds, None when unset; ConfigError naming it otherwise."""
    raw = _text(env, name)
    if raw is None:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name}={raw!r} must be {bounds}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, low: int | None = None, high: int | None = None) -> int:
    value = _number(env, name, int, low, high)
    return default if value is None else int(value)


def _float(
    env: Mapping[str, str], name: str, default: float, *, low: float | None = None, high: float | None = None
) -> float:
    value = _number(env, name, float, low, high)
    return default if value is None else float(value)


def _optional_float(env: Mapping[str, str], name: str, *, low: float, high: float) -> float | None:
    return _number(env, name, float, low, high)


def _optional_int(env: Mapping[str, str], name: str, *, low: int, high: int) -> int | None:
    value = _number(env, name, int, low, high)
    return None if value is None else int(value)


def _flag(env: Mapping[str, str], name: str, *, default: bool = False) -> bool:
    raw = (_text(env, name) or "").lower()
    if raw == "":
        return default
    if raw in ("0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"{name}={raw!r} must be true or false")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (_text(env, name) or default).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


_DESTINATION = re.compile(r"\+[1-9][0-9]{6,14}|sip:[^\s,=]+", re.ASCII)
_DESTINATION_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)


def _transfer_targets(env: Mapping[str, str]) -> dict[str, str]:
    """``+15551230001`` (one destination) or ``sales=+15551230001,support=sip:desk@pbx.example.com``."""
    raw = _text(env, "VOICEAGENT_TRANSFER_TO")
    if raw is None:
        return {}
    if "=" not in raw:
        if not _DESTINATION.fullmatch(raw):
            raise ConfigError(f"VOICEAGENT_TRANSFER_TO={raw!r} must be an E.164 number (+15551230001) or a sip: URI")
        return {"": raw}
    targets: dict[str, str] = {}
    for entry in raw.split(","):
        name, _, destination = (part.strip() for part in entry.partition("="))
        if not _DESTINATION_NAME.fullmatch(name) or not _DESTINATION.fullmatch(destination):
            raise ConfigError(
                f"VOICEAGENT_TRANSFER_TO entry {entry.strip()!r} must be name=+15551230001 or name=sip:… "
                "(names: lowercase letters, digits, _)"
            )
        if name in targets:
            raise ConfigError(f"VOICEAGENT_TRANSFER_TO names {name!r} twice")
        targets[name] = destination
    return targets


def _base_url(env: Mapping[str, str], name: str) -> str | None:
    raw = _text(env, name)
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{name}={raw!r} must look like https://host[:port][/path], no query string")
    return raw.rstrip("/")


def _api_version(env: Mapping[str, str]) -> str | None:
    """A known Realtime preview version, or None (the GA protocol)."""
    raw = _text(env, "AZURE_OPENAI_API_VERSION")
    if raw is None:
        return None
    ga = "unset AZURE_OPENAI_API_VERSION to use the GA protocol (recommended; it takes no api-version)"
    if raw in RETIRED_API_VERSIONS:
        raise ConfigError(
            f"AZURE_OPENAI_API_VERSION={raw} is retired: Azure no longer serves the Realtime API at that version; "
            f"{ga}, or use {PREVIEW_API_VERSIONS[-1]}"
        )
    if raw not in PREVIEW_API_VERSIONS:
        what = (
            "is not a Realtime preview version" if _PREVIEW_API_VERSION.fullmatch(raw) else "is not YYYY-MM-DD-preview"
        )
        raise ConfigError(f"AZURE_OPENAI_API_VERSION={raw!r} {what} (known: {', '.join(PREVIEW_API_VERSIONS)}); {ga}")
    return raw


def _model_target(env: Mapping[str, str], problems: _Problems) -> ModelTarget | None:
    """The model to use; what is wrong goes to ``problems`` (None when there is nothing to go on)."""
    if _text(env, "AZURE_OPENAI_ENDPOINT") is not None:
        endpoint = problems.read(lambda: _base_url(env, "AZURE_OPENAI_ENDPOINT"), None)
        deployment = _text(env, "AZURE_OPENAI_DEPLOYMENT")
        if not deployment:
            problems.add("AZURE_OPENAI_DEPLOYMENT is not set: name the Realtime deployment (e.g. gpt-realtime)")
        return ModelTarget(
            provider="azure",
            endpoint=endpoint or "",
            deployment=deployment or "",
            api_key=_text(env, "AZURE_OPENAI_API_KEY"),
            # a refused version still says which protocol was meant, for the checks that depend on it
            api_version=problems.read(lambda: _api_version(env), _text(env, "AZURE_OPENAI_API_VERSION")),
        )
    api_key = _text(env, "OPENAI_API_KEY")
    if api_key:
        return ModelTarget(
            provider="openai",
            endpoint=problems.read(lambda: _base_url(env, "OPENAI_BASE_URL"), None) or "https://api.openai.com",
            deployment=_text(env, "OPENAI_REALTIME_MODEL") or "gpt-realtime",
            api_key=api_key,
        )
    problems.add(
        "No model configured: set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT "
        "(plus AZURE_OPENAI_API_KEY, or sign in for Entra ID), or set OPENAI_API_KEY"
    )
    return None


def _is_local(host: str | None) -> bool:
    """Loopback addresses and names that can never be reached from the internet."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        name = host.lower().rstrip(".")
        return any(name == local or name.endswith("." + local) for local in _LOCAL_NAMES)


def _public_base_url(env: Mapping[str, str]) -> str | None:
    url = _base_url(env, "PUBLIC_BASE_URL")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme == "http" and not _is_local(parts.hostname):
            raise ConfigError(
                f"PUBLIC_BASE_URL={url!r} is plain http: Twilio calls webhooks over HTTPS and opens streams over "
                "WSS, so use https://YOUR-HOST (http:// is accepted only for loopback, e.g. http://127.0.0.1:8080)"
            )
    return url


def _host(env: Mapping[str, str]) -> str:
    raw = _text(env, "HOST")
    if raw is None:
        return "0.0.0.0"
    try:
        ipaddress.ip_address(raw)
        return raw
    except ValueError:
        pass
    name = raw.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise ConfigError(
            f"HOST={raw!r} is neither an IP address nor a host name: the address to listen on, "
            "e.g. 0.0.0.0 (every interface), 127.0.0.1 or ::"
        )
    return raw


def _instructions(env: Mapping[str, str]) -> str:
    inline = _text(env, "VOICEAGENT_INSTRUCTIONS")
    path = _text(env, "VOICEAGENT_INSTRUCTIONS_FILE")
    if inline and path:
        raise ConfigError("Set VOICEAGENT_INSTRUCTIONS or VOICEAGENT_INSTRUCTIONS_FILE, not both")
    if path:
        try:
            text = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"VOICEAGENT_INSTRUCTIONS_FILE={path!r} cannot be read: {exc.strerror}") from None
        if not text:
            raise ConfigError(f"VOICEAGENT_INSTRUCTIONS_FILE={path!r} is empty")
        return text
    return inline or DEFAULT_INSTRUCTIONS


def _voice(env: Mapping[str, str]) -> str:
    voice = _text(env, "VOICEAGENT_VOICE") or "alloy"
    if voice not in VOICES:
        raise ConfigError(f"VOICEAGENT_VOICE={voice!r} is not a Realtime voice; choose one of {', '.join(VOICES)}")
    return voice


def _vad(env: Mapping[str, str]) -> str:
    vad = _text(env, "VOICEAGENT_VAD") or "server_vad"
    if vad not in VAD_MODES:
        raise ConfigError(f"VOICEAGENT_VAD={vad!r} must be server_vad or semantic_vad")
    return vad


def _session(env: Mapping[str, str], problems: _Problems) -> SessionConfig:
    """What we ask of every model session; what is wrong goes to ``problems``."""
    return SessionConfig(
        instructions=problems.read(lambda: _instructions(env), DEFAULT_INSTRUCTIONS),
        voice=problems.read(lambda: _voice(env), "alloy"),
        vad=problems.read(lambda: _vad(env), "server_vad"),
        vad_threshold=problems.read(lambda: _optional_float(env, "VOICEAGENT_VAD_THRESHOLD", low=0.0, high=1.0), None),
        vad_prefix_padding_ms=problems.read(
            lambda: _optional_int(env, "VOICEAGENT_VAD_PREFIX_PADDING_MS", low=0, high=10_000), None
        ),
        vad_silence_ms=problems.read(lambda: _optional_int(env, "VOICEAGENT_VAD_SILENCE_MS", low=0, high=10_000), None),
        transcription_model=_text(env, "VOICEAGENT_TRANSCRIPTION_MODEL") or "whisper-1",
    )


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from ``env`` (default: the process environment) or raise ConfigError, whose
    message lists every problem found (each naming its variable), not only the first."""
    env = os.environ if env is None else env
    problems = _Problems()
    model = _model_target(env, problems)
    session = _session(env, problems)
    if model is not None and model.dialect == "preview":
        if session.vad == "semantic_vad":
            problems.add("VOICEAGENT_VAD=semantic_vad needs the GA protocol: unset AZURE_OPENAI_API_VERSION")
        if session.voice in GA_ONLY_VOICES:
            problems.add(
                f"VOICEAGENT_VOICE={session.voice} exists only on GA deployments: choose another voice "
                "or unset AZURE_OPENAI_API_VERSION"
            )
    insecure = problems.read(lambda: _flag(env, "VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION"), False)
    auth_token = _text(env, "TWILIO_AUTH_TOKEN")
    if not auth_token and not insecure:
        problems.add(
            "TWILIO_AUTH_TOKEN is not set: it is needed to check that requests come from Twilio "
            "(for local experiments only, VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION=true turns the check off)"
        )
    read = problems.read
    settings = Settings(
        model=model or ModelTarget(provider="azure", endpoint="", deployment=""),  # only read if no problem
        session=session,
        greeting=(env.get("VOICEAGENT_GREETING") or "").strip(),
        host=read(lambda: _host(env), "0.0.0.0"),
        port=read(lambda: _int(env, "PORT", 8080, low=0, high=65535), 8080),
        public_base_url=read(lambda: _public_base_url(env), None),
        twilio_auth_token=auth_token,
        insecure_skip_validation=insecure,
        log_full_numbers=read(lambda: _flag(env, "VOICEAGENT_LOG_FULL_NUMBERS"), False),
        prewarm_seconds=read(lambda: _float(env, "VOICEAGENT_PREWARM_SECONDS", 10.0, low=0.0, high=120.0), 10.0),
        max_calls=read(lambda: _int(env, "VOICEAGENT_MAX_CALLS", 50, low=1), 50),
        max_call_seconds=read(lambda: _float(env, "VOICEAGENT_MAX_CALL_SECONDS", 3600.0, low=1.0), 3600.0),
        caller_silence_seconds=read(lambda: _float(env, "VOICEAGENT_CALLER_SILENCE_SECONDS", 120.0, low=1.0), 120.0),
        session_recycle_seconds=read(
            lambda: _float(env, "VOICEAGENT_SESSION_RECYCLE_SECONDS", 25 * 60.0, low=1.0), 25 * 60.0
        ),
        drain_seconds=read(lambda: _float(env, "VOICEAGENT_DRAIN_SECONDS", 30.0, low=0.0), 30.0),
        connect_timeout_seconds=read(lambda: _float(env, "VOICEAGENT_CONNECT_TIMEOUT_SECONDS", 10.0, low=0.1), 10.0),
        connect_attempts=read(lambda: _int(env, "VOICEAGENT_CONNECT_ATTEMPTS", 3, low=1, high=10), 3),
        session_ready_seconds=read(
            lambda: _float(env, "VOICEAGENT_SESSION_READY_SECONDS", 5.0, low=0.5, high=60.0), 5.0
        ),
        model_connects_per_minute=read(lambda: _int(env, "VOICEAGENT_MODEL_CONNECTS_PER_MINUTE", 120, low=1), 120),
        calls_per_number_per_minute=read(lambda: _int(env, "VOICEAGENT_CALLS_PER_NUMBER_PER_MINUTE", 5, low=1), 5),
        caller_audio_pace=read(lambda: _float(env, "VOICEAGENT_CALLER_AUDIO_PACE", 1.25, low=1.0, high=100.0), 1.25),
        caller_audio_batch_ms=read(lambda: _int(env, "VOICEAGENT_CALLER_AUDIO_BATCH_MS", 20, low=20, high=200), 20),
        tool_modules=tuple(m.strip() for m in (_text(env, "VOICEAGENT_TOOLS") or "").split(",") if m.strip()),
        tools_file=_text(env, "VOICEAGENT_TOOLS_FILE"),
        tool_timeout_seconds=read(
            lambda: _float(env, "VOICEAGENT_TOOL_TIMEOUT_SECONDS", 10.0, low=0.1, high=300.0), 10.0
        ),
        end_call=read(lambda: _flag(env, "VOICEAGENT_END_CALL", default=True), True),
        transfer_to=read(lambda: _transfer_targets(env), dict[str, str]()),
        transfer_caller_id=_text(env, "VOICEAGENT_TRANSFER_CALLER_ID"),
        dtmf_to_model=read(lambda: _choice(env, "VOICEAGENT_DTMF", ("model", "ignore"), "model"), "model") == "model",
        busy_message=_text(env, "VOICEAGENT_BUSY_MESSAGE") or Settings.busy_message,
        unavailable_message=_text(env, "VOICEAGENT_UNAVAILABLE_MESSAGE") or Settings.unavailable_message,
    )
    problems.raise_if_any()
    return settings


def configuration_warnings(settings: Settings) -> list[tuple[str, str]]:
    """Settings that are valid but likely to hurt, as (event, detail): logged at start-up, printed by
    ``check-config``."""
    found: list[tuple[str, str]] = []
    if settings.insecure_skip_validation:
        found.append(
            (
                "twilio_validation_disabled",
                "VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION is set: anyone who finds this server can place calls "
                "on your model bill. Use it for local experiments only.",
            )
        )
    if settings.session.vad == "semantic_vad" and settings.model.provider == "azure":
        found.append(
            (
                "semantic_vad_on_azure",
                "VOICEAGENT_VAD=semantic_vad on Azure has been reported never to signal that the caller started "
                "speaking: callers could not interrupt the agent. Prefer server_vad.",
            )
        )
    return found
