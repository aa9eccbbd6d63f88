"""The errors the fake Realtime server answers, shaped like the real service's.

The ``code``/``message``/``param`` wording follows what the real API has been seen to send (quoted in
client libraries' issue trackers); where it could not be confirmed the closest documented code is used.
"""

from __future__ import annotations

import re


class ClientError(Exception):
    """A client event the real service answers with an ``error`` event (the session carries on)."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def unsupported_value(value: str, supported: tuple[str, ...], param: str) -> ClientError:
    """The real service's answer to a value outside a fixed set (e.g. a voice the deployment lacks):
    ``Invalid value: 'nova'. Supported values are: 'alloy', 'ash', and 'verse'.``"""
    quoted = [f"'{name}'" for name in supported]
    listed = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    return ClientError("invalid_value", f"Invalid value: '{value}'. Supported values are: {listed}.", param)


def describe_problem(problem: str) -> tuple[str, str, str | None]:
    """``(code, message, param)`` of the error the real service answers for a validation problem."""
    kind, _, detail = problem.partition(": ")
    detail = detail.split("; ")[0]
    if "does not match any of the expected tags" in detail:
        supported = detail.rsplit("expected tags: ", 1)[-1]
        return "invalid_value", f"Invalid value: '{kind}'. Supported values are: {supported}.", "type"
    if "Unable to extract tag" in detail:
        return "missing_required_parameter", "Missing required parameter: 'type'.", "type"
    if detail.endswith("GA requires session.type"):
        return "missing_required_parameter", "Missing required parameter: 'session.type'.", "session.type"
    if "has no session.type" in detail:
        return "unknown_parameter", "Unknown parameter: 'session.type'.", "session.type"
    location, _, reason = detail.rpartition(": ")
    param = _param_name(kind, location)
    if reason == "unknown field":
        return "unknown_parameter", f"Unknown parameter: '{param}'.", param
    if reason == "Field required":
        return "missing_required_parameter", f"Missing required parameter: '{param}'.", param
    return "invalid_value", f"Invalid value for '{param}': {reason}.", param


def _param_name(kind: str, location: str) -> str:
    """``item.content[0].type`` from a pydantic location (dropping union member class names)."""
    location = location.removeprefix("$.").removeprefix(kind + ".")
    parts = [part for part in location.split(".") if part and not re.match(r"^[A-Z]", part)]
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", ".".join(parts))
