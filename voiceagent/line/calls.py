"""The service's side of the line: who owns its calls, how they ended, and what the ``<Connect action>``
request is answered with on any instance — including a call whose instance died (``Lost``: resume it).

Alone (SQLite or no store) the service's own memories answer: admission's for replays and tokens, the
service's for ends; nothing is kept twice. Shared, ownership and ends are written without holding a call
up (``LineNode.later``); an end is also answered live by its owner over the bus (``end`` requests),
because the owner closes the stream before its write lands. An owner that does not answer within
``REQUEST_TIMEOUT_SECONDS`` is taken for dead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from voiceagent.call import EndCall
from voiceagent.line.node import LineNode
from voiceagent.line.shared import end_from_json, end_to_json
from voiceagent.logs import CallLog

__all__ = ["Ended", "LineCalls", "Lost", "Unknown"]

WEBHOOK_MEMORY_SECONDS = 3600.0  # as admission's REPLAY_MEMORY_SECONDS
RELEASE_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Ended:
    end: EndCall


@dataclass(frozen=True, slots=True)
class Lost:
    """The call's owner is gone without recording an end: its stream died with its process."""

    owner: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """Nobody knows how this call ended (today's answer: hang up)."""


class LineCalls:
    def __init__(
        self,
        node: LineNode,
        *,
        local_end: Callable[[str], EndCall | None],
        release: Callable[[str], Awaitable[bool]],
    ) -> None:
        self.node = node
        self._local_end = local_end
        self._release = release
        node.answer("end", self._answer_end)
        node.answer("release", self._answer_release)

    @property
    def shared(self) -> bool:
        return self.node.shared

    # ------------------------------------------------------------ hooks from the service (never wait)

    def ended(self, call_sid: str, end: EndCall) -> None:
        if self.shared:  # alone, the service's own memory of ends (``local_end``) is the line's
            self.node.later(self.node.state.record_end(call_sid, end), "end")

    # ------------------------------------------------------------ from the routes

    async def owned(self, call_sid: str) -> str | None:
        """This instance holds the call now (awaited, so that the owner is on record before anyone can ask:
        a single-row write); returns the instance that held it before, if another."""
        if not self.shared:  # alone, this instance owns every call: nothing to write or remember
            return None
        try:
            return await self.node.state.own(call_sid)
        except Exception as exc:  # the line's database away: the call goes on here, unshared
            CallLog(call_sid).warning("line_write_failed", what="owner", error=str(exc)[:200])
            return None

    async def claimed(self, call_sid: str) -> None:
        """A stream started here: this instance owns the call; the one that pre-warmed it lets go now."""
        before = await self.owned(call_sid)
        if before is not None:
            self.node.later(self._release_on(before, call_sid), "release")

    async def _release_on(self, instance: str, call_sid: str) -> None:
        answer = await self.node.request(instance, "release", {"call_sid": call_sid}, timeout=RELEASE_TIMEOUT_SECONDS)
        CallLog(call_sid).info("prewarm_release", instance=instance, released=bool(answer and answer.get("released")))

    async def first_webhook(self, call_sid: str) -> bool:
        if not self.shared:  # alone, admission's replay memory has already said (one copy, not two)
            return True
        return await self.node.state.first_use(f"webhook:{call_sid}", WEBHOOK_MEMORY_SECONDS)

    async def first_token(self, token: str, ttl_seconds: float) -> bool:
        if not self.shared:  # as ``first_webhook``: admission remembers used tokens in this process
            return True
        digest = hashlib.sha256(token.encode()).hexdigest()  # the key, never the token itself
        return await self.node.state.first_use(f"token:{digest}", ttl_seconds)

    async def end_for_action(self, call_sid: str) -> Ended | Lost | Unknown:
        """How the call ended, as known here, in the shared state, or by its owner."""
        end = self._local_end(call_sid)
        if end is None:
            end = await self.node.state.end_of(call_sid)
        if end is not None:
            return Ended(end)
        owner = await self.node.state.owner_of(call_sid)
        if owner is None or owner == self.node.instance:
            return Unknown()
        answer = await self.node.request(owner, "end", {"call_sid": call_sid})
        if answer is None:
            return Lost(owner)
        found = answer.get("end")
        return Ended(end_from_json(found)) if isinstance(found, dict) else Unknown()

    async def first_resume(self, call_sid: str, lost_owner: str) -> bool:
        """The first to resume ``call_sid`` after ``lost_owner`` died (the action or the status door)."""
        return await self.node.state.first_use(f"resume:{call_sid}:{lost_owner}", WEBHOOK_MEMORY_SECONDS)

    async def may_resume(self, call_sid: str, max_resumes: int, window_seconds: float) -> bool:
        if max_resumes <= 0:
            return False
        return await self.node.state.resumed(call_sid, window_seconds) <= max_resumes

    # ------------------------------------------------------------ what this instance answers

    async def _answer_end(self, body: dict[str, Any]) -> dict[str, Any]:
        end = self._local_end(str(body.get("call_sid")))
        return {"end": None if end is None else end_to_json(end)}

    async def _answer_release(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"released": await self._release(str(body.get("call_sid")))}
