"""What the service tells us about its calls, turned into records, metrics, live events and webhooks.

The service calls four hooks — a call started (webhook or stream), its stream started, it ended, and,
through a per-call ``TranscriptSink`` and observer, each utterance and each fact the call core observed
(``voiceagent.call.observations``: typed, never log lines) as they happen. Every hook runs on the event
loop and returns at once: store writes are queued for the writer thread, live events go to bounded
buffers, webhook deliveries to a bounded queue. A hook never raises into a call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voiceagent.call import (
    AgentClosing,
    BargeIn,
    CallEnded,
    ConnectFailed,
    EndCall,
    Farewell,
    Observation,
    Refused,
    ToolCalled,
)
from voiceagent.call.transport import Frame, Transport
from voiceagent.call_webhook import CallEndedWebhook
from voiceagent.config import Settings
from voiceagent.logs import CallLog, mask_number
from voiceagent.metrics import Metrics
from voiceagent.recordings import CallRecording, RecordingFiles, RecordingTransport
from voiceagent.store.live import EventHub
from voiceagent.store.outbox import WebhookOutbox
from voiceagent.store.records import FIGURES, CallRecord, LineRecord
from voiceagent.store.settings import RecordsSettings
from voiceagent.store.store import HEARTBEAT_SECONDS, CallStore
from voiceagent.transcripts import TranscriptLine, TranscriptSink

__all__ = ["CallHandle", "Recorder"]

RETENTION_EVERY_SECONDS = 3600.0
STOP_TIMEOUT_SECONDS = 10.0  # a database still away by then loses what is queued (logged)
BUILTIN_TOOLS = {Farewell.HANG_UP: "end_call", Farewell.TRANSFER: "transfer_call"}  # AgentClosing -> tool


@dataclass(eq=False)
class CallHandle:
    """One call as the recorder follows it."""

    record: CallRecord
    lines: list[LineRecord] = field(default_factory=list)
    barge_ins: int = 0
    tool_calls: int = 0
    recording: CallRecording | None = None

    @property
    def call_sid(self) -> str:
        return self.record.call_sid

    def offset_ms(self, at: float) -> int:
        since = self.record.answered_at if self.record.answered_at is not None else self.record.started_at
        return max(0, round((at - since) * 1000))

    def live_json(self) -> dict[str, Any]:
        return {
            **self.record.to_json(),
            "lines": len(self.lines),
            "barge_ins": self.barge_ins,
            "tool_calls": self.tool_calls,
        }


class Recorder:
    """Records, metrics and live events for one app. ``records=None``: metrics and live events only."""

    def __init__(
        self,
        settings: Settings,
        records: RecordsSettings | None,
        *,
        tool_names: Iterable[str] = (),
        now: Callable[[], float] = time.time,
        store: CallStore | None = None,
        webhook: CallEndedWebhook | None = None,
    ) -> None:
        self.settings = settings
        self.records = records
        self.live: dict[str, CallHandle] = {}
        self.metrics = Metrics(calls_in_progress=lambda: len(self.live), tool_names=tool_names)
        self.events = EventHub(on_drop=self.metrics.event_subscribers_dropped.inc)
        self._now = now
        if store is None and records is not None:
            store = CallStore(records, observer=self.metrics)
        self.store = store
        if self.store is not None:
            writer = self.store.writer
            self.metrics.store_backlog.set_function(lambda: float(writer.backlog))
        if webhook is None and records is not None and records.call_ended_webhook and records.webhook_secret:
            outbox = WebhookOutbox(self.store) if self.store is not None else None
            webhook = CallEndedWebhook(
                records.call_ended_webhook, records.webhook_secret, metrics=self.metrics, outbox=outbox
            )
        self.webhook = webhook
        on = records is not None and records.recordings
        self.recordings = (
            RecordingFiles(records.recordings_dir, on_incomplete=self._recording_incomplete)
            if records is not None and on
            else None
        )
        self._incomplete: set[str] = set()  # call sids whose recording was cut short (bounded: disk-full episodes)
        self._maintenance: asyncio.Task[None] | None = None
        self._log = CallLog()
        self.started = False

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store (migrations, calls a dead predecessor left open), start the periodic jobs."""
        if self.store is not None:
            store = self.store
            assert self.records is not None
            try:
                await asyncio.to_thread(store.open)
            except Exception as exc:
                # refuse to start rather than answer calls nobody can look up later; once running, a
                # database that goes away only delays writes (the writer retries)
                self._log.error("call_records_unavailable", backend=self.records.backend, error=str(exc))
                raise
            self._log.info(
                "call_records_open",
                backend=self.records.backend,
                where=self.records.sqlite_path if self.records.backend == "sqlite" else "postgresql",
                instance=store.instance,
                closed_at_start=store.closed_at_start,
                retention_days=self.records.retention_days,
            )
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain(), name="call-records")
        else:
            self._log.info("call_records_off", detail="no store configured: calls are not recorded")
        if self.webhook is not None:
            self.webhook.start()
        if self.recordings is not None:
            self.recordings.start()
            self._log.info("call_recordings_on", directory=str(self.recordings.directory))
        self.started = True

    async def stop(self) -> None:
        """After the calls have ended: deliver what is pending (briefly), write what is queued, close."""
        self.events.close()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self.webhook is not None:
            await self.webhook.aclose()
        if self.recordings is not None:
            for handle in list(self.live.values()):
                if handle.recording is not None:
                    handle.recording.finish()
            await asyncio.to_thread(self.recordings.stop, STOP_TIMEOUT_SECONDS)
        if self.store is not None and self.started:
            await asyncio.to_thread(self.store.close, STOP_TIMEOUT_SECONDS)
        self.started = False

    async def _maintain(self) -> None:
        assert self.store is not None and self.records is not None
        retention_due = 0.0
        while True:
            self.store.heartbeat()
            days = self.records.retention_days
            if days is not None and time.monotonic() >= retention_due:
                retention_due = time.monotonic() + RETENTION_EVERY_SECONDS
                self.store.delete_older_than(self._now() - days * 86400.0, on_deleted=self._delete_recordings)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def _delete_recordings(self, call_sids: list[str]) -> None:
        """Retention takes a call's recording with it (on the writer thread)."""
        if self.records is None or not self.records.recordings:
            return
        for call_sid in call_sids:
            with contextlib.suppress(OSError):
                (Path(self.records.recordings_dir) / f"{call_sid}.wav").unlink(missing_ok=True)

    # ------------------------------------------------------------ hooks (event loop; never raise)

    def call_started(self, call_sid: str, caller: str | None, called: str | None, kind: str = "live") -> CallHandle:
        """``kind``: ``eval`` for a call the eval runner marked (``voiceagent.twilio.eval_mark``)."""
        full = self.settings.log_full_numbers
        record = CallRecord(
            kind=kind,
            call_sid=call_sid,
            instance=self.store.instance if self.store is not None else "",
            started_at=self._now(),
            from_number=mask_number(caller or None, full=full),
            to_number=mask_number(called or None, full=full),
            model=self.settings.model.deployment,
            dialect=self.settings.model.dialect,
        )
        handle = CallHandle(record)
        self.live[call_sid] = handle
        self._guarded("call_started", call_sid, lambda: self._started(handle))
        return handle

    def _started(self, handle: CallHandle) -> None:
        if self.store is not None:
            self.store.call_started(handle.record)
        record = handle.record
        self.events.publish(
            "call_started",
            {"call_sid": record.call_sid, "from": record.from_number, "to": record.to_number, "kind": record.kind},
        )

    def stream_started(self, handle: CallHandle, stream_sid: str | None) -> None:
        def started() -> None:
            if handle.record.answered_at is not None:
                return
            handle.record.stream_sid = stream_sid
            handle.record.answered_at = self._now()
            if self.store is not None:
                self.store.stream_started(handle.call_sid, stream_sid, handle.record.answered_at)
            self.events.publish("call_answered", {"call_sid": handle.call_sid, "stream_sid": stream_sid})

        self._guarded("stream_started", handle.call_sid, started)

    def line(self, handle: CallHandle, line: TranscriptLine) -> None:
        def record() -> None:
            at = self._now()
            entry = LineRecord(
                seq=len(handle.lines),
                at=at,
                offset_ms=handle.offset_ms(at),
                role=line.role,
                text=line.text,
                interrupted=line.interrupted,
                heard_ms=line.heard_ms,
            )
            handle.lines.append(entry)
            if line.role == "tool":
                handle.tool_calls += 1
            if self.store is not None:
                self.store.line(handle.call_sid, entry)
            if self.events.subscribers:  # the JSON is only worth making for someone watching
                self.events.publish("utterance", {"call_sid": handle.call_sid, **entry.to_json()})

        self._guarded("line", handle.call_sid, record)

    def observed(self, handle: CallHandle, fact: Observation) -> None:
        """A fact the call core observed: the ones that count or that an operator watches."""

        def observe() -> None:
            match fact:
                case BargeIn(heard_ms=heard_ms, produced_ms=produced_ms):
                    handle.barge_ins += 1
                    heard = {"heard_ms": heard_ms, "produced_ms": produced_ms}
                    self.events.publish("barge_in", {"call_sid": handle.call_sid, **heard})
                case ToolCalled(name=name, ok=ok, duration_ms=duration_ms):
                    if handle.record.kind != "eval":  # the callers' figures only (Metrics.eval_call_ended)
                        self.metrics.tool_called(name, ok)
                    facts = {"name": name, "ok": ok, "duration_ms": duration_ms}
                    self.events.publish("tool", {"call_sid": handle.call_sid, **facts})
                case AgentClosing(farewell=farewell):
                    name = BUILTIN_TOOLS.get(farewell, "unknown")
                    if handle.record.kind != "eval":
                        self.metrics.tool_called(name, True)
                    self.events.publish("tool", {"call_sid": handle.call_sid, "name": name, "ok": True})
                case ConnectFailed():
                    self.metrics.connect_failures.inc()
                case Refused() | CallEnded():
                    pass  # the API answers a refusal; the end is ``call_ended``, with the EndCall

        self._guarded("observed", handle.call_sid, observe)

    def _recording_incomplete(self, path: Path, error: str) -> None:
        """On the recordings' writer thread: a recording was cut short (already logged there, once)."""
        self.metrics.recordings_incomplete.inc()
        if len(self._incomplete) < 10_000:
            self._incomplete.add(path.stem)

    def recording_incomplete(self, call_sid: str) -> bool:
        """This call's recording stops short of the call (a write failed; what is there is valid)."""
        return call_sid in self._incomplete

    def transport_for(self, handle: CallHandle, transport: Transport[Frame]) -> Transport[Frame]:
        """The call's transport as the bridge should use it: with recording taps when recordings are on."""
        if self.recordings is None or handle.recording is not None:
            return transport
        path = self.recordings.directory / f"{handle.call_sid}.wav"  # a checked CallSid: a safe name
        handle.recording = CallRecording(path, self.recordings)
        return RecordingTransport(transport, handle.recording)

    def call_ended(self, handle: CallHandle, end: EndCall, turn_latencies_ms: Iterable[int] = ()) -> None:
        def ended() -> None:
            if handle.recording is not None:
                handle.recording.finish()
            record = handle.record
            summary = dict(end.summary)
            record.ended_at = self._now()
            duration = summary.get("duration_s")
            record.duration_s = float(duration) if isinstance(duration, int | float) else None
            record.end_reason = end.detail
            record.farewell = end.farewell.value
            record.transfer_to = end.transfer_to
            for name in FIGURES:
                value = summary.get(name)
                setattr(record, name, value if isinstance(value, int) and not isinstance(value, bool) else None)
            record.tool_calls = handle.tool_calls
            if self.recording_incomplete(handle.call_sid):
                summary["recording"] = "incomplete"
            record.summary = summary
            if self.live.get(handle.call_sid) is handle:
                del self.live[handle.call_sid]
            if record.kind == "eval":
                self.metrics.eval_call_ended(end.reason, end.farewell.value)
            else:
                self.metrics.call_ended(end.reason, end.farewell.value, summary, turn_latencies_ms)
            if self.store is not None:
                self.store.call_ended(record)
            self.events.publish(
                "call_ended",
                {
                    "call_sid": handle.call_sid,
                    "reason": end.detail,
                    "farewell": end.farewell.value,
                    "duration_s": record.duration_s,
                },
            )
            if self.webhook is not None:
                payload = {"call": record.to_json(), "transcript": [entry.to_json() for entry in handle.lines]}
                self.webhook.submit(handle.call_sid, payload)

        self._guarded("call_ended", handle.call_sid, ended)

    def _guarded(self, hook: str, call_sid: str, run: Callable[[], None]) -> None:
        try:
            run()
        except Exception as exc:  # records are worth less than the call: log, never raise into it
            CallLog(call_sid).error("call_records_failed", hook=hook, error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------ per-call seams for the bridge

    def sink_for(self, handle: CallHandle, outer: TranscriptSink) -> TranscriptSink:
        return _CallSink(self, handle, outer)

    def observer_for(self, handle: CallHandle) -> Callable[[Observation], None]:
        return lambda fact: self.observed(handle, fact)


class _CallSink:
    """The service's sink, plus this recorder (first, guarded: the service's sink keeps its semantics)."""

    def __init__(self, recorder: Recorder, handle: CallHandle, outer: TranscriptSink) -> None:
        self._recorder, self._handle, self._outer = recorder, handle, outer

    def record(self, line: TranscriptLine) -> None:
        self._recorder.line(self._handle, line)
        self._outer.record(line)
