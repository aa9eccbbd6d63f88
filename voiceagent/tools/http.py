"""HTTP tools: declared in a JSON file, each one a request to a service the operator runs.

::

    {"tools": [{"name": "update_booking", "description": "...",
                "parameters": {"type": "object", "properties": {...}, "required": [...]},
                "url": "https://bookings.example.com/update", "method": "POST",
                "headers": {"Authorization": "Bearer ${BOOKING_API_TOKEN}"}, "timeout_seconds": 5}]}

``${VAR}`` in the URL and the header values is taken from the environment at start-up (a variable that is
not set, or empty, stops the start). The arguments are checked against ``parameters`` (jsonschema; with
``additionalProperties: false`` unless the schema says otherwise, so the model cannot add fields the
operator did not declare) and sent as the JSON body, or for GET as the query string. The URL's own query
parameters are fixed: an argument of the same name is refused, never let override them. The values put
in from the environment and the header values are secrets: they never appear in an output, an error, a
repr or an exception (a response that echoes one gets it redacted, in every encoding: see
``voiceagent.redaction``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx

# jsonschema ships no types (types-jsonschema is not a dependency): its objects are Any here
from jsonschema import exceptions as jsonschema_exceptions  # type: ignore[import-untyped, unused-ignore]
from jsonschema import validators  # type: ignore[import-untyped, unused-ignore]

from voiceagent.realtime.events import ToolSpec
from voiceagent.redaction import Redactor
from voiceagent.text import valid_text

from .base import (
    Tool,
    ToolConfigError,
    ToolContext,
    ToolResult,
    cap,
    dumps,
    error_result,
    shorten,
)
from .python import NAME_PATTERN, invalid_arguments, parse_arguments

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_BODY_BYTES = 256 * 1024  # read of a response at most; the model gets at most MAX_OUTPUT_CHARS of it
ERROR_BODY_CHARS = 500  # of an error response's body, told to the model
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_KEYS = frozenset({"name", "description", "parameters", "url", "method", "headers", "timeout_seconds"})
_REQUIRED = ("name", "description", "url")
_MIN_SECRET_CHARS = 8  # a shorter value ("1", "8099", "no-cache") is no secret, and redacting it would maul answers
_NOT_SECRET_HEADERS = frozenset({"accept", "content-type", "user-agent", "accept-language"})


class HttpTool(Tool):
    """One request per call. The URL and headers hold secrets once the environment is filled in: the repr
    names the tool and the method only."""

    def __init__(
        self,
        spec: ToolSpec,
        *,
        url: str,
        method: str,
        headers: Mapping[str, str],
        timeout_seconds: float,
        secrets: frozenset[str],
        origin: str = "code",
    ) -> None:
        self.spec = spec
        self.origin = origin
        self.method = method
        self.timeout_seconds = timeout_seconds
        self._url = url
        self._headers = dict(headers)
        self._fixed_query = frozenset(httpx.URL(url).params.keys())
        self.secrets = secrets
        self._redact = Redactor(secrets)
        self._validator = validators.validator_for(spec.parameters, default=validators.Draft202012Validator)(
            spec.parameters
        )

    def __repr__(self) -> str:
        return f"HttpTool({self.spec.name!r}, method={self.method!r})"

    @property
    def sends_secrets_in_clear(self) -> bool:
        """Plain ``http://`` to a host other than this machine, with a secret in the URL or a header."""
        url = httpx.URL(self._url)
        loopback = url.host in ("localhost", "::1") or url.host.startswith("127.")
        return url.scheme == "http" and not loopback and bool(self.secrets)

    def _safe(self, text: str) -> str:
        """What may leave this tool: every form of every secret redacted, and valid UTF-8."""
        return valid_text(self._redact(text))

    async def invoke(self, arguments: str, context: ToolContext) -> ToolResult:
        parsed = parse_arguments(arguments)
        if isinstance(parsed, ToolResult):
            return parsed
        name = self.spec.name
        if self.method == "GET" and isinstance(parsed, dict) and (fixed := sorted(self._fixed_query & set(parsed))):
            return error_result(
                f"{', '.join(fixed)} {'is' if len(fixed) == 1 else 'are'} fixed by the operator and cannot be set",
                error=f"arguments name fixed parameters of {name}",
            )
        errors = sorted(self._validator.iter_errors(parsed), key=lambda error: [str(part) for part in error.path])
        if errors:
            return invalid_arguments(
                self.spec, [(tuple(error.path), str(error.validator), error.message) for error in errors]
            )
        try:
            url = httpx.URL(self._url)
            if self.method == "GET":  # merged into the URL's own query (httpx's params= would replace it)
                url = url.copy_merge_params(_query(parsed))
            payload = None if self.method == "GET" else parsed
            async with context.http.stream(
                self.method, url, headers=self._headers, json=payload, timeout=self.timeout_seconds
            ) as response:
                body = await _read_capped(response)
                status = response.status_code
                encoding = response.charset_encoding or "utf-8"
        except httpx.TimeoutException:
            return error_result(
                f"the tool did not answer within {self.timeout_seconds:g} s",
                error=f"timed out after {self.timeout_seconds:g} s",
            )
        except Exception as exc:
            # The message of a transport error (or of httpx.InvalidURL, ...) may hold the URL and with it a
            # secret: only the exception's type is told
            kind = type(exc).__name__
            return error_result(f"could not reach {name}: {kind}", error=f"{kind} calling {name}")
        text = self._safe(_decode(body, encoding))
        if status >= 300:
            note = " (redirects are not followed)" if status < 400 else ""
            return error_result(
                f"HTTP {status} from {name}{note}",
                error=f"HTTP {status} from {name}",
                body=self._safe(shorten(text, ERROR_BODY_CHARS)),
            )
        # parsing un-escapes what the body escaped (``\/``, ``\uXXXX``): what is sent is redacted again
        return ToolResult(output=cap(self._safe(_answer(text, status))), ok=True)


