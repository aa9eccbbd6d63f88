"""A scenario file: one simulated call, the agent's settings for it, and what must happen.

TOML (the standard library's ``tomllib``: no dependency, and comments and tables read well for a test).
Checked by pydantic models; ``ScenarioError`` names the file, the field and the line::

    name = "book a table"
    [agent]                      # the agent's settings for this call
    greeting = "Trattoria Luca, good evening! How can I help?"
    prompt_file = "../prompt.txt"
    tools = ["restaurant_tools"]  # Python tool modules (python_path: where they are, from this file)
    [[rules]]                    # the fake model's rules (ignored by a real model)
    when = "table"
    call = "check_availability"
    arguments = {party_size = 2, time = "20:00"}
    [[caller.turns]]
    say = "Hi, I would like a table for two at eight."
    [expect]
    tools = [{name = "check_availability", arguments = {party_size = 2}}]
    ends = "hangup"

A persona caller instead of turns (a second Realtime session; offline the fake caller model)::

    [caller.persona]
    instructions = "You want a table for two at eight tonight. Once it is booked, say goodbye."
    fake_lines = ["I would like to book a table for two at eight.", "Thank you, goodbye."]
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Agent",
    "Caller",
    "Expect",
    "Persona",
    "Scenario",
    "ScenarioError",
    "Turn",
    "load_scenario",
    "scenario_files",
]


class ScenarioError(ValueError):
    """A scenario file that cannot be read: the message names the file, the field and the line."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Agent(_Strict):
    """The agent's settings for this scenario (paths are relative to the scenario file)."""

    greeting: str = ""
    prompt: str | None = None
    prompt_file: str | None = None
    voice: str = "alloy"
    tools: list[str] = Field(default_factory=list, description="Python modules of @tool functions")
    tools_file: str | None = None
    python_path: list[str] = Field(default_factory=list, description="where the tool modules are")
    transfer_to: dict[str, str] = Field(default_factory=dict, description="name -> number")
    tool_environment: dict[str, str] = Field(default_factory=dict, description="{out}: the run's folder")


class Rule(_Strict):
    """The fake model's rule: when the caller's words match ``when``, say ``say``, call ``call``."""

    when: str
    call: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    say: str | None = None

    @field_validator("when")
    @classmethod
    def _pattern(cls, value: str) -> str:
        re.compile(value)
        return value


class Turn(_Strict):
    """One thing the caller does: say text (spoken by espeak-ng), play a WAV, press keys, stay silent or
    hang up. ``barge_in_after_seconds``: do it that far into the agent's answer instead of after it."""

    say: str | None = None
    wav: str | None = None
    press: str | None = Field(None, pattern=r"^[0-9*#]+$")
    silence_seconds: float | None = Field(None, gt=0, le=120)
    hang_up: bool = False
    barge_in_after_seconds: float | None = Field(None, gt=0, le=60)

    @model_validator(mode="after")
    def _one_thing(self) -> Turn:
        done = [name for name in ("say", "wav", "press", "silence_seconds") if getattr(self, name) is not None]
        if len(done) + self.hang_up != 1:
            raise ValueError("a turn does exactly one of: say, wav, press, silence_seconds, hang_up")
        return self

    def describe(self) -> str:
        if self.say is not None:
            return f"say {self.say!r}"
        if self.wav is not None:
            return f"play {self.wav}"
        if self.press is not None:
            return f"press {len(self.press)} key(s)"
        if self.silence_seconds is not None:
            return f"stay silent {self.silence_seconds:g} s"
        return "hang up"


class Persona(_Strict):
    """A caller played by a second Realtime session with these instructions. Offline a fake caller model
    plays it, saying ``fake_lines`` in order, one per turn of the agent's (a real model ignores them)."""

    instructions: str
    voice: str = "alloy"
    max_turns: int = Field(6, ge=1, le=50, description="the persona's answers before the call is over")
    fake_lines: list[str] = Field(default_factory=list, description="the fake caller model's lines")


class Caller(_Strict):
    turns: list[Turn] = Field(default_factory=list)
    persona: Persona | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Caller:
        if bool(self.turns) == (self.persona is not None):
            raise ValueError("a caller has either turns or a persona")
        return self


class ToolExpected(_Strict):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict, description="a subset of the call's arguments")


class Expect(_Strict):
    tools: list[ToolExpected] = Field(
        default_factory=list, description="called, in this order (others may come between)"
    )
    no_other_tools: bool = False
    ends: Literal["hangup", "transfer", "open", "caller"] | None = None
    transfer_to: str | None = None
    transcript_contains: list[str] = Field(default_factory=list)
    transcript_excludes: list[str] = Field(default_factory=list)
    max_turn_latency_ms: int | None = Field(None, gt=0)
    max_call_seconds: float | None = Field(None, gt=0)
    min_call_seconds: float | None = Field(None, ge=0)
    refusals_allowed: bool = False

    @field_validator("transcript_contains", "transcript_excludes")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            re.compile(pattern)
        return value


class Scenario(_Strict):
    name: str
    description: str = ""
    time_limit_seconds: float = Field(60.0, gt=0, le=3600, description="of call time")
    settle_seconds: float = Field(2.0, gt=0, le=60, description="quiet after the last turn before it is over")
    agent: Agent = Field(default_factory=Agent)
    rules: list[Rule] = Field(default_factory=list)
    caller: Caller
    expect: Expect = Field(default_factory=Expect)
    path: Path = Field(Path("."), exclude=True)

    def resolve(self, relative: str) -> Path:
        return (self.path.parent / relative).resolve()


def scenario_files(paths: list[str]) -> list[Path]:
    """The files named, and the ``*.toml`` files of folders named, in order."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found.extend(sorted(path.glob("*.toml")) if path.is_dir() else [path])
    return found


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Scenario.model_validate({**data, "path": path})
    except ValidationError as exc:
        problems = [
            f"{path}:{_line_of(text, error['loc'])}: {_dotted(error['loc'])}: {error['msg']}" for error in exc.errors()
        ]
        raise ScenarioError("\n".join(problems)) from None


def _dotted(loc: tuple[int | str, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".") or "(file)"


def _line_of(text: str, loc: tuple[int | str, ...]) -> int:
    """The line where the field at ``loc`` is (or the nearest enclosing table): a key ``name =``, a table
    ``[a.name]`` or the n-th ``[[a.name]]`` at or after the line found for the part before it."""
    lines = text.splitlines()
    at, table = 0, ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            headers = [n for n, line in enumerate(lines) if line.strip() == f"[[{table}]]" and n >= at]
            if part < len(headers):
                at = headers[part]
            continue
        table = f"{table}.{part}" if table else part
        key = re.compile(rf"^\s*(\[\[?{re.escape(table)}\]\]?\s*$|{re.escape(part)}\s*=)")
        found = next((n for n in range(at, len(lines)) if key.match(lines[n])), None)
        if found is None:
            continue  # a table only named in its sub-tables' headers (``[[caller.turns]]``)
        at = found
        if index + 1 < len(loc) and isinstance(loc[index + 1], int) and not lines[found].lstrip().startswith("[["):
            break  # an inline list: this line is as near as it gets
    return at + 1
