"""One WebSocket connection to the Realtime model: URL, authentication, and events in our vocabulary.

``ModelConnection.open(target)`` connects (or raises ``ModelConnectError``); ``send(command)`` encodes
a command in the target's dialect; iterating yields decoded ``ModelEvent`` objects until the server
closes, after which ``close_code`` and ``close_reason`` say why. Reconnecting is the caller's job: a
connection is one WebSocket, and each ``open`` fetches fresh credentials.

Secrets (API keys, Entra ID tokens) never appear in exception messages, reprs or log lines, including
the ``websockets`` library's own debug log of the handshake headers (see ``_RedactingLogger``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voiceagent.realtime.dialect import Dialect, dialect_for
from voiceagent.realtime.events import ModelCommand, ModelEvent

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

    from voiceagent.realtime.target import ModelTarget

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # session and response events can be large; audio deltas are small
PING_INTERVAL_SECONDS = 3.0  # a dead model is noticed within PING_INTERVAL + PING_TIMEOUT
CLOSE_TIMEOUT_SECONDS = 1.0  # a hung-up caller's model session is gone within a second
_WS_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_AUTH_HEADERS = ("api-key", "Authorization")
_BODY_EXCERPT_CHARS = 300

LoggerLike = logging.Logger | logging.LoggerAdapter[logging.Logger]


class ModelConnectError(Exception):
    """Connecting to the model failed. ``status`` is the HTTP status of a rejected handshake, if any.

    The message never contains a key or token.
    """

    def __init__(self, message: str, status: int | None = None, *, sign_in: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.sign_in = sign_in  # no token could be had (Entra ID): nothing reached the model


# ---------------------------------------------------------------- URL and headers


def realtime_url(target: ModelTarget) -> str:
    """The WebSocket URL for ``target``.

    Azure GA ``…/openai/v1/realtime?model=DEPLOYMENT`` (no api-version), Azure preview
    ``…/openai/realtime?api-version=V&deployment=DEPLOYMENT``, OpenAI ``…/v1/realtime?model=MODEL``.
    ``http`` becomes ``ws`` and ``https`` ``wss``; a port is kept. An endpoint that already ends in the
    API's base path (``/openai``, ``/openai/v1``, or ``/v1`` for OpenAI) is not given it twice.
    """
    parts = urlsplit(target.endpoint)
    scheme = _WS_SCHEMES.get(parts.scheme.lower())
    host = parts.netloc.rpartition("@")[2]  # never carry credentials in a URL
    if scheme is None or not host:
        raise ValueError(f"model endpoint {target.endpoint!r} must look like https://host[:port]")
    base = parts.path.rstrip("/")
    if target.provider == "azure":
        base = _without_suffix(base, ("/openai/v1", "/openai"))
        if target.dialect == "ga":
            path, query = "/openai/v1/realtime", {"model": target.deployment}
        else:
            path = "/openai/realtime"
            query = {"api-version": target.api_version or "", "deployment": target.deployment}
    elif target.provider == "openai":
        base = _without_suffix(base, ("/v1",))
        path, query = "/v1/realtime", {"model": target.deployment}
    else:
        raise ValueError(f"unknown model provider {target.provider!r}")
    return urlunsplit((scheme, host, base + path, urlencode(query, quote_via=quote), ""))


def _without_suffix(path: str, suffixes: Iterable[str]) -> str:
    for suffix in suffixes:
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


async def auth_headers(target: ModelTarget, credential: AsyncTokenCredential | None) -> dict[str, str]:
    """The handshake headers for ``target``: authentication, plus ``OpenAI-Beta`` for preview on OpenAI.

    Azure without an API key uses Entra ID: a fresh token from ``credential`` on every call.
    """
    if target.provider == "azure":
        if target.api_key:
            return {"api-key": target.api_key}
        return {"Authorization": "Bearer " + await _entra_token(credential)}
    if target.provider == "openai":
        if not target.api_key:
            raise ModelConnectError("OpenAI needs an API key (OPENAI_API_KEY)")
        headers = {"Authorization": "Bearer " + target.api_key}
        if target.dialect == "preview":
            headers["OpenAI-Beta"] = "realtime=v1"
        return headers
    raise ModelConnectError(f"unknown model provider {target.provider!r}")


async def _entra_token(credential: AsyncTokenCredential | None) -> str:
    if credential is None:
        raise ModelConnectError("Azure OpenAI without an API key needs an Entra ID credential")
    try:
        access = await credential.get_token(ENTRA_SCOPE)
    except Exception as exc:  # azure.identity raises several unrelated types, with pages of advice
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelConnectError(
            f"could not get an Entra ID token: {type(exc).__name__}: {first}", sign_in=True
        ) from None
    return access.token


def _secrets(headers: Mapping[str, str]) -> list[str]:
    values = [headers[name] for name in _AUTH_HEADERS if name in headers]
    secrets = values + [value.removeprefix("Bearer ") for value in values]
    return sorted({secret for secret in secrets if secret}, key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """Hands ``websockets`` a logger that cannot leak our handshake headers (it debug-logs them)."""

    def __init__(self, logger: logging.Logger, secrets: list[str]) -> None:
        super().__init__(logger, {})
        self._secrets = secrets

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, "%s", redact(text, self._secrets), **kwargs)


# ---------------------------------------------------------------- the connection


async def open_model_socket(
    url: str, headers: Mapping[str, str], *, open_timeout: float | None = 10.0, logger: LoggerLike | None = None
) -> ClientConnection:
    """The WebSocket to the model, with the limits and keep-alive every model connection uses (the
    bare-relay benchmark's too, so that it measures the same socket)."""
    return await connect(
        url,
        additional_headers=dict(headers),
        open_timeout=open_timeout,
        max_size=MAX_MESSAGE_BYTES,
        ping_interval=PING_INTERVAL_SECONDS,
        ping_timeout=PING_INTERVAL_SECONDS,
        close_timeout=CLOSE_TIMEOUT_SECONDS,
        compression=None,  # base64 audio barely compresses; deflating every frame costs real CPU
        logger=logger,
    )


class ModelConnection:
    """One open WebSocket to the model, speaking our vocabulary. Build it with ``await open(...)``."""

    def __init__(self, websocket: ClientConnection, dialect: Dialect, url: str, logger: LoggerLike) -> None:
        self._websocket = websocket
        self.dialect = dialect
        self.url = url
        self._log = logger

    @classmethod
    async def open(
        cls,
        target: ModelTarget,
        *,
        credential: AsyncTokenCredential | None = None,
        timeout: float = 10.0,  # the handshake's open_timeout, not a deadline for the call
        logger: LoggerLike | None = None,
    ) -> ModelConnection:
        """Connect to ``target`` (fresh credentials each time) or raise ``ModelConnectError``."""
        log = logger if logger is not None else logging.getLogger(__name__)
        try:
            url = realtime_url(target)
        except ValueError as exc:
            raise ModelConnectError(str(exc)) from None
        headers = await auth_headers(target, credential)
        secrets = _secrets(headers)
        try:
            websocket = await open_model_socket(
                url,
                headers,
                open_timeout=timeout,
                logger=_RedactingLogger(logging.getLogger("websockets.client"), secrets),
            )
        except Exception as exc:  # refused, rejected, timed out, bad URI...: one scrubbed type
            raise _connect_error(exc, url, secrets) from None
        log.debug("connected to the Realtime model at %s (%s dialect)", url, target.dialect)
        return cls(websocket, dialect_for(target), url, log)

    def __repr__(self) -> str:
        state = "open" if self.close_code is None else f"closed {self.close_code}"
        return f"<ModelConnection {self.dialect.name} {self.url} {state}>"

    @property
    def close_code(self) -> int | None:
        """The close code the server sent (1006 if the connection dropped); None while open."""
        return self._websocket.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason the server sent; None while open."""
        return self._websocket.close_reason

    async def send(self, command: ModelCommand) -> None:
        """Encode and send ``command``. After the connection closed it is dropped, not raised: the end
        of iteration is the one signal that the connection is over."""
        message = orjson.dumps(self.dialect.encode(command)).decode()
        try:
            await self._websocket.send(message)
        except ConnectionClosed:
            self._log.debug("model connection closed; dropped a %s", type(command).__name__)

    def __aiter__(self) -> AsyncIterator[ModelEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[ModelEvent]:
        try:
            async for message in self._websocket:
                if not isinstance(message, str):
                    self._log.warning("ignored a binary frame of %d bytes from the model", len(message))
                    continue
                try:
                    event = orjson.loads(message)
                except ValueError:
                    self._log.warning("ignored a non-JSON text frame of %d characters from the model", len(message))
                    continue
                yield self.dialect.decode(event)
        except ConnectionClosed:
            pass
        self._log.debug("model connection closed: %s %s", self.close_code, self.close_reason)

    async def close(self) -> None:
        """Close the connection (idempotent; waits briefly for the server's close frame)."""
        await self._websocket.close()


def _connect_error(exc: Exception, url: str, secrets: list[str]) -> ModelConnectError:
    """A scrubbed ``ModelConnectError`` for a failed connect: status, reason and a body excerpt."""
    if isinstance(exc, InvalidStatus):
        response = exc.response
        body = redact((response.body or b"").decode("utf-8", "replace"), secrets)[:_BODY_EXCERPT_CHARS].strip()
        detail = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        message = f"the Realtime model at {url} refused the connection: {detail}" + (f": {body}" if body else "")
        return ModelConnectError(redact(message, secrets), status=response.status_code)
    if isinstance(exc, TimeoutError):
        return ModelConnectError(f"timed out connecting to the Realtime model at {url}")
    description = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ModelConnectError(redact(f"could not connect to the Realtime model at {url}: {description}", secrets))
