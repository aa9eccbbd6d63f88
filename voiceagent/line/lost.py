"""The other door for a call whose instance died: Twilio's ``<Stream statusCallback>`` and its REST API.

Twilio requests the ``<Connect action>`` once ``<Connect>`` is over, and a surviving instance resumes the
call there (``app.stream_ended``). Where it does not after a socket lost without a close frame, it still
reports the stream's end to the ``statusCallback`` (``StreamEvent`` ``stream-error`` or
``stream-stopped``). An instance that gets that report, finds no end recorded and an owner that does not
answer, replaces the call's TwiML through the REST API with a new ``<Connect><Stream>``.

Once per loss: both doors take the same shared key (the call and the owner it lost), the first wins. The
action door, when Twilio takes it, comes first: this one waits ``ACTION_GRACE_SECONDS`` before it looks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from voiceagent.line.calls import LineCalls, Lost
from voiceagent.logs import CallLog
from voiceagent.twilio.rest import CallUpdater

__all__ = ["ACTION_GRACE_SECONDS", "LOST_EVENTS", "RestDoor"]

LOST_EVENTS = frozenset({"stream-error", "stream-stopped"})
ACTION_GRACE_SECONDS = 1.0


class RestDoor:
    def __init__(self, calls: LineCalls, update: CallUpdater | None, *, grace: float = ACTION_GRACE_SECONDS) -> None:
        self._calls = calls
        self._update = update
        self._grace = grace

    @property
    def open(self) -> bool:
        """Worth a statusCallback in the TwiML: the line is shared and the REST API can be used."""
        return self._calls.shared and self._update is not None

    async def stream_lost(self, call_sid: str, resume: Callable[[], Awaitable[str | None]]) -> bool:
        """Twilio reported the stream of ``call_sid`` over: resume it through the REST API if its owner is
        gone without an end and nobody resumed it yet. ``resume``: the TwiML (None: over the budget)."""
        log = CallLog(call_sid)
        if self._update is None:
            return False
        await asyncio.sleep(self._grace)
        known = await self._calls.end_for_action(call_sid)
        if not isinstance(known, Lost):
            log.info("call_resume_skipped", reason="it ended, or its owner is alive and holds it")
            return False
        if not await self._calls.first_resume(call_sid, known.owner):
            log.info("call_resume_skipped", reason="resumed already (the <Connect action> or another instance)")
            return False
        twiml = await resume()
        if twiml is None:
            return False
        await asyncio.to_thread(self._update, call_sid, twiml)
        log.info("call_resuming", door="status callback + REST update", lost_owner=known.owner)
        return True
