"""How one environment variable's text becomes a value, and how what is wrong is told.

The declarations (``voiceagent.config.Settings``, ``voiceagent.store.settings.RecordsSettings``) are
pydantic-settings models whose fields are the variables; the checks here are the ones they share. Every
problem names its variable and, where it helps, the fix; ``read_variables`` collects all of them.
"""

from __future__ import annotations

import collections
import difflib
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import annotated_types
from pydantic import AfterValidator, BeforeValidator, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROBLEM = "config"  # the error type of every check here: its message is the whole sentence
PREFIX = "VOICEAGENT_"  # names with it are ours: one nobody reads is a mistake
TEST_SUITE_PREFIX = "VOICEAGENT_TEST_"  # the test suite's own variables (e.g. VOICEAGENT_TEST_POSTGRES_URL)
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """One or more settings are missing or invalid. The message names each variable; ``problems`` lists
    them one by one (all of them, not only the first)."""

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems else [message]

    @classmethod
    def of(cls, problems: Sequence[str]) -> ConfigError:
        if len(problems) == 1:
            return cls(problems[0])
        listed = "\n".join(f"  - {problem}" for problem in problems)
        return cls(f"{len(problems)} problems in the configuration:\n{listed}", problems)


def problem(message: str) -> PydanticCustomError:
    """A check's refusal: ``message`` names the variable and says what to do."""
    return PydanticCustomError(PROBLEM, message)


class Variables(BaseSettings):
    """The base of the declarations: fields named by their variable (``alias``), read from a mapping the
    caller passes, never from ``os.environ`` (the CLI reads the process environment once)."""

    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True, protected_namespaces=()
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)

    @classmethod
    def variables(cls) -> dict[str, FieldInfo]:
        """Variable name -> its declaration (default, type, bounds, ``description``)."""
        found: dict[str, FieldInfo] = {}
        for info in cls.model_fields.values():
            if info.alias:
                found[info.alias] = info
            elif isinstance(info.annotation, type) and issubclass(info.annotation, Variables):
                found |= info.annotation.variables()
        return found


def unquoted(value: str) -> str:
    """The value stripped, and without one pair of surrounding quotes: ``docker run --env-file`` keeps the
    quotes a shell or python-dotenv would remove, so the same file means the same thing to all three."""
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1].strip()
    return value


def present(env: Mapping[str, str]) -> dict[str, str]:
    """The variables that are set: stripped, unquoted, empty ones left out (empty means unset)."""
    return {name: text for name, raw in env.items() if (text := unquoted(raw or ""))}


def unknown_names(env: Iterable[str], known: Iterable[str]) -> list[str]:
    """``VOICEAGENT_*`` names nobody reads: a misspelt limit silently keeps its default otherwise."""
    ours = {name.removeprefix(PREFIX): name for name in known if name.startswith(PREFIX)}
    found = []
    for name in env:
        if name.startswith(PREFIX) and name.removeprefix(PREFIX) not in ours and not name.startswith(TEST_SUITE_PREFIX):
            close = difflib.get_close_matches(name.removeprefix(PREFIX), list(ours), n=1)  # alike after the prefix
            hint = (
                f"did you mean {ours[close[0]]}?" if close else "no such setting: `voiceagent config --list` lists them"
            )
            found.append(f"unknown variable {name} ({hint})")
    return found


def read_variables(model: type[Variables], values: dict[str, Any]) -> tuple[Any, list[str]]:
    """``model`` built from ``values`` (or None), and every problem, each naming its variable."""
    try:
        return model(**values), []
    except ValidationError as refused:
        return None, [_describe(model, error) for error in refused.errors()]


def _describe(model: type[Variables], error: Any) -> str:
    if error["type"] == PROBLEM:
        return str(error["msg"])
    name = str(error["loc"][-1]) if error["loc"] else model.__name__
    info = model.variables().get(name)
    shown = f"{name}={error['input']!r}" if info is None or info.repr else name  # never echo a secret
    kind = error["type"]
    if kind in ("int_parsing", "int_from_float", "int_type"):
        return f"{shown} is not a valid int"
    if kind in ("float_parsing", "float_type"):
        return f"{shown} is not a valid float"
    if kind == "finite_number":
        return f"{shown} must be a finite number"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{shown} must be {bounds(info)}"
    if kind in ("bool_parsing", "bool_type"):
        return f"{shown} must be true or false (also yes/no, on/off, 1/0)"
    if kind == "literal_error":
        return f"{shown} must be one of {error['ctx']['expected']}"
    return f"{shown}: {error['msg']}"


def bounds(info: FieldInfo | None) -> str:
    """``between 1 and 10`` or ``at least 1``: the range a number field declares."""
    low = high = None
    for rule in info.metadata if info is not None else ():
        if isinstance(rule, annotated_types.Ge | annotated_types.Gt):
            low = getattr(rule, "ge", getattr(rule, "gt", None))
        if isinstance(rule, annotated_types.Le | annotated_types.Lt):
            high = getattr(rule, "le", getattr(rule, "lt", None))
    if high is None:
        return f"at least {low}" if low is not None else "in range"
    return f"between {low} and {high}"


