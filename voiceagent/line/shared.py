"""What the instances of one line share, as interfaces with two backends (``local``, ``postgres``).

* who owns each live call (the instance whose process holds its stream or its pre-warmed session);
* how each call ended, so that the ``<Connect action>`` request is answered right on any instance;
* single-use keys: the webhook-replay memory (a CallSid answered once) and used stream tokens;
* how often a call was resumed after its instance died (the resume budget);
* a bus: messages to one instance or to all (live control, replies, events, pre-warm release).

Every method is async and bounded by its backend; nothing here knows of calls beyond their CallSid.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from voiceagent.call import EndCall, EndReason, Farewell

__all__ = ["EVERYONE", "Bus", "Message", "SharedState", "end_from_json", "end_to_json"]

EVERYONE = "*"  # a message's ``to`` for every instance (events)


@dataclass(frozen=True, slots=True)
class Message:
    """One message on the bus: ``to`` an instance (or ``EVERYONE``), ``sender`` the instance it came from."""

    to: str
    sender: str
    kind: str  # control | reply | live | event | release
    body: dict[str, Any]


Handler = Callable[[Message], Awaitable[None]]


class SharedState(Protocol):
    instance: str
    shared: bool  # other instances may share this line (False: the one-instance backend)

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def own(self, call_sid: str) -> str | None:
        """This instance owns ``call_sid`` now; returns the live instance that owned it before, if another."""
        ...

    async def owner_of(self, call_sid: str) -> str | None:
        """The instance that owns ``call_sid`` (as recorded: it may have died since; ask it over the bus)."""
        ...

    async def record_end(self, call_sid: str, end: EndCall) -> None:
        """``call_sid`` ended so (and is owned by nobody any more)."""
        ...

    async def end_of(self, call_sid: str) -> EndCall | None: ...

    async def first_use(self, key: str, ttl_seconds: float) -> bool:
        """Remember ``key`` for ``ttl_seconds``; False if it was remembered already (a replay)."""
        ...

    async def resumed(self, call_sid: str, window_seconds: float) -> int:
        """Count one more resume of ``call_sid``; how many there were in the last ``window_seconds``."""
        ...

    async def instances(self) -> list[str]:
        """The instances alive on the line (their heartbeat is fresh), this one included."""
        ...

    async def forget_older_than(self, seconds: float) -> None:
        """Housekeeping: used keys past their expiry; ends, resumes and owners older than ``seconds``."""
        ...


class Bus(Protocol):
    async def start(self, deliver: Handler) -> None:
        """Start delivering the messages addressed to this instance (or to everyone) to ``deliver``."""
        ...

    async def stop(self) -> None: ...
    async def send(self, message: Message) -> None: ...


def end_to_json(end: EndCall) -> dict[str, Any]:
    return {
        "reason": end.reason.value,
        "detail": end.detail,
        "farewell": end.farewell.value,
        "transfer_to": end.transfer_to,
    }


def end_from_json(data: dict[str, Any]) -> EndCall:
    return EndCall(
        EndReason(data["reason"]),
        str(data.get("detail") or ""),
        Farewell(data.get("farewell") or Farewell.HANG_UP.value),
        transfer_to=data.get("transfer_to") or None,
    )
