"""One accepted connection to the fake Realtime server: the session state and its client events.

The conversation's items live in ``Conversation``, the input audio and its VAD in ``InputAudioBuffer``,
the response in flight and its rules in ``Responder`` (a streaming reply in ``LiveResponse``); this
module dispatches client events to them and sends what the real service would send back
(docs/protocol.md, "## 2. The Realtime API").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
import secrets
import string
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from voiceagent.testing.audio import BYTES_PER_MS
from voiceagent.testing.fake_realtime.audio import (
    InputAudioBuffer,
    SpeechStarted,
    VadEvent,
    recognise,
    recognised_fixtures,
    transcription_usage,
)
from voiceagent.testing.fake_realtime.conversation import Conversation
from voiceagent.testing.fake_realtime.dialect import DIALECTS, DialectSpec
from voiceagent.testing.fake_realtime.errors import ClientError, describe_problem, unsupported_value
from voiceagent.testing.fake_realtime.options import SessionOptions
from voiceagent.testing.fake_realtime.outcomes import Outcome
from voiceagent.testing.fake_realtime.responder import Refusal, Responder
from voiceagent.testing.fake_realtime.response import LiveResponse
from voiceagent.testing.validation import validate_client_event, validate_server_event

logger = logging.getLogger(__name__)

MIN_COMMIT_MS = 100
# What a failed transcription says on Azure when the transcription model names no deployment of the resource.
TRANSCRIPTION_ERROR = {
    "type": "invalid_request_error",
    "code": "DeploymentNotFound",
    "message": "The API deployment for this resource does not exist. If you created the deployment within "
    "the last 5 minutes, please wait a moment and try again.",
    "param": None,
}
_ID_ALPHABET = string.ascii_letters + string.digits


class FakeModelSession:
    """The server side of one Realtime session (one model WebSocket), with everything a test may want
    to inspect."""

    def __init__(
        self,
        connection: ServerConnection,
        *,
        dialect: str,
        model: str,
        path: str,
        headers: dict[str, str],
        options: SessionOptions,
        index: int = 0,
    ) -> None:
        self.dialect = dialect
        self.model = model
        self.path = path
        self.headers = headers  # lower-case names
        self.options = options
        self.spec: DialectSpec = DIALECTS[dialect]
        self.received: list[Any] = []  # every client event parsed, in order
        self.sent: list[dict[str, Any]] = []  # every server event sent, in order
        self.violations: list[str] = []  # protocol violations by the client
        self.self_violations: list[str] = []  # events the fake sent that fail validation (fake bugs)
        self.produced: dict[str, bytearray] = {}  # assistant item id -> audio bytes sent for it
        self.truncations: list[tuple[str, int]] = []
        self.errors_sent: list[dict[str, Any]] = []
        self.function_outputs: dict[str, str] = {}  # call_id -> output, from function_call_output items
        self.answers_in_text = False  # the text-only switch has tripped (docs/protocol.md §2, "Known traps")
        self.closed = False
        self.effective: dict[str, Any] = self.spec.default_session(model, self.new_id("sess"))
        if options.ignore_audio_format:
            self.effective = self.spec.force_pcm(self.effective)
        self.conversation_state = Conversation()
        self.heard: dict[str, list[str]] = {}  # user audio item id -> the caller fixtures recognised in it
        self.heard_words: dict[str, str] = {}  # user audio item id -> the words a director was told it says
        self.rng = random.Random(f"{options.seed}:{index}")
        self.responder = Responder(self, outcomes=deque(options.outcomes))
        self._connection = connection
        self._input = InputAudioBuffer(options.speech_dbfs)
        self._speech_item_id: str | None = None
        self._silence_asked: int | None = None  # silence_duration_ms the client set, if it set one
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_truncate,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }

    # ------------------------------------------------------------------ public

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """The conversation's items, in order."""
        return self.conversation_state.items

    @property
    def responses(self) -> list[LiveResponse]:
        """Every response, requested or the server's own, in order (refused requests are not in it)."""
        return self.responder.responses

    @property
    def refused_responses(self) -> list[Refusal]:
        """The ``response.create`` events refused because a response was active."""
        return self.responder.refused

    @property
    def outcomes(self) -> deque[Outcome]:
        """What the next responses do instead of completing (append ``Failed()`` / ``Incomplete()``)."""
        return self.responder.outcomes

    @property
    def created_by_vad(self) -> int:
        """Responses the server created on its own after a caller turn."""
        return self.responder.created_by_vad

    @property
    def created_by_request(self) -> int:
        """Responses created for a client's ``response.create``."""
        return self.responder.created_by_request

    @property
    def audio_received(self) -> bytearray:
        """Every byte of input audio the client appended, in order."""
        return self._input.received

    @property
    def response_live(self) -> bool:
        """A response is active: requested (not yet created) or in progress."""
        return self.responder.active is not None

    def item(self, item_id: str) -> dict[str, Any] | None:
        return self.conversation_state.get(item_id)

    @property
    def function_calls(self) -> list[dict[str, Any]]:
        """Every function_call item the model produced (``call_id``, ``name``, ``arguments``), in order."""
        return [item for response in self.responses for item in response.made_calls]

    def new_id(self, prefix: str) -> str:
        return prefix + "_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21))

    async def send(self, event: dict[str, Any]) -> None:
        """Send a server event (an ``event_id`` is added); it is validated into ``self_violations``."""
        event = {"event_id": self.new_id("event"), **event}
        self.self_violations.extend(validate_server_event(self.dialect, event))
        if event.get("type") == "error":
            self.errors_sent.append(event)
        self.sent.append(event)
        await self._connection.send(json.dumps(event))

    def response_finished(self, live: LiveResponse) -> None:
        self.responder.finished(live)

    def fake_crashed(self, what: str) -> None:
        self.self_violations.append(what)

    def abort(self) -> None:
        """Drop the TCP connection without a closing handshake."""
        self._connection.transport.abort()

    async def close(self, code: int, reason: str = "") -> None:
        await self._connection.close(code, reason)

    async def run(self) -> None:
        """Serve the connection until it closes."""
        try:
            await self.send({"type": "session.created", "session": self.effective})
            if self.options.session_max_seconds is not None:
                self.spawn(self._expire(self.options.session_max_seconds))
            async for message in self._connection:
                await self._on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            await self.shutdown()

    async def shutdown(self) -> None:
        """Cancel this session's background tasks (response streams, the duration timer)."""
        tasks = [task for task in self._tasks if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ dispatch

    async def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.violations.append("binary frame: the Realtime API takes JSON text frames only")
            await self._error("invalid_json", "Binary frames are not supported; send JSON text.")
            return
        try:
            event = json.loads(message)
        except ValueError as exc:
            self.violations.append(f"invalid JSON: {exc}")
            await self._error("invalid_json", f"Invalid JSON: {exc}")
            return
        self.received.append(event)
        problems = validate_client_event(self.dialect, event)
        if problems:
            self.violations.extend(problems)
            await self._error(*describe_problem(problems[0]), client_event=event)
            return
        kind = event["type"]
        handler = self._handlers.get(kind)
        if handler is None:
            self.violations.append(f"{kind}: not supported by the fake Realtime server (WebSocket transport)")
            await self._error("invalid_value", f"Event type '{kind}' is not supported here.", "type", event)
            return
        try:
            await handler(event)
        except ClientError as refusal:  # the real service answers an error and carries on
            await self._error(refusal.code, refusal.message, refusal.param, event)
        except ConnectionClosed:
            raise
        except Exception as exc:  # a bug in the fake: make it visible to the test and keep serving
            logger.exception("fake realtime session crashed on %s", kind)
            self.fake_crashed(f"fake crashed on {kind}: {exc!r}")

    async def _error(self, code: str | None, message: str, param: str | None = None, client_event: Any = None) -> None:
        event_id = client_event.get("event_id") if isinstance(client_event, dict) else None
        error = {"type": "invalid_request_error", "code": code, "message": message, "param": param}
        await self.send({"type": "error", "error": {**error, "event_id": event_id}})

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ session

    async def _on_session_update(self, event: dict[str, Any]) -> None:
        voice, voices = self.spec.requested_voice(event["session"]), self.options.voices or self.spec.voices
        if voice is not None and voice not in voices:  # refused whole: the session keeps what it had
            raise unsupported_value(voice, voices, self.spec.voice_param)
        self.effective = self.spec.merge_session(self.effective, event["session"])
        asked = self.spec.turn_detection(event["session"])
        if isinstance(asked, dict):
            self._silence_asked = asked.get("silence_duration_ms")
        if self.options.ignore_audio_format:
            self.effective = self.spec.force_pcm(self.effective)
        if self.spec.turn_detection(self.effective) is None:
            self._input.stop_listening()
            self._speech_item_id = None
        if self.options.confirm_session:
            await self.send({"type": "session.updated", "session": self.effective})

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        message = f"Your session hit the maximum duration of {_duration_text(seconds)}."
        await self._error("session_expired", message)
        await self._connection.close(1001, message)

    # ------------------------------------------------------------------ input audio

    async def _on_append(self, event: dict[str, Any]) -> None:
        try:
            audio = base64.b64decode(event["audio"], validate=True)
        except (binascii.Error, ValueError) as exc:
            self.violations.append(f"input_audio_buffer.append: audio is not valid base64 ({exc})")
            message = "Invalid 'audio'. Expected base64-encoded audio bytes."
            raise ClientError("invalid_value", message, "audio") from None
        turn_detection = self.spec.turn_detection(self.effective)
        for vad_event in self._input.append(audio, self._listening(turn_detection)):
            assert turn_detection is not None  # the VAD only speaks when turn detection is on
            await self._on_vad(vad_event, turn_detection)

    def _listening(self, turn_detection: dict[str, Any] | None) -> dict[str, Any] | None:
        """What the energy VAD listens with: the session's turn detection, but the fake's own
        ``heard_silence_ms`` where the client left the silence to the service's default."""
        bridged = self.options.heard_silence_ms
        if turn_detection is None or self._silence_asked is not None or bridged is None:
            return turn_detection
        return {**turn_detection, "silence_duration_ms": bridged}

    async def _on_vad(self, vad_event: VadEvent, turn_detection: dict[str, Any]) -> None:
        if isinstance(vad_event, SpeechStarted):
            self._speech_item_id = self.new_id("item")
            await self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": vad_event.audio_start_ms,
                    "item_id": self._speech_item_id,
                }
            )
            if self.responder.active is not None and turn_detection.get("interrupt_response", True) is not False:
                await self.responder.stop("turn_detected")
            return
        item_id = self._speech_item_id or self.new_id("item")
        self._speech_item_id = None
        await self.send(
            {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": vad_event.audio_end_ms, "item_id": item_id}
        )
        await self._commit(item_id, self._input.take_until(vad_event.audio_end_ms))
        if turn_detection.get("create_response", True) is not False:
            self.responder.caller_turn_ended()

    async def _on_commit(self, event: dict[str, Any]) -> None:
        buffered_ms = self._input.buffered_ms
        if buffered_ms < MIN_COMMIT_MS:
            message = (
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio."
            )
            raise ClientError("input_audio_buffer_commit_empty", message)
        item_id = self._speech_item_id or self.new_id("item")
        self._speech_item_id = None
        await self._commit(item_id, self._input.take_all())

    async def _on_clear(self, event: dict[str, Any]) -> None:
        self._input.discard()
        self._speech_item_id = None
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _commit(self, item_id: str, segment: bytes) -> None:
        previous = self.conversation_state.last_id()
        await self.send({"type": "input_audio_buffer.committed", "previous_item_id": previous, "item_id": item_id})
        item = self.spec.user_audio_item(item_id)
        self.conversation_state.add(item)
        self.heard[item_id] = recognised_fixtures(segment)
        words = self.options.director.hear(segment) if self.options.director is not None else None
        if words is not None:
            self.heard_words[item_id] = words
        for event in self.spec.item_added_events(item, previous) + self.spec.item_done_events(item, previous):
            await self.send(event)
        model = self.spec.transcription_model(self.effective)
        if model is None:
            return
        if self.options.fail_transcription:
            failed = {"item_id": item_id, "content_index": 0, "error": TRANSCRIPTION_ERROR}
            await self.send({"type": "conversation.item.input_audio_transcription.failed", **failed})
            return
        transcript = words if words is not None else recognise(segment)
        self.conversation_state.replace(self.spec.user_audio_item(item_id, transcript))
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item_id,
                "content_index": 0,
                "transcript": transcript,
                "usage": transcription_usage(model, len(segment) / BYTES_PER_MS, transcript),
            }
        )

    # ------------------------------------------------------------------ conversation items

    async def _on_item_create(self, event: dict[str, Any]) -> None:
        item = {**event["item"], "object": "realtime.item", "status": "completed"}
        item.setdefault("id", self.new_id("item"))
        if item["type"] == "function_call_output":
            call_id, output = item.get("call_id"), item.get("output")
            if not isinstance(call_id, str) or call_id not in {call["call_id"] for call in self.function_calls}:
                self.violations.append(f"function_call_output for call_id {call_id!r}, which no call has")
                message = f"Tool call ID '{call_id}' not found in conversation."
                raise ClientError("invalid_value", message, "item.call_id")
            self.function_outputs[call_id] = output if isinstance(output, str) else ""
        previous = self.conversation_state.create(item, event.get("previous_item_id"))
        writes = {part.get("type") for part in item.get("content") or []} & {"text", "output_text"}
        if self.options.text_after_assistant_text and item.get("role") == "assistant" and writes:
            self.answers_in_text = True  # the known trap: from now on it answers in text
        for added in self.spec.item_added_events(item, previous) + self.spec.item_done_events(item, previous):
            await self.send(added)

    async def _on_item_delete(self, event: dict[str, Any]) -> None:
        self.conversation_state.delete(event["item_id"])
        await self.send({"type": "conversation.item.deleted", "item_id": event["item_id"]})

    async def _on_item_retrieve(self, event: dict[str, Any]) -> None:
        item = self.conversation_state.require(event["item_id"])
        await self.send({"type": "conversation.item.retrieved", "item": item})

    async def _on_truncate(self, event: dict[str, Any]) -> None:
        item_id, audio_end_ms = event["item_id"], event["audio_end_ms"]
        self.conversation_state.require(item_id)
        response = self.responder.by_item.get(item_id)
        if response is None:
            raise ClientError("unsupported_content_type", "Only model output audio messages can be truncated")
        response.truncate(event["content_index"], audio_end_ms, self.conversation_state)
        live = response if self.responder.active is response else None
        if live is not None:
            live.request_stop("client_cancelled")  # no further delta of this item
        self.truncations.append((item_id, audio_end_ms))
        truncated = {"item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}
        await self.send({"type": "conversation.item.truncated", **truncated})
        if live is not None and live.task is not None:
            await live.task

    # ------------------------------------------------------------------ responses

    async def _on_response_create(self, event: dict[str, Any]) -> None:
        self.responder.request(event)

    async def _on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted, active = event.get("response_id"), self.responder.active
        if active is None or (wanted is not None and wanted != active.response_id):
            raise ClientError("response_cancel_not_active", "Cancellation failed: no active response found")
        await self.responder.stop("client_cancelled")


def _duration_text(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds:g} seconds"
