"""The ToolBox: the tools of a deployment, loaded and checked at start-up, run by name during a call."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence
from types import TracebackType

from voiceagent.realtime.events import ToolSpec
from voiceagent.text import valid_text

from .base import MAX_MESSAGE_CHARS, Tool, ToolConfigError, ToolContext, ToolResult, error_result, shorten
from .http import HttpTool, tools_in_file
from .python import tools_in_module

DEFAULT_TIMEOUT_SECONDS = 10.0


class ToolBox:
    """Tools by name. ``specs`` (what the model is told) keeps the order the tools were given in. ``run``
    never raises (except for its own cancellation): every failure is a ``ToolResult`` with ``ok=False``.
    One HTTP client serves all HTTP tools; ``aclose`` closes it."""

    def __init__(self, tools: Iterable[Tool] = (), *, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if not timeout_seconds > 0:
            raise ToolConfigError(f"the tools' timeout must be a positive number of seconds, not {timeout_seconds!r}")
        self.timeout_seconds = timeout_seconds
        self._tools: dict[str, Tool] = {}
        for item in tools:
            if item.name in self._tools:
                raise ToolConfigError(
                    f"two tools are named {item.name!r}: {_where(self._tools[item.name])} and {_where(item)}"
                )
            self._tools[item.name] = item
        self.specs: tuple[ToolSpec, ...] = tuple(item.spec for item in self._tools.values())
        self._context = ToolContext()

    def names(self) -> frozenset[str]:
        return frozenset(self._tools)

    def warnings(self) -> list[tuple[str, str]]:
        """Tools that are valid but likely to hurt, as (event, detail): logged at start-up."""
        return [
            (
                "tool_secrets_in_clear",
                f"tool {item.name!r} sends a secret over plain http:// to another host: use https://",
            )
            for item in self._tools.values()
            if isinstance(item, HttpTool) and item.sends_secrets_in_clear
        ]

    def secrets(self) -> frozenset[str]:
        """The values the tools were given from the environment (for the log scrubber)."""
        return frozenset().union(*(item.secrets for item in self._tools.values() if isinstance(item, HttpTool)))

    def __len__(self) -> int:
        return len(self._tools)

    def __repr__(self) -> str:
        return f"ToolBox({sorted(self._tools)})"

    async def run(self, name: str, arguments: str) -> ToolResult:
        """Call the tool ``name`` with the model's ``arguments`` (JSON text), within its timeout."""
        found = self._tools.get(name)
        if found is None:
            shown = shorten(name, 64)
            return error_result(f"there is no tool named {shown!r}", error=f"unknown tool {shown!r}")
        seconds = found.timeout_seconds if found.timeout_seconds is not None else self.timeout_seconds
        try:
            async with asyncio.timeout(seconds) as deadline:
                result = await found.invoke(arguments, self._context)
            output = valid_text(result.output)  # a lone surrogate in an answer could not be sent on
            return result if output is result.output else dataclasses.replace(result, output=output)
        except TimeoutError as exc:
            if deadline.expired():
                # A sync tool's thread cannot be stopped: it runs on to its end, its answer unused
                return error_result(
                    f"the tool did not answer within {seconds:g} s", error=f"timed out after {seconds:g} s"
                )
            return _raised(exc)
        except Exception as exc:
            return _raised(exc)

    async def aclose(self) -> None:
        await self._context.aclose()

    async def __aenter__(self) -> ToolBox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


def _raised(exc: BaseException) -> ToolResult:
    """The model is told the exception's type and message; the logs get the type only (the message may hold
    what the caller said)."""
    kind = type(exc).__name__
    message = shorten(str(exc), MAX_MESSAGE_CHARS)
    return error_result(f"{kind}: {message}" if message else kind, error=f"raised {kind}")


def load_toolbox(
    *,
    modules: Sequence[str] = (),
    tools_file: str | None = None,
    env: Mapping[str, str],
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    reserved_names: Collection[str] = (),
) -> ToolBox:
    """The tools of ``modules`` (Python modules with ``@tool`` functions, imported by name) and of
    ``tools_file`` (HTTP tools, JSON), in that order. Everything is checked here, at start-up: a
    ``ToolConfigError`` names the tool, its module or file, and what is wrong. ``reserved_names``: names
    taken by built-in tools (e.g. ``end_call``), which no tool may reuse. ``env`` fills in ``${VAR}`` in the
    tools file."""
    if isinstance(modules, str):  # "a,b" as VOICEAGENT_TOOLS holds it, rather than the letters of one name
        modules = modules.split(",")
    tools: list[Tool] = []
    seen: set[int] = set()  # one function imported into two listed modules is one tool
    for module_name in dict.fromkeys(name.strip() for name in modules if name.strip()):
        for found in tools_in_module(module_name):
            if id(found.fn) not in seen:
                seen.add(id(found.fn))
                tools.append(found)
    if tools_file is not None:
        tools.extend(tools_in_file(tools_file, env, timeout_seconds=timeout_seconds))
    reserved = set(reserved_names)
    for item in tools:
        if item.name in reserved:
            raise ToolConfigError(f"{_where(item)}: the name {item.name!r} is taken by a built-in tool")
    by_name: dict[str, Tool] = {}
    for item in tools:
        if item.name in by_name:
            raise ToolConfigError(f"two tools are named {item.name!r}: {_where(by_name[item.name])} and {_where(item)}")
        by_name[item.name] = item
    return ToolBox(tools, timeout_seconds=timeout_seconds)


def _where(item: Tool) -> str:
    return f"tool {item.name!r} in {item.origin}"
