"""Validate Realtime events against the pydantic types the ``openai`` package publishes.

Used by the fake Realtime server (what clients send it) and by tests (what it sends). The ``openai``
package is a test-time dependency only; importing this module without it fails with a clear message.
"""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, Union

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

try:
    from openai.types import realtime as _ga
    from openai.types.beta import realtime as _preview
except ImportError as exc:  # pragma: no cover - exercised only without the dev extra
    raise ImportError("voiceagent.testing needs the 'openai' package: pip install 'voiceagent[testing]'") from exc

DIALECTS = ("ga", "preview")


def _discriminated(union: Any) -> TypeAdapter[Any]:
    inner = typing.get_args(union)[0]  # Annotated[Union[...], PropertyInfo] → Union[...]
    members = typing.get_args(inner) or typing.get_args(union)
    # built at run time from the openai package's members: a type checker cannot see it as a TypeForm
    discriminated: Any = Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007
    return TypeAdapter(discriminated)


@functools.cache
def _adapter(dialect: str, side: str) -> TypeAdapter[Any]:
    module = {"ga": _ga, "preview": _preview}[dialect]
    union = module.RealtimeClientEvent if side == "client" else module.RealtimeServerEvent
    return _discriminated(union)


def _extras(value: Any, path: str) -> list[str]:
    found: list[str] = []
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            found.append(f"{path}.{key}: unknown field")
        for name in type(value).model_fields:
            found.extend(_extras(getattr(value, name), f"{path}.{name}"))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.extend(_extras(item, f"{path}[{i}]"))
    elif isinstance(value, dict):
        for key, item in value.items():
            found.extend(_extras(item, f"{path}.{key}"))
    return found


def _validate(dialect: str, side: str, event: Any) -> list[str]:
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r}")
    if not isinstance(event, dict):
        return [f"event is a {type(event).__name__}, not a JSON object"]
    kind = event.get("type", "<no type>")
    try:
        model = _adapter(dialect, side).validate_python(event)
    except ValidationError as exc:
        return [f"{kind}: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())]
    problems = [f"{kind}: {p}" for p in _extras(model, "$") if not _unlisted(dialect, side, kind, p)]
    if kind == "session.update":
        session = event.get("session") or {}
        if dialect == "ga" and "type" not in session:
            problems.append("session.update: GA requires session.type")
        if dialect == "preview" and "type" in session:
            problems.append("session.update: the preview protocol has no session.type")
    return problems


def _unlisted(dialect: str, side: str, kind: str, problem: str) -> bool:
    """A field the GA service sends that the types do not list yet: ``obfuscation`` on deltas (listed on
    other delta types of the same package; docs/protocol.md §3)."""
    delta = dialect == "ga" and side == "server" and kind.endswith(".delta")
    return delta and problem == "$.obfuscation: unknown field"


def validate_client_event(dialect: str, event: Any) -> list[str]:
    """Problems with an event a client sends (empty when it is valid for ``dialect``)."""
    return _validate(dialect, "client", event)


def validate_server_event(dialect: str, event: Any) -> list[str]:
    """Problems with an event a server sends (empty when it is valid for ``dialect``)."""
    return _validate(dialect, "server", event)
