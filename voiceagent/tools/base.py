"""What every tool shares: the result the model gets back, the start-up error, and the shaping of outputs.

An output is always a JSON object in a string (the ``output`` of a ``function_call_output`` item): a JSON
object answer goes as it is, any other answer becomes ``{"result": <answer>}``, a failure is
``{"error": "..."}``. Outputs are capped at ``MAX_OUTPUT_CHARS``: a longer answer is sent as the first part of
its JSON text, ``{"result": "<JSON text, cut>", "truncated": "..."}``, so the model knows it saw only part.
"""

from __future__ import annotations

import abc
import json
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic_core import to_jsonable_python

from voiceagent.realtime.events import ToolSpec
from voiceagent.redaction import REDACTED as REDACTED  # re-exported: what a redacted secret reads as

MAX_OUTPUT_CHARS = 8192  # ~2k tokens: enough for an answer a caller can be told, small next to a session's context
MAX_MESSAGE_CHARS = 300  # of an exception's message in an error output


class ToolConfigError(ValueError):
    """A tool cannot be offered to the model: raised at start-up, the message names the tool (and its module
    or file) and what is wrong, never a secret's value."""


@dataclass(frozen=True)
class ToolResult:
    """What a call of a tool produced. ``output`` goes to the model as the ``function_call_output``: always a
    JSON object in a string. ``error``: when not ``ok``, a short reason that is safe to log (it never carries
    argument values or secrets; ``output`` may carry more, for the model)."""

    output: str
    ok: bool
    error: str | None = None


TOOL_THREADS = 8  # sync tools running at once, per ToolBox


class ToolContext:
    """What a running tool may borrow from its ToolBox: one HTTP client, made on first use, shared by every
    HTTP tool of the box (one connection pool), and the threads sync tools run on — their own, so that
    nothing else sharing the event loop's default pool (a hung database's reads) can hold a tool up. Both
    are closed with the box."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._threads: ThreadPoolExecutor | None = None

    @property
    def threads(self) -> ThreadPoolExecutor:
        if self._threads is None:
            self._threads = ThreadPoolExecutor(TOOL_THREADS, thread_name_prefix="voiceagent-tool")
        return self._threads

    @property
    def http(self) -> httpx.AsyncClient:
        if self._client is None:
            # No redirects: a tool's request (and its credentials) goes to the URL the operator wrote, nowhere
            # else. No trust_env: no proxy or .netrc taken from the process environment behind the tools
            # file's back (what a tool sends is what the file says).
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        threads, self._threads = self._threads, None
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)  # a sync tool still running runs on to its end
        if client is not None:
            await client.aclose()


class Tool(abc.ABC):
    """One function the model may call. ``spec`` is what the model is told; ``timeout_seconds`` bounds one
    call (``None``: the ToolBox's own). Implementations: ``PythonTool`` (voiceagent.tools.python) and
    ``HttpTool`` (voiceagent.tools.http)."""

    spec: ToolSpec
    timeout_seconds: float | None = None
    origin: str = "code"  # where it was declared, for messages: "module 'x'", "file 'tools.json'"

    @property
    def name(self) -> str:
        return self.spec.name

    @abc.abstractmethod
    async def invoke(self, arguments: str, context: ToolContext) -> ToolResult:
        """Validate ``arguments`` (the model's JSON text) and run. May raise: the ToolBox turns an exception
        into an error result and bounds the call with its timeout."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r})"


# ---------------------------------------------------------------- outputs


def dumps(value: Any) -> str:
    """Compact JSON text of ``value`` (which must already be JSON-able)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def answer_output(value: Any) -> str:
    """The output for a tool's answer: dataclasses, pydantic models, dates, enums, ... become JSON (anything
    else becomes its ``str``); a JSON object goes as it is, anything else as ``{"result": ...}``; capped."""
    jsonable = _finite(to_jsonable_python(value, fallback=str))
    if not isinstance(jsonable, dict):
        jsonable = {"result": jsonable}
    return cap(dumps(jsonable))


def _finite(value: Any) -> Any:
    """NaN and infinities (which JSON has no words for) as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def cap(output: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """``output`` (JSON text) itself when it is short enough; otherwise a JSON object holding its first part
    and a note that it was cut, never longer than ``limit`` characters."""
    if len(output) <= limit:
        return output
    note = f"the answer was {len(output)} characters; only the first part is shown"
    keep = limit
    while True:
        wrapped = dumps({"result": output[:keep], "truncated": note})
        if len(wrapped) <= limit or keep == 0:
            return wrapped
        # JSON escaping makes the wrapped text longer than what it holds: shrink in proportion
        keep = max(0, min(keep - 1, keep * limit // len(wrapped) - 1))


def shorten(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_result(message: str, *, error: str, **extra: str) -> ToolResult:
    """A failure: ``{"error": message, **extra}`` for the model, ``error`` for the logs."""
    return ToolResult(output=cap(dumps({"error": message, **extra})), ok=False, error=error)
