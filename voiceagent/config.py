"""The settings: every environment variable declared once (name, default, type, range, help), read and
validated once at start-up from a mapping the caller passes.

Every problem is reported with the variable's name and what is wrong, all of them at once; a
``VOICEAGENT_*`` name nobody reads is one of them. Nothing deeper in the code reads ``os.environ``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from voiceagent.realtime.events import SessionConfig
from voiceagent.realtime.target import ModelTarget
from voiceagent.store.settings import RecordsSettings
from voiceagent.variables import (
    CommaList,
    ConfigError,
    ListenHost,
    PromptFile,
    PublicBaseUrl,
    Variables,
    base_url,
    flag,
    one_of,
    present,
    problem,
    read_variables,
    unknown_names,
)

__all__ = ["ConfigError", "Settings", "configuration_warnings", "load_settings"]

DEFAULT_INSTRUCTIONS = (
    "You are a friendly, concise phone assistant. Speak naturally, keep answers short, "
    "and let the caller interrupt you."
)
BUSY_MESSAGE = "Sorry, all our lines are busy right now. Please call again later."
UNAVAILABLE_MESSAGE = "Sorry, our assistant is not available right now. Please call again later."
TRANSFER_UNANSWERED_MESSAGE = "Sorry, nobody could take your call just now. You are back with the assistant."
VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
GA_ONLY_VOICES = ("marin", "cedar")
VAD_MODES = ("server_vad", "semantic_vad")

# Azure's Realtime preview protocol versions (the GA protocol takes no api-version at all).
PREVIEW_API_VERSIONS = ("2024-12-17-preview", "2025-04-01-preview")
RETIRED_API_VERSIONS = ("2024-10-01-preview",)
_PREVIEW_API_VERSION = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}-preview", re.ASCII)


def _api_version(raw: str | None) -> str | None:
    """A known Realtime preview version, or None (the GA protocol)."""
    if raw is None:
        return None
    ga = "unset AZURE_OPENAI_API_VERSION to use the GA protocol (recommended; it takes no api-version)"
    if raw in RETIRED_API_VERSIONS:
        raise problem(
            f"AZURE_OPENAI_API_VERSION={raw} is retired: Azure no longer serves the Realtime API at that version; "
            f"{ga}, or use {PREVIEW_API_VERSIONS[-1]}"
        )
    if raw not in PREVIEW_API_VERSIONS:
        what = (
            "is not a Realtime preview version" if _PREVIEW_API_VERSION.fullmatch(raw) else "is not YYYY-MM-DD-preview"
        )
        raise problem(f"AZURE_OPENAI_API_VERSION={raw!r} {what} (known: {', '.join(PREVIEW_API_VERSIONS)}); {ga}")
    return raw


# a SIP URI may carry parameters (``sip:desk@pbx.example.com;transport=tls``): printable ASCII but ","
_DESTINATION = re.compile(r"\+[1-9][0-9]{6,14}|sip:[\x21-\x2b\x2d-\x7e]+", re.ASCII)
_DESTINATION_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}", re.ASCII)


def _transfer_targets(raw: Any) -> Any:
    """``+15551230001`` (one destination) or ``sales=+15551230001,support=sip:desk@pbx.example.com``."""
    if not isinstance(raw, str):
        return raw
    if "=" not in raw or raw.lower().startswith(("sip:", "+")):
        if not _DESTINATION.fullmatch(raw):
            raise problem(f"VOICEAGENT_TRANSFER_TO={raw!r} must be an E.164 number (+15551230001) or a sip: URI")
        return {"": raw}
    targets: dict[str, str] = {}
    for entry in raw.split(","):
        name, _, destination = (part.strip() for part in entry.partition("="))
        if not _DESTINATION_NAME.fullmatch(name) or not _DESTINATION.fullmatch(destination):
            raise problem(
                f"VOICEAGENT_TRANSFER_TO entry {entry.strip()!r} must be name=+15551230001 or name=sip:… "
                "(names: lowercase letters, digits, _)"
            )
        if name in targets:
            raise problem(f"VOICEAGENT_TRANSFER_TO names {name!r} twice")
        targets[name] = destination
    return targets


def _dtmf(raw: Any) -> Any:
    if not isinstance(raw, str):
        return raw
    if raw.lower() not in ("model", "ignore"):
        raise problem(f"VOICEAGENT_DTMF={raw.lower()!r} must be one of model, ignore")
    return raw.lower() == "model"


def _seconds(alias: str, default: float, help: str, *, ge: float, le: float | None = None) -> Any:
    return Field(default, alias=alias, ge=ge, le=le, allow_inf_nan=False, description=help)


class Settings(Variables):
    """Everything the service reads from its environment. ``model``, ``session`` and ``records`` group
    the variables the way the code uses them."""

    # ---- the model
    azure_openai_endpoint: Annotated[str | None, base_url("AZURE_OPENAI_ENDPOINT")] = Field(
        None, alias="AZURE_OPENAI_ENDPOINT", description="https://RES.openai.azure.com (http://127.0.0.1:PORT: ws://)"
    )
    azure_openai_deployment: str | None = Field(
        None, alias="AZURE_OPENAI_DEPLOYMENT", description="the Realtime deployment's name, e.g. gpt-realtime"
    )
    azure_openai_api_key: str | None = Field(
        None, alias="AZURE_OPENAI_API_KEY", repr=False, description="the resource's key; unset: Entra ID"
    )
    azure_openai_api_version: Annotated[str | None, AfterValidator(_api_version)] = Field(
        None, alias="AZURE_OPENAI_API_VERSION", description="unset: the GA protocol; a preview version: preview"
    )
    openai_api_key: str | None = Field(
        None, alias="OPENAI_API_KEY", repr=False, description="plain OpenAI, when no Azure endpoint is set"
    )
    openai_realtime_model: str = Field("gpt-realtime", alias="OPENAI_REALTIME_MODEL", description="the OpenAI model")
    openai_base_url: Annotated[str | None, base_url("OPENAI_BASE_URL")] = Field(
        "https://api.openai.com", alias="OPENAI_BASE_URL", description="the OpenAI endpoint"
    )
    # ---- Twilio and the server
    twilio_auth_token: str | None = Field(
        None, alias="TWILIO_AUTH_TOKEN", repr=False, description="checks X-Twilio-Signature (required)"
    )
    twilio_account_sid: str | None = Field(
        None, alias="TWILIO_ACCOUNT_SID", description="the REST API: `voiceagent twilio`, resuming a lost stream"
    )
    twilio_api_url: Annotated[str, base_url("VOICEAGENT_TWILIO_API_URL")] = Field(
        "https://api.twilio.com", alias="VOICEAGENT_TWILIO_API_URL", description="Twilio's REST API (tests: a fake)"
    )
    public_base_url: PublicBaseUrl = Field(
        None, alias="PUBLIC_BASE_URL", description="the https:// URL Twilio uses to reach us"
    )
    host: ListenHost = Field("0.0.0.0", alias="HOST", description="the address to listen on")
    port: int = Field(8080, alias="PORT", ge=0, le=65535, description="the port to listen on")
    insecure_skip_validation: bool = Field(
        False, alias="VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION", description="true: no signature checks (local only)"
    )
    log_full_numbers: bool = Field(
        False, alias="VOICEAGENT_LOG_FULL_NUMBERS", description="log phone numbers in full instead of masked"
    )
    # ---- the agent
    instructions: str = Field(DEFAULT_INSTRUCTIONS, alias="VOICEAGENT_INSTRUCTIONS", description="the system prompt")
    instructions_file: PromptFile = Field(
        None, alias="VOICEAGENT_INSTRUCTIONS_FILE", description="read the prompt from this file instead (not both)"
    )
    voice: Annotated[
        str, one_of("VOICEAGENT_VOICE", VOICES, "{name}={value!r} is not a Realtime voice; choose one of {choices}")
    ] = Field("alloy", alias="VOICEAGENT_VOICE", description="the agent's voice (marin, cedar: GA only)")
    greeting: str = Field("", alias="VOICEAGENT_GREETING", description="what the agent says first; empty: it waits")
    vad: Annotated[str, one_of("VOICEAGENT_VAD", VAD_MODES, "{name}={value!r} must be server_vad or semantic_vad")] = (
        Field("server_vad", alias="VOICEAGENT_VAD", description="turn detection: server_vad or semantic_vad (GA only)")
    )
    vad_threshold: float | None = Field(
        None, alias="VOICEAGENT_VAD_THRESHOLD", ge=0.0, le=1.0, allow_inf_nan=False, description="VAD sensitivity"
    )
    vad_prefix_padding_ms: int | None = Field(
        None, alias="VOICEAGENT_VAD_PREFIX_PADDING_MS", ge=0, le=10_000, description="audio kept before speech"
    )
    vad_silence_ms: int | None = Field(
        None, alias="VOICEAGENT_VAD_SILENCE_MS", ge=0, le=10_000, description="silence that ends the caller's turn"
    )
    transcription_model: str = Field(
        "whisper-1", alias="VOICEAGENT_TRANSCRIPTION_MODEL", description="caller transcription (an Azure deployment)"
    )
    # ---- tools
    tool_modules: CommaList = Field((), alias="VOICEAGENT_TOOLS", description="Python modules of @tool functions")
    tools_file: str | None = Field(None, alias="VOICEAGENT_TOOLS_FILE", description="a JSON file of HTTP tools")
    tool_timeout_seconds: float = _seconds("VOICEAGENT_TOOL_TIMEOUT_SECONDS", 10.0, "per tool call", ge=0.1, le=300)
    end_call: bool = Field(True, alias="VOICEAGENT_END_CALL", description="the built-in end_call tool")
    transfer_to: Annotated[dict[str, str], BeforeValidator(_transfer_targets)] = Field(
        default_factory=dict, alias="VOICEAGENT_TRANSFER_TO", description="transfer_call: a number, or name=number,…"
    )
    transfer_allow: CommaList = Field(
        (),
        alias="VOICEAGENT_TRANSFER_ALLOW",
        description="an operator may also transfer to numbers or SIP URIs starting so (+44,sip:desk@); unset: none",
    )
    transfer_caller_id: str | None = Field(
        None, alias="VOICEAGENT_TRANSFER_CALLER_ID", description="caller ID on a transfer; unset: the number called"
    )
    dtmf_to_model: Annotated[bool, BeforeValidator(_dtmf)] = Field(
        True,
        alias="VOICEAGENT_DTMF",
        description="model: key presses reach the model; ignore: they do not",
        json_schema_extra={"env_default": "model"},
    )
    dtmf_pause_ms: int = Field(
        2000, alias="VOICEAGENT_DTMF_PAUSE_MS", ge=100, le=30_000, description="a pause this long ends a keypad entry"
    )
    # ---- limits and lifecycle
    max_calls: int = Field(50, alias="VOICEAGENT_MAX_CALLS", ge=1, description="concurrent calls")
    max_call_seconds: float = _seconds("VOICEAGENT_MAX_CALL_SECONDS", 3600.0, "then goodbye", ge=1.0)
    caller_silence_seconds: float = _seconds("VOICEAGENT_CALLER_SILENCE_SECONDS", 120.0, "nobody spoke", ge=1.0)
    session_recycle_seconds: float = _seconds(
        "VOICEAGENT_SESSION_RECYCLE_SECONDS", 1500.0, "replace the model session after this", ge=1.0
    )
    drain_seconds: float = _seconds("VOICEAGENT_DRAIN_SECONDS", 30.0, "on SIGTERM, before the goodbye", ge=0.0)
    prewarm_seconds: float = _seconds("VOICEAGENT_PREWARM_SECONDS", 10.0, "wait for the stream", ge=0.0, le=120)
    connect_timeout_seconds: float = _seconds("VOICEAGENT_CONNECT_TIMEOUT_SECONDS", 10.0, "per attempt", ge=0.1)
    connect_attempts: int = Field(3, alias="VOICEAGENT_CONNECT_ATTEMPTS", ge=1, le=10, description="in a row")
    session_ready_seconds: float = _seconds(
        "VOICEAGENT_SESSION_READY_SECONDS", 5.0, "a session must confirm its configuration", ge=0.5, le=60
    )
    model_connects_per_minute: int = Field(
        120, alias="VOICEAGENT_MODEL_CONNECTS_PER_MINUTE", ge=1, description="for the whole process"
    )
    calls_per_number_per_minute: int = Field(
        5, alias="VOICEAGENT_CALLS_PER_NUMBER_PER_MINUTE", ge=1, description="from one caller number"
    )
    caller_audio_pace: float = Field(
        1.25, alias="VOICEAGENT_CALLER_AUDIO_PACE", ge=1.0, le=100.0, allow_inf_nan=False, description="x real time"
    )
    caller_audio_batch_ms: int = Field(
        20, alias="VOICEAGENT_CALLER_AUDIO_BATCH_MS", ge=20, le=200, description="chunks to the model"
    )
    busy_message: str = Field(
        BUSY_MESSAGE,
        alias="VOICEAGENT_BUSY_MESSAGE",
        description="said when at capacity or draining",
    )
    unavailable_message: str = Field(
        UNAVAILABLE_MESSAGE,
        alias="VOICEAGENT_UNAVAILABLE_MESSAGE",
        description="said when the model cannot be reached",
    )
    transfer_unanswered_message: str = Field(
        TRANSFER_UNANSWERED_MESSAGE,
        alias="VOICEAGENT_TRANSFER_UNANSWERED_MESSAGE",
        description="said when nobody takes a transfer, before the caller is back with the agent",
    )
    # ---- several instances: a call whose instance died resumes on another (voiceagent.line)
    resume_line: str = Field(
        "Sorry, we were cut off — where were we?",
        alias="VOICEAGENT_RESUME_LINE",
        description="said when a call resumes on another instance",
    )
    instance_url: Annotated[str | None, base_url("VOICEAGENT_INSTANCE_URL")] = Field(
        None,
        alias="VOICEAGENT_INSTANCE_URL",
        description="this instance's own public URL (e.g. PUBLIC_BASE_URL/instances/pod-0): its streams go there",
    )
    max_resumes: int = Field(
        2, alias="VOICEAGENT_MAX_RESUMES", ge=0, le=10, description="resumes per call within the window; 0: off"
    )
    resume_window_seconds: float = _seconds(
        "VOICEAGENT_RESUME_WINDOW_SECONDS", 600.0, "the window of VOICEAGENT_MAX_RESUMES", ge=10.0
    )
    # ---- call records, the operator API, the webhook, recordings
    records: RecordsSettings = Field(default_factory=lambda: RecordsSettings.from_env({}), repr=False)
    # everything the settings were read from: HTTP tools fill ``${VAR}`` in from it (not a variable itself)
    environment: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)

    @property
    def model(self) -> ModelTarget:
        """The model to use (Azure when an endpoint is set, else OpenAI)."""
        if self.azure_openai_endpoint is not None:
            return ModelTarget(
                provider="azure",
                endpoint=self.azure_openai_endpoint,
                deployment=self.azure_openai_deployment or "",
                api_key=self.azure_openai_api_key,
                api_version=self.azure_openai_api_version,
            )
        return ModelTarget(
            provider="openai",
            endpoint=self.openai_base_url or "https://api.openai.com",
            deployment=self.openai_realtime_model,
            api_key=self.openai_api_key,
        )

    @property
    def session(self) -> SessionConfig:
        """What we ask of every model session (the tools are added by the service)."""
        return SessionConfig(
            instructions=self.instructions_file.text if self.instructions_file else self.instructions,
            voice=self.voice,
            vad=self.vad,
            vad_threshold=self.vad_threshold,
            vad_prefix_padding_ms=self.vad_prefix_padding_ms,
            vad_silence_ms=self.vad_silence_ms,
            transcription_model=self.transcription_model,
        )


def _needed_together(env: Mapping[str, str]) -> list[str]:
    """What no single variable can tell: what is missing, and choices that exclude each other."""
    found: list[str] = []
    if "AZURE_OPENAI_ENDPOINT" in env:
        if "AZURE_OPENAI_DEPLOYMENT" not in env:
            found.append("AZURE_OPENAI_DEPLOYMENT is not set: name the Realtime deployment (e.g. gpt-realtime)")
        if "AZURE_OPENAI_API_VERSION" in env:  # even a refused version says the preview protocol was meant
            if env.get("VOICEAGENT_VAD") == "semantic_vad":
                found.append("VOICEAGENT_VAD=semantic_vad needs the GA protocol: unset AZURE_OPENAI_API_VERSION")
            if env.get("VOICEAGENT_VOICE") in GA_ONLY_VOICES:
                found.append(
                    f"VOICEAGENT_VOICE={env['VOICEAGENT_VOICE']} exists only on GA deployments: choose another voice "
                    "or unset AZURE_OPENAI_API_VERSION"
                )
    elif "OPENAI_API_KEY" not in env:
        found.append(
            "No model configured: set AZURE_OPENAI_ENDPOINT and AZURE_OPENAI_DEPLOYMENT "
            "(plus AZURE_OPENAI_API_KEY, or sign in for Entra ID), or set OPENAI_API_KEY"
        )
    if "VOICEAGENT_INSTRUCTIONS" in env and "VOICEAGENT_INSTRUCTIONS_FILE" in env:
        found.append("Set VOICEAGENT_INSTRUCTIONS or VOICEAGENT_INSTRUCTIONS_FILE, not both")
    if "TWILIO_AUTH_TOKEN" not in env and not flag(env.get("VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION")):
        found.append(
            "TWILIO_AUTH_TOKEN is not set: it is needed to check that requests come from Twilio "
            "(for local experiments only, VOICEAGENT_INSECURE_SKIP_TWILIO_VALIDATION=true turns the check off)"
        )
    return found + RecordsSettings.needed_together(env)


def load_settings(env: Mapping[str, str]) -> Settings:
    """Build the settings from ``env`` (the CLI passes the process environment, read once) or raise
    ConfigError, whose message lists every problem found (each naming its variable), not only the first."""
    values = present(env)
    settings, problems = read_variables(Settings, {**values, "records": values, "environment": dict(env)})
    problems += _needed_together(values) + unknown_names(values, Settings.variables())
    if problems:
        raise ConfigError.of(problems)
    assert isinstance(settings, Settings)
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


def sign_in(settings: Settings) -> str:
    """How the service signs in to the model, in words (``check-config`` prints it)."""
    model = settings.model
    if model.api_key:
        return f"{model.provider} API key"
    return "no key: signing in with Entra ID via DefaultAzureCredential (az login, a managed identity, …)"
