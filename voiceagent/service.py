"""The process-wide part of voiceagent: the calls in progress, pre-warming, capacity and draining.

One ``Service`` per app (never a module global), so tests can run several side by side.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from voiceagent.bridge import CallSession, EndReason
from voiceagent.call import CallOptions
from voiceagent.config import Settings
from voiceagent.logs import CallLog
from voiceagent.realtime.connection import ModelConnection
from voiceagent.transcripts import LogTranscriptSink, TranscriptSink
from voiceagent.twilio.security import SignatureChecker, StreamTokens

ENDED_MEMORY = 1000  # how many recent end reasons the stream-ended handler can look up


@dataclass
class Service:
    settings: Settings
    credential: Any = None  # azure.identity.aio credential when no API key is configured
    sink: TranscriptSink = field(default_factory=LogTranscriptSink)

    def __post_init__(self) -> None:
        self.signatures = SignatureChecker(None if self.settings.insecure_skip_validation else self.settings.twilio_auth_token)
        self.tokens = StreamTokens(self.settings.twilio_auth_token)
        self.calls: dict[str, CallSession] = {}
        self.prewarmed: dict[str, asyncio.TimerHandle] = {}
        self.ended: OrderedDict[str, EndReason] = OrderedDict()
        self.draining = False

    # ------------------------------------------------------------ capacity

    @property
    def busy(self) -> bool:
        return self.draining or len(self.calls) >= self.settings.max_calls

    # ------------------------------------------------------------ call sessions

    def new_session(self, call_sid: str) -> CallSession:
        settings = self.settings

        async def connect() -> ModelConnection:
            return await ModelConnection.open(
                settings.model, credential=self.credential, timeout=settings.connect_timeout_seconds
            )

        session = CallSession(
            call_sid,
            connect=connect,
            session=settings.session,
            sink=self.sink,
            options=CallOptions(
                greeting=settings.greeting,
                max_call_seconds=settings.max_call_seconds,
                caller_silence_seconds=settings.caller_silence_seconds,
            ),
            connect_attempts=settings.connect_attempts,
            recycle_seconds=settings.session_recycle_seconds,
            on_end=self._forget,
        )
        self.calls[call_sid] = session
        return session

    def prewarm(self, call_sid: str) -> None:
        """Open the model connection now, so the greeting is ready when the stream starts."""
        if call_sid in self.calls:
            return
        session = self.new_session(call_sid)
        session.start_model()
        loop = asyncio.get_running_loop()
        self.prewarmed[call_sid] = loop.call_later(
            self.settings.prewarm_seconds, lambda: loop.create_task(self._expire(call_sid))
        )

    async def _expire(self, call_sid: str) -> None:
        self.prewarmed.pop(call_sid, None)
        session = self.calls.get(call_sid)
        if session is not None:
            await session.end(EndReason("no media stream arrived for the pre-warmed session"))

    def claim(self, call_sid: str) -> CallSession:
        """The session for a stream that just started: the pre-warmed one, or a new one."""
        timer = self.prewarmed.pop(call_sid, None)
        if timer is not None:
            timer.cancel()
        session = self.calls.get(call_sid)
        if session is None or session.end_reason is not None:
            session = self.new_session(call_sid)
            session.start_model()
        return session

    def _forget(self, session: CallSession) -> None:
        if self.calls.get(session.call_sid) is session:
            del self.calls[session.call_sid]
        timer = self.prewarmed.pop(session.call_sid, None)
        if timer is not None:
            timer.cancel()
        self.ended[session.call_sid] = session.end_reason or EndReason("ended")
        while len(self.ended) > ENDED_MEMORY:
            self.ended.popitem(last=False)

    def end_reason(self, call_sid: str) -> EndReason | None:
        return self.ended.pop(call_sid, None)

    async def drain(self, poll_seconds: float = 0.2) -> None:
        """SIGTERM: refuse new calls, let calls in progress go on for ``drain_seconds``, then have the
        agent say goodbye; return when the last call has ended."""
        self.draining = True
        log = CallLog()
        log.info("draining", calls=len(self.calls), drain_seconds=self.settings.drain_seconds)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.drain_seconds
        while self.calls and loop.time() < deadline:
            await asyncio.sleep(poll_seconds)
        for session in list(self.calls.values()):
            if session.attached:
                await session.wind_down("the service is shutting down")
            else:
                await session.end(EndReason("the service is shutting down"))
        while self.calls:
            await asyncio.sleep(poll_seconds)
        log.info("drained")

    async def close(self) -> None:
        """End every call (process shutdown)."""
        for session in list(self.calls.values()):
            await session.end(EndReason("the service is shutting down"))

    def now(self) -> float:
        return time.time()