def flag(raw: str | None, default: bool = False) -> bool:
    """A flag's meaning for the cross-checks; an unreadable one is reported by its field, counted as unset."""
    text = (raw or "").lower()
    return True if text in TRUE_WORDS else False if text in FALSE_WORDS else default


# ---------------------------------------------------------------------------------- shared checks


def base_url(name: str) -> AfterValidator:
    """``https://host[:port][/path]``, no query string, no trailing slash."""

    def check(raw: str | None) -> str | None:
        if raw is None:
            return None
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise problem(f"{name}={raw!r} must look like https://host[:port][/path], no query string")
        return raw.rstrip("/")

    return AfterValidator(check)


MIN_SECRET_BITS = 64.0  # a guess per millisecond for a thousand years is about 2^45


def guessable_bits(value: str) -> float:
    """How many bits guessing ``value`` costs at most, judged from its own characters: length times the
    Shannon entropy of its character frequencies (``aaaaaaaaaaaaaaaa`` is 0, 32 random hex digits ~120)."""
    counts = collections.Counter(value)
    per_char = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values()) if value else 0.0
    return per_char * len(value)


def secret(name: str, minimum: int) -> AfterValidator:
    """A token that must be long and varied enough not to be guessed."""

    def check(value: str | None) -> str | None:
        if value is not None and len(value) < minimum:
            raise problem(f"{name} must be at least {minimum} characters (use e.g. `openssl rand -hex 32`)")
        if value is not None and guessable_bits(value) < MIN_SECRET_BITS:
            raise problem(
                f"{name} is too easy to guess (repeated or few different characters): use e.g. `openssl rand -hex 32`"
            )
        return value

    return AfterValidator(check)


def one_of(name: str, choices: tuple[str, ...], refusal: str, *, lower: bool = False) -> AfterValidator:
    """A word from ``choices``; ``refusal`` (formatted with ``value``) says what to do otherwise."""

    def check(value: str) -> str:
        value = value.lower() if lower else value
        if value not in choices:
            raise problem(refusal.format(name=name, value=value, choices=", ".join(choices)))
        return value

    return AfterValidator(check)


def comma_list(value: Any) -> Any:
    """``a, b,c`` -> ``("a", "b", "c")``."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


CommaList = Annotated[tuple[str, ...], BeforeValidator(comma_list)]


@dataclass(frozen=True)
class Prompt:
    """The system prompt read from ``VOICEAGENT_INSTRUCTIONS_FILE`` at start-up."""

    path: str
    text: str


def _read_prompt(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        text = Path(value).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise problem(f"VOICEAGENT_INSTRUCTIONS_FILE={value!r} cannot be read: {exc.strerror}") from None
    if not text:
        raise problem(f"VOICEAGENT_INSTRUCTIONS_FILE={value!r} is empty")
    return Prompt(value, text)


PromptFile = Annotated[Prompt | None, BeforeValidator(_read_prompt)]

_LOCAL_NAMES = ("localhost", "test")  # RFC 6761: never resolvable on the internet, so never Twilio's way in
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)", re.ASCII)


def is_local(host: str | None) -> bool:
    """Loopback addresses and names that can never be reached from the internet."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        name = host.lower().rstrip(".")
        return any(name == local or name.endswith("." + local) for local in _LOCAL_NAMES)


def _listen_host(raw: str) -> str:
    try:
        ipaddress.ip_address(raw)
        return raw
    except ValueError:
        pass
    name = raw.rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
        raise problem(
            f"HOST={raw!r} is neither an IP address nor a host name: the address to listen on, "
            "e.g. 0.0.0.0 (every interface), 127.0.0.1 or ::"
        )
    return raw


ListenHost = Annotated[str, AfterValidator(_listen_host)]


def _public_base_url(url: str | None) -> str | None:
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme == "http" and not is_local(parts.hostname):
            raise problem(
                f"PUBLIC_BASE_URL={url!r} is plain http: Twilio calls webhooks over HTTPS and opens streams over "
                "WSS, so use https://YOUR-HOST (http:// is accepted only for loopback, e.g. http://127.0.0.1:8080)"
            )
    return url


PublicBaseUrl = Annotated[str | None, base_url("PUBLIC_BASE_URL"), AfterValidator(_public_base_url)]


def read_environment(process: Mapping[str, str], env_file: str | None = None) -> dict[str, str]:
    """The variables a command runs with: ``env_file`` (dotenv syntax: quotes, spaces, ``#`` comments, read
    by python-dotenv, ``${VAR}`` not expanded) under the process environment, which wins where both set one."""
    merged: dict[str, str] = {}
    if env_file is not None:
        if not Path(env_file).is_file():
            raise ConfigError(f"--env-file {env_file}: no such file")
        from dotenv import dotenv_values

        merged = {
            name: value for name, value in dotenv_values(env_file, interpolate=False).items() if value is not None
        }
    return merged | dict(process)


def env_default(info: FieldInfo) -> str | None:
    """A variable's default as it is written in an environment (None: unset by default)."""
    default = info.get_default(call_default_factory=True)
    shown = (info.json_schema_extra or {}).get("env_default") if isinstance(info.json_schema_extra, dict) else None
    if shown is not None:
        return str(shown)
    if default is None or default in ((), {}, ""):
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)