def _query(arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as query parameters: lists repeat the key, objects go as JSON text, booleans as
    ``true``/``false``, null as empty."""
    query: dict[str, Any] = {}
    for key, value in arguments.items():
        if isinstance(value, dict):
            query[key] = dumps(value)
        elif isinstance(value, list):
            query[key] = [dumps(item) if isinstance(item, dict | list) else item for item in value]
        else:
            query[key] = value
    return query


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_BODY_BYTES:
            break
    return bytes(body[:MAX_BODY_BYTES])


def _decode(body: bytes, encoding: str) -> str:
    try:
        return body.decode(encoding, errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _answer(text: str, status: int) -> str:
    """A JSON body re-serialised (an object as it is, anything else as ``{"result": ...}``); a text body as
    ``{"result": text}``; an empty body as ``{"status": <code>}``."""
    if not text.strip():
        return dumps({"status": status})
    try:
        value = json.loads(text)
        return dumps(value if isinstance(value, dict) else {"result": value})
    except ValueError:  # not JSON (or NaN/Infinity, which allow_nan=False refuses to send on)
        return dumps({"result": text})


# ---------------------------------------------------------------- the tools file


def tools_in_file(path: str, env: Mapping[str, str], *, timeout_seconds: float) -> list[HttpTool]:
    """The HTTP tools a file declares, in its order. ``timeout_seconds``: for a tool that sets none."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ToolConfigError(f"cannot read the tools file {path!r}: {type(exc).__name__}: {exc}") from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ToolConfigError(f"the tools file {path!r} is not JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("tools"), list) or set(document) != {"tools"}:
        raise ToolConfigError(f'the tools file {path!r} must hold {{"tools": [...]}}, one object per tool')
    return [_tool_from_entry(entry, index, path, env, timeout_seconds) for index, entry in enumerate(document["tools"])]


def _tool_from_entry(entry: Any, index: int, path: str, env: Mapping[str, str], default_timeout: float) -> HttpTool:
    if not isinstance(entry, dict):
        raise ToolConfigError(f"tool #{index + 1} in {path!r} is not a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ToolConfigError(f"tool #{index + 1} in {path!r}: 'name' must be 1-64 letters, digits, '_' or '-'")
    where = f"tool {name!r} in {path!r}"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ToolConfigError(f"{where}: unknown keys {unknown} (known: {sorted(_KEYS)})")
    for key in _REQUIRED:
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise ToolConfigError(f"{where}: {key!r} must be a non-empty string")
    parameters = entry.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, dict) or parameters.get("type") != "object":
        raise ToolConfigError(f"{where}: 'parameters' must be a JSON schema of type 'object'")
    parameters = {"additionalProperties": False, **parameters}  # only what the operator declared, unless said
    try:
        validators.validator_for(parameters, default=validators.Draft202012Validator).check_schema(parameters)
    except jsonschema_exceptions.SchemaError as exc:
        raise ToolConfigError(f"{where}: 'parameters' is not a valid JSON schema: {shorten(exc.message)}") from exc
    method = entry.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise ToolConfigError(f"{where}: method {method!r} is not one of {', '.join(METHODS)}")
    timeout = entry.get("timeout_seconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
        raise ToolConfigError(f"{where}: 'timeout_seconds' must be a positive number")
    headers = entry.get("headers", {})
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ToolConfigError(f"{where}: 'headers' must be an object of strings")

    secrets: set[str] = set()

    def fill(template: str, what: str) -> str:
        def value(match: re.Match[str]) -> str:
            variable = match[1]
            found = env.get(variable)
            if not found:
                raise ToolConfigError(f"{where}: {what} uses ${{{variable}}}, which is not set in the environment")
            secrets.add(found)
            return found

        return _VARIABLE.sub(value, template)

    url = fill(entry["url"], "the URL")
    try:
        parsed_url = httpx.URL(url)
    except Exception as exc:  # the template is shown, never the URL with the environment's values in it
        raise ToolConfigError(f"{where}: the URL {entry['url']!r} is not a valid URL") from exc
    if parsed_url.scheme not in ("http", "https") or not parsed_url.host:
        raise ToolConfigError(f"{where}: the URL {entry['url']!r} must be an http:// or https:// URL with a host")
    declared = parameters.get("properties")
    clashing = sorted(set(httpx.URL(entry["url"]).params.keys()) & set(declared if isinstance(declared, dict) else ()))
    if clashing and method.upper() == "GET":
        raise ToolConfigError(f"{where}: {clashing} are fixed in the URL and cannot be parameters too")
    filled: dict[str, str] = {}
    for header, template in headers.items():
        filled[header] = fill(template, f"header {header!r}")
        if any(c in filled[header] or c in header for c in "\r\n\0") or not header.strip():
            raise ToolConfigError(f"{where}: header {header!r} has a line break or an empty name")
        if header.lower() not in _NOT_SECRET_HEADERS and len(filled[header]) >= _MIN_SECRET_CHARS:
            secrets.add(filled[header])
    spec = ToolSpec(name=name, description=entry["description"].strip(), parameters=parameters)
    return HttpTool(
        spec,
        url=url,
        method=method.upper(),
        headers=filled,
        timeout_seconds=float(timeout) if timeout is not None else default_timeout,
        secrets=frozenset(s for s in secrets if len(s) >= _MIN_SECRET_CHARS),
        origin=f"file {path!r}",
    )
