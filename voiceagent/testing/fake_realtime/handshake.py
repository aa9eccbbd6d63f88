"""The fake Realtime server's handshake rules: which URLs name a Realtime endpoint (and in which
dialect), and which credentials get in (docs/protocol.md, "## 2. The Realtime API", "### Two dialects"
and "### Authentication"). Pure: the server asks these before accepting a WebSocket.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers


@dataclass(frozen=True)
class Target:
    """What a handshake URL asks for."""

    dialect: str  # ga | preview
    model: str


@dataclass(frozen=True)
class Rejection:
    """A refused handshake: the HTTP status and why."""

    status: int
    reason: str


def parse_target(path: str) -> Target | Rejection:
    """The dialect and model of a handshake path, or why the real service would refuse it."""
    url = urlsplit(path)
    query = {key: values[-1] for key, values in parse_qs(url.query).items()}
    if url.path in ("/openai/v1/realtime", "/v1/realtime"):
        if "api-version" in query and url.path.startswith("/openai/"):
            return Rejection(401, "the GA endpoint takes no api-version")
        if not query.get("model"):
            return Rejection(400, "missing required query parameter: model")
        return Target("ga", query["model"])
    if url.path == "/openai/realtime":
        if not query.get("api-version"):
            return Rejection(400, "missing required query parameter: api-version")
        if not query.get("deployment"):
            return Rejection(400, "missing required query parameter: deployment")
        return Target("preview", query["deployment"])
    return Rejection(404, f"no Realtime endpoint at {url.path}")


def check_auth(headers: Headers, api_key: str | None, bearer_tokens: frozenset[str]) -> Rejection | None:
    """``None`` when the headers carry a valid ``api-key`` or ``Authorization: Bearer`` credential."""
    if api_key is not None and headers.get("api-key") == api_key:
        return None
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token and (token == api_key or token in bearer_tokens):
        return None
    return Rejection(401, "invalid or missing credentials")
