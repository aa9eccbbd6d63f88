"""How a response of the fake Realtime server ends when it does not simply complete, and the timing
and bookkeeping events around it (docs/protocol.md §2, "### Responses: one at a time").

A test scripts the next responses of a session: ``FakeRealtimeServer(outcomes=[Failed(), Incomplete()])``
(every new session starts with that queue) or ``session.outcomes.append(Failed(...))`` on a live one.
Each response created, by a request or by the server's own VAD turn, takes the next outcome, if any.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Any

# The real service's wording for its internal errors (response.done status_details.error).
SERVER_ERROR_MESSAGE = (
    "The server had an error while processing your request. Sorry about that! You can retry your request, "
    "or contact us through our help center at help.openai.com if the error persists."
)
_OBFUSCATION_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True, slots=True)
class Failed:
    """The response fails before it says anything: ``response.created``, then ``response.done`` with
    ``status: "failed"`` and this error in ``status_details.error``; no output."""

    type: str = "server_error"
    code: str | None = None
    message: str = SERVER_ERROR_MESSAGE

    def status_details(self) -> dict[str, Any]:
        error = {"type": self.type, "code": self.code, "message": self.message}
        return {"type": "failed", "error": error}


@dataclass(frozen=True, slots=True)
class Incomplete:
    """The response stops early (``max_output_tokens`` or ``content_filter``): the audio produced up to
    ``fraction`` of the reply is sent, then ``response.done`` with ``status: "incomplete"``; no function
    call is made."""

    reason: str = "max_output_tokens"
    fraction: float = 0.4

    def __post_init__(self) -> None:
        if self.reason not in ("max_output_tokens", "content_filter"):
            raise ValueError(f"Incomplete.reason: max_output_tokens or content_filter, not {self.reason!r}")
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError("Incomplete.fraction: the share of the reply said, in [0, 1)")

    def status_details(self) -> dict[str, Any]:
        return {"type": "incomplete", "reason": self.reason}


Outcome = Failed | Incomplete


def refusal_message(active_response_id: str) -> str:
    """The real service's text for a ``response.create`` while a response is active."""
    return (
        f"Conversation already has an active response in progress: {active_response_id}. "
        "Wait until the response is finished before creating a new one."
    )


def rate_limits(output_tokens: int) -> list[dict[str, Any]]:
    """The ``rate_limits`` of a ``rate_limits.updated`` (requests and tokens, as the service reports)."""
    return [
        {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
        {"name": "tokens", "limit": 400000, "remaining": 400000 - 120 - output_tokens, "reset_seconds": 0.3},
    ]


def obfuscation(delta_length: int) -> str:
    """Random padding the GA service adds to each delta so that its length does not give the content
    away; clients ignore it."""
    size = max(2, 16 - delta_length % 16)
    return "".join(secrets.choice(_OBFUSCATION_ALPHABET) for _ in range(size))
