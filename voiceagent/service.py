"""The process-wide part of voiceagent: the calls in progress, pre-warming, capacity and draining.

One ``Service`` per app (never a module global), so tests can run several side by side.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from voiceagent.admission import Admission, CallStatus, Load
from voiceagent.api_auth import FailedLogins
from voiceagent.bridge import CallBridge, Clock, LoopClock, ModelChannel, ModelConnector
from voiceagent.call import CallCore, CallOptions, EndCall, EndReason, Farewell
from voiceagent.call.agent_tools import END_CALL, TRANSFER_CALL
from voiceagent.call.transport import Frame, Transport
from voiceagent.call_control import builtin_tools
from voiceagent.config import Settings
from voiceagent.limits import RateLimit, RecentValues
from voiceagent.line.calls import LineCalls
from voiceagent.line.events import LineEvents
from voiceagent.line.node import line_node
from voiceagent.logs import CallLog
from voiceagent.realtime.connection import ModelConnectError, ModelConnection
from voiceagent.store.recorder import CallHandle, Recorder
from voiceagent.store.records import LineRecord
from voiceagent.store.settings import RecordsSettings
from voiceagent.tools import ToolBox, load_toolbox
from voiceagent.transcripts import LogTranscriptSink, TranscriptLine, TranscriptSink
from voiceagent.twilio.eval_mark import EvalMarks
from voiceagent.twilio.security import SignatureChecker, StreamTokens

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = ["CallBridge", "Clock", "ModelConnector", "Service"]  # the app and the API meet calls here

SHUTTING_DOWN = "the service is shutting down"
TRANSFERS_MEMORY = 1_000  # transferred calls whose conversation is kept in case nobody takes the transfer
TRANSFER_TEARDOWN_SECONDS = 5.0
OPERATOR_LINES_PER_MINUTE = 10
ENDED_MEMORY = 10_000  # how many recent call ends the stream-ended handler (and late streams) can look up
# ... and for how long: the <Connect action> request comes as the stream ends, a transfer's <Dial action>
# when nobody answered within its ring timeout (at most 600 s, Twilio's <Dial timeout>), a late stream
# within its token's life
ENDED_MEMORY_SECONDS = 900.0
STREAM_SILENCE_SECONDS = 5.0  # Twilio sends a frame every 20 ms: this long without one, the stream is dead
PLAYBACK_REPORT_GRACE_SECONDS = 5.0  # mark echoes this late after the audio must have played are not coming
RESPONSE_DONE_SECONDS = 60.0  # a response that started and never finished: the model is stuck
ANSWER_TIMEOUT_SECONDS = 15.0  # the caller finished speaking and no response started: the model is stuck


@dataclass
class Service:
    settings: Settings
    credential: AsyncTokenCredential | None = None  # Entra ID, when no API key is configured
    sink: TranscriptSink = field(default_factory=LogTranscriptSink)
    connector: ModelConnector | None = None  # default: a real ModelConnection to settings.model
    clock: Clock | None = None  # default: the event loop's clock
    tools: ToolBox | None = None  # default: the operator's tools from the settings (validated here)
    records: RecordsSettings | None = None  # call records, operator API, webhook; None: metrics and live events only
    failed_logins: FailedLogins = field(default_factory=FailedLogins)  # wrong API tokens per client
    rejections_logged: RateLimit = field(default_factory=lambda: RateLimit(1, 60.0))  # signature refusals
    # an operator's says and notes per call: a runaway script must not queue hours of speech or fill the
    # model's context (OPERATOR_LINES_PER_MINUTE of each kind, per call)
    operator_lines: RateLimit = field(default_factory=lambda: RateLimit(OPERATOR_LINES_PER_MINUTE, 60.0))
    monotonic: Callable[[], float] = time.monotonic  # for how long ends are remembered (tests inject it)

    def __post_init__(self) -> None:
        settings = self.settings
        if self.tools is None:
            self.tools = load_toolbox(
                modules=settings.tool_modules,
                tools_file=settings.tools_file,
                env=settings.environment,
                timeout_seconds=settings.tool_timeout_seconds,
                reserved_names=(END_CALL, TRANSFER_CALL),
            )
        declared = builtin_tools(end_call=settings.end_call, transfer_to=settings.transfer_to) + self.tools.specs
        self.session = replace(settings.session, tools=declared)
        self.signatures = SignatureChecker(None if settings.insecure_skip_validation else settings.twilio_auth_token)
        self.tokens = StreamTokens(settings.twilio_auth_token)
        self.eval_marks = EvalMarks(settings.twilio_auth_token)
        self.calls: dict[str, CallBridge] = {}
        self.ended: RecentValues[EndCall] = RecentValues(ENDED_MEMORY_SECONDS, max_keys=ENDED_MEMORY)
        # the conversations of calls handed on, until their transfer is answered or comes back
        self._transferred: RecentValues[tuple[TranscriptLine, ...]] = RecentValues(
            ENDED_MEMORY_SECONDS, max_keys=TRANSFERS_MEMORY
        )
        # back from a transfer: the next stream's (a caller who hangs up before it leaves nothing behind)
        self._returning: RecentValues[tuple[TranscriptLine, ...]] = RecentValues(
            ENDED_MEMORY_SECONDS, max_keys=TRANSFERS_MEMORY
        )
        self.draining = False
        self.admission = Admission(
            self.tokens,
            max_calls=settings.max_calls,
            calls_per_number_per_minute=settings.calls_per_number_per_minute,
            wall=self.now,
        )
        self._connects = RateLimit(settings.model_connects_per_minute)
        self._log = CallLog()
        tool_names = [tool.name for tool in declared]
        self.recorder = Recorder(settings, self.records, tool_names=tool_names)  # started by the app's lifespan
        self._handles: dict[CallBridge, CallHandle] = {}
        # the line: shared with the other instances on PostgreSQL records, else in this process
        records = self.records
        self.line = line_node(records.instance if records else "local", records.database_url if records else None)
        self.line_calls = LineCalls(self.line, local_end=self.end_of, release=self.release_prewarm)
        self._released: set[CallBridge] = set()  # pre-warms let go because the stream went elsewhere
        if self.line.shared:
            self.recorder.events = LineEvents(self.line, on_drop=self.recorder.metrics.event_subscribers_dropped.inc)

    def load(self) -> Load:
        """What admission needs to know of how busy the service is."""
        return Load(len(self.calls), self.draining)

    def webhook_load(self) -> Load:
        """A draining instance still answers the webhooks a balancer sends it when other instances share
        the line (the stream goes through the balancer to one of them); alone, it refuses as before."""
        return Load(len(self.calls), self.draining and not self.line.shared)

    def status_of(self, call_sid: str) -> CallStatus:
        """What admission needs to know of one call when its stream starts."""
        current = self.calls.get(call_sid)
        return CallStatus(current is not None, current is not None and current.attached, self.end_of(call_sid))

    def call_options(self) -> CallOptions:
        settings = self.settings
        return CallOptions(
            session=self.session,
            greeting=settings.greeting,
            max_call_seconds=settings.max_call_seconds,
            caller_silence_seconds=settings.caller_silence_seconds,
            stream_wait_seconds=settings.prewarm_seconds,
            recycle_seconds=settings.session_recycle_seconds,
            connect_attempts=settings.connect_attempts,
            session_ready_seconds=settings.session_ready_seconds,
            stream_silence_seconds=STREAM_SILENCE_SECONDS,
            playback_report_grace_seconds=PLAYBACK_REPORT_GRACE_SECONDS,
            caller_audio_pace=settings.caller_audio_pace,
            caller_audio_batch_ms=settings.caller_audio_batch_ms,
            answer_timeout_seconds=ANSWER_TIMEOUT_SECONDS,
            end_call_tool=settings.end_call,
            transfer_targets=settings.transfer_to,
            dtmf_to_model=settings.dtmf_to_model,
            dtmf_pause_seconds=settings.dtmf_pause_ms / 1000,
            response_done_seconds=RESPONSE_DONE_SECONDS,
        )

    async def _connect(self) -> ModelChannel:
        settings = self.settings
        return await ModelConnection.open(
            settings.model, credential=self.credential, timeout=settings.connect_timeout_seconds
        )

    async def _connect_within_budget(self) -> ModelChannel:
        """Every model connect of the process counts against one budget: each opens a billed session."""
        if not self._connects.allow("all", time.monotonic()):
            limit = self.settings.model_connects_per_minute
            self._log.warning("model_connects_rate_limited", per_minute=limit, scope="process")
            raise ModelConnectError(f"over the process's budget of {limit} model connects per minute")
        return await (self.connector or self._connect)()

    def _new_call(
        self,
        call_sid: str,
        caller: str | None,
        called: str | None,
        options: CallOptions | None = None,
        kind: str = "live",
    ) -> CallBridge:
        clock = self.clock or LoopClock()
        options = options or self.call_options()
        earlier = self._returning.pop(call_sid, self.monotonic())
        if earlier is not None:  # back from a transfer nobody took: no second greeting, the conversation goes on
            options = replace(options, greeting="", earlier=earlier)
        core = CallCore(options, call_sid=call_sid, now=clock.now())
        handle = self.recorder.call_started(call_sid, caller, called, kind)  # records hook: the call exists
        bridge = CallBridge(
            core,
            connect=self._connect_within_budget,
            sink=self.recorder.sink_for(handle, self.sink),
            clock=clock,
            tools=self.tools,
            on_end=self._forget,
        )
        bridge.observer = self.recorder.observer_for(handle)  # the core's facts, counted and shown
        self._handles[bridge] = handle
        self.calls[call_sid] = bridge
        bridge.start()
        return bridge

    def prewarm(
        self, call_sid: str, *, caller: str | None = None, called: str | None = None, kind: str = "live"
    ) -> None:
        """Open the model session now (from the webhook), so the greeting is ready when the stream starts.
        The core gives it up if no stream arrives within ``VOICEAGENT_PREWARM_SECONDS``. ``caller`` and
        ``called``: the webhook's From and To, for the call's record; ``kind``: ``eval`` for a marked call."""
        if call_sid not in self.calls:
            self._new_call(call_sid, caller, called, kind=kind)

    def claim(
        self,
        call_sid: str,
        *,
        stream_sid: str | None = None,
        caller: str | None = None,
        called: str | None = None,
        options: CallOptions | None = None,
        earlier: Sequence[LineRecord] = (),
        kind: str = "live",
    ) -> CallBridge:
        """The call for a stream that just started: the pre-warmed one, or a new one (``options``: a call
        resumed from another instance; ``kind``: as the stream's mark says)."""
        bridge = self.calls.get(call_sid)
        if bridge is None or bridge.ended is not None:
            bridge = self._new_call(call_sid, caller, called, options, kind)
        handle = self._handles.get(bridge)
        if handle is not None and earlier and not handle.lines:
            handle.lines.extend(earlier)  # resumed: its record numbers the new lines after the old
        if handle is not None:
            self.recorder.stream_started(handle, stream_sid)  # records hook: the call is answered
        return bridge

    def transport_for(self, bridge: CallBridge, transport: Transport[Frame]) -> Transport[Frame]:
        """The transport a claimed call's stream runs on (recording it when recordings are on)."""
        handle = self._handles.get(bridge)
        return transport if handle is None else self.recorder.transport_for(handle, transport)

    def _forget(self, bridge: CallBridge) -> None:
        if self.calls.get(bridge.call_sid) is bridge:
            del self.calls[bridge.call_sid]
        if bridge in self._released:  # the call goes on elsewhere: its end is not ours to record
            self._released.discard(bridge)
            return
        end = bridge.ended or EndCall(EndReason.INTERNAL_ERROR, "ended")
        self.remember_end(bridge.call_sid, end)
        if end.farewell is Farewell.TRANSFER:
            self._transferred.put(bridge.call_sid, bridge.core.conversation, self.monotonic())
        handle = self._handles.pop(bridge, None)
        if handle is not None:  # records hook: the call is over, with its figures
            self.recorder.call_ended(handle, end, bridge.core.figures.turn_latencies_ms)

    def end_of(self, call_sid: str) -> EndCall | None:
        """How a call ended, if it ended recently (the stream-ended handler asks, and a late stream) —
        including a call whose end was decided and whose teardown is still under way."""
        bridge = self.calls.get(call_sid)
        if bridge is not None and bridge.ended is not None:
            return bridge.ended
        return self.ended.get(call_sid, self.monotonic())

    async def transfer_unanswered(self, call_sid: str, dial_status: str) -> str | None:
        """Nobody took the transfer of ``call_sid``: a stream token for the caller's way back to the agent
        (the next stream of the call carries the conversation on), or None if the call is not ours."""
        bridge = self.calls.get(call_sid)
        if bridge is not None:  # the hand-over's teardown may still be under way
            await _all_finished([bridge], timeout=TRANSFER_TEARDOWN_SECONDS)
        now = self.monotonic()
        lines = self._transferred.pop(call_sid, now)
        end = self.ended.get(call_sid, now)
        if lines is None or end is None or end.farewell is not Farewell.TRANSFER or self.draining:
            return None
        self.ended.pop(call_sid, now)  # the call goes on: a new stream may join it
        back = TranscriptLine(
            call_sid, "tool", f"transfer_call() → nobody took the call ({dial_status}); the caller is back with you"
        )
        self._returning.put(call_sid, (*lines, back), now)
        return self.admission.rejoin(call_sid)

    def remember_end(self, call_sid: str, end: EndCall) -> None:
        """Remember how a call ended, so ``<Connect action>`` says the right thing. Only what that answer
        needs is kept, for as long as anyone can ask: the figures (the summary, a few KB a call) are the
        record's, and a day's calls' ends would be a day's slow growth of memory (benchmarks/soak.py)."""
        end = replace(end, summary={}) if end.summary else end
        self.ended.put(call_sid, end, self.monotonic())
        self.line_calls.ended(call_sid, end)

    async def release_prewarm(self, call_sid: str) -> bool:
        """The stream of a call pre-warmed here started on another instance: give the session up now
        (it is billed), recording nothing — the call is that instance's."""
        bridge = self.calls.get(call_sid)
        if bridge is None or bridge.attached or bridge.ended is not None:
            return False
        self._released.add(bridge)
        self._handles.pop(bridge, None)
        self.recorder.live.pop(call_sid, None)
        await bridge.end(EndReason.NO_STREAM, "the stream started on another instance")
        return True

    async def drain(self) -> None:
        """SIGTERM: refuse new calls, let calls in progress go on for ``drain_seconds``, then have the
        agent say goodbye; return when the last call has ended."""
        self.draining = True
        log = CallLog()
        log.info("draining", calls=len(self.calls), drain_seconds=self.settings.drain_seconds)
        await _all_finished(list(self.calls.values()), timeout=self.settings.drain_seconds)
        for bridge in list(self.calls.values()):
            if bridge.attached:
                bridge.wind_down(EndReason.SHUTDOWN, SHUTTING_DOWN)
            else:
                await bridge.end(EndReason.SHUTDOWN, SHUTTING_DOWN)
        await _all_finished(list(self.calls.values()), timeout=None)
        self.recorder.events.close()  # live-event streams would hold the server's exit up
        log.info("drained")

    async def close(self) -> None:
        """End every call (process shutdown), then release the tools' HTTP client."""
        for bridge in list(self.calls.values()):
            await bridge.end(EndReason.SHUTDOWN, SHUTTING_DOWN)
        if self.tools is not None:
            await self.tools.aclose()

    def now(self) -> float:
        """Wall-clock time, for stream token expiry (tokens cross processes: no monotonic clock)."""
        return time.time()


async def _all_finished(bridges: list[CallBridge], *, timeout: float | None) -> None:
    """Wait until every one of ``bridges`` has finished, or ``timeout`` has passed."""
    waiters = [asyncio.ensure_future(bridge.finished.wait()) for bridge in bridges]
    if not waiters:
        return
    try:
        await asyncio.wait(waiters, timeout=timeout)
    finally:
        for waiter in waiters:
            waiter.cancel()
