"""One streaming response of the fake Realtime server: a fixture spoken in paced audio deltas of uneven
sizes (or, once the model has switched to text, written as text), then any scripted function calls.

Runs as its own task so the session keeps reading client events while it streams. The real service's
timing (docs/protocol.md §2, "### Responses: one at a time"): ``response.created`` comes a while after
the request (``Pacing.created_ms``), ``rate_limits.updated`` a little after ``response.done``. Stopping
is cooperative: ``LiveResponse.request_stop`` wakes the pacing sleep, the stream sends no further delta
and closes the response with the usual ``*.done`` events and ``response.done`` (status ``cancelled``).
A response stopped while it speaks makes no function call; one stopped while it writes a call's
arguments finishes them (``.function_call_arguments.done``) and is then cancelled, as the real one is.
A scripted ``Outcome`` makes it fail before it says anything, or end incomplete part-way.

A response sees its session only through ``ResponseOutlet`` (send an event, say it has finished, report
a crash) and the session's ``Conversation``; everything else it needs is in its ``LiveResponse``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from voiceagent.testing.fake_realtime.audio import words_until
from voiceagent.testing.fake_realtime.conversation import Conversation
from voiceagent.testing.fake_realtime.dialect import DialectSpec
from voiceagent.testing.fake_realtime.errors import ClientError
from voiceagent.testing.fake_realtime.outcomes import Failed, Incomplete, Outcome, obfuscation, rate_limits
from voiceagent.testing.fake_realtime.script import ScriptedCall, argument_deltas, delta_sizes

logger = logging.getLogger(__name__)


@dataclass
class LiveResponse:
    """A response in progress and what it has said so far."""

    response_id: str
    item_id: str  # its message item, when it says something
    fixture: str | None  # what it says; None: it only calls functions
    text: str
    audio: bytes  # the whole reply, already in the session's output format
    bytes_per_ms: int
    spec: DialectSpec
    config: dict[str, Any]  # the session configuration when the response was created
    in_text: bool = False  # the model has switched to text: it writes ``text`` and says nothing
    calls: tuple[ScriptedCall, ...] = ()  # function calls after what it says
    origin: str = "request"  # request (a client's response.create) | vad (the server's own, after a turn)
    outcome: Outcome | None = None  # scripted: it fails, or ends incomplete
    created: bool = False  # response.created has been sent
    made_calls: list[dict[str, Any]] = field(default_factory=list)  # the function_call items it produced
    produced: bytearray = field(default_factory=bytearray)  # audio sent so far
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None  # turn_detected | client_cancelled (cancelled) | an Incomplete's reason
    transcript: str = ""  # transcript (or, in text, text) deltas sent so far
    heard: str | None = None  # what the caller heard, once the client truncated the item
    task: asyncio.Task[None] | None = None

    @property
    def produced_ms(self) -> int:
        return len(self.produced) // self.bytes_per_ms

    def truncate(self, content_index: int, audio_end_ms: int, conversation: Conversation) -> None:
        """The truncate rule (docs/protocol.md, "### The truncate rule"): the item now ends at
        ``audio_end_ms`` and keeps only the words heard by then; ``ClientError`` where the real service
        refuses (nothing produced yet, no such content part, past the audio produced so far)."""
        if not self.produced:
            raise ClientError("unsupported_content_type", "Only model output audio messages can be truncated")
        if content_index != 0:
            message = f"Invalid 'content_index': item has no content part {content_index}."
            raise ClientError("invalid_value", message, "content_index")
        if audio_end_ms > self.produced_ms:
            message = f"Audio content of {self.produced_ms}ms is already shorter than {audio_end_ms}ms"
            raise ClientError("invalid_value", message, "audio_end_ms")
        total_ms = len(self.audio) // self.bytes_per_ms
        self.heard = words_until(self.text, audio_end_ms / total_ms) if total_ms else ""
        item = conversation.require(self.item_id)
        status = item.get("status", "incomplete")
        conversation.replace(self.spec.assistant_audio_item(self.item_id, status, self.heard))

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()


class ResponseOutlet(Protocol):
    """What a streaming response needs from its session."""

    async def send(self, event: dict[str, Any]) -> None:
        """Send a server event to the client."""

    def response_finished(self, live: LiveResponse) -> None:
        """The response is over (called before ``response.done`` is sent, and again once it ends)."""

    def fake_crashed(self, what: str) -> None:
        """A bug in the fake: record it where the test will see it."""

    def new_id(self, prefix: str) -> str:
        """A fresh id in the real service's style (``item_…``, ``call_…``)."""


@dataclass(frozen=True)
class Pacing:
    """How audio deltas are cut and paced: each ``delta_ms`` long (a range: drawn from ``rng``), the next
    one sent after its own duration / ``speed``. The other delays are the real service's milliseconds,
    also divided by ``speed``."""

    delta_ms: tuple[int, int]
    speed: float
    rng: random.Random
    created_ms: float = 0.0  # request (or end of the caller's turn) -> response.created
    rate_limits_ms: float = 0.0  # response.done -> rate_limits.updated
    argument_delta_ms: float = 0.0  # between two pieces of a function call's arguments

    def pause_seconds(self, size: int, bytes_per_ms: int) -> float:
        return size / bytes_per_ms / self.speed / 1000

    def seconds(self, real_ms: float) -> float:
        return real_ms / self.speed / 1000


async def stream_response(
    live: LiveResponse, outlet: ResponseOutlet, conversation: Conversation, pacing: Pacing
) -> None:
    """Announce the response, say (or write) its fixture, make its function calls, then close it."""
    try:
        await asyncio.sleep(pacing.seconds(pacing.created_ms))  # not interrupted: the server's own schedule
        response = live.spec.response(live.response_id, live.config, status="in_progress", output=[])
        live.created = True
        await outlet.send({"type": "response.created", "response": response})
        output: list[dict[str, Any]] = []
        if isinstance(live.outcome, Failed) or live.stop.is_set():
            await asyncio.sleep(0)
        elif live.fixture is not None:
            previous_item_id = await _open(live, outlet, conversation)
            await (_stream_text(live, outlet) if live.in_text else _stream_audio(live, outlet, pacing))
            output.append(await _close(live, outlet, conversation, previous_item_id))
        for call in live.calls:
            if live.stop.is_set() or isinstance(live.outcome, Failed):
                break
            output.append(await _function_call(live, call, len(output), outlet, conversation, pacing))
        await _done(live, outlet, output)
        await asyncio.sleep(pacing.seconds(pacing.rate_limits_ms))
        usage = _usage(live)
        await outlet.send({"type": "rate_limits.updated", "rate_limits": rate_limits(usage["output_tokens"])})
    except ConnectionClosed:
        pass
    except Exception as exc:  # a bug in the fake: make it visible to the test, do not hang the session
        logger.exception("fake realtime response crashed")
        outlet.fake_crashed(f"fake crashed while streaming {live.response_id}: {exc!r}")
    finally:
        outlet.response_finished(live)


async def _open(live: LiveResponse, outlet: ResponseOutlet, conversation: Conversation) -> str | None:
    spec = live.spec
    if live.in_text:
        item, part = spec.assistant_text_item(live.item_id, "in_progress", None), {"type": "text", "text": ""}
    else:
        item, part = spec.assistant_audio_item(live.item_id, "in_progress", None), {"type": "audio", "transcript": ""}
    previous_item_id = conversation.add(item)
    await outlet.send(
        {"type": "response.output_item.added", "response_id": live.response_id, "output_index": 0, "item": item}
    )
    for event in spec.item_added_events(item, previous_item_id):
        await outlet.send(event)
    await outlet.send({**_part_ids(live), "type": "response.content_part.added", "part": part})
    return previous_item_id


async def _stream_audio(live: LiveResponse, outlet: ResponseOutlet, pacing: Pacing) -> None:
    sizes = delta_sizes(len(live.audio), live.bytes_per_ms, pacing.delta_ms, pacing.rng)
    words = live.text.split()
    said = 0
    cut = len(live.audio) * live.outcome.fraction if isinstance(live.outcome, Incomplete) else None
    for size in sizes:
        if live.stop.is_set():
            return
        if cut is not None and len(live.produced) + size > cut:
            live.request_stop(live.outcome.reason if isinstance(live.outcome, Incomplete) else "")
            return
        piece = live.audio[len(live.produced) : len(live.produced) + size]
        live.produced.extend(piece)
        delta = base64.b64encode(piece).decode("ascii")
        await outlet.send(_delta(live, live.spec.audio_delta, delta))
        due = round(len(words) * len(live.produced) / len(live.audio)) if live.audio else len(words)
        if due > said:
            text = (" " if said else "") + " ".join(words[said:due])
            said = due
            live.transcript += text
            await outlet.send(_delta(live, live.spec.transcript_delta, text))
        await _pause(live, pacing.pause_seconds(size, live.bytes_per_ms))


async def _stream_text(live: LiveResponse, outlet: ResponseOutlet) -> None:
    """The known trap: the model writes its answer (a few words per delta, quickly) and says nothing."""
    words = live.text.split()
    for start in range(0, len(words), 4):
        if live.stop.is_set():
            return
        text = (" " if start else "") + " ".join(words[start : start + 4])
        live.transcript += text
        await outlet.send({**_part_ids(live), "type": live.spec.text_delta, "delta": text})
        await asyncio.sleep(0)


async def _pause(live: LiveResponse, seconds: float) -> None:
    if seconds <= 0:  # speed=inf: no pacing, but let the session read its socket between chunks
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(live.stop.wait(), timeout=seconds)


async def _close(
    live: LiveResponse, outlet: ResponseOutlet, conversation: Conversation, previous_item_id: str | None
) -> dict[str, Any]:
    """Close the message item; returns it as it ends the response."""
    spec = live.spec
    status = "incomplete" if live.stop_reason is not None else "completed"
    said = live.transcript
    if live.in_text:
        await outlet.send({**_part_ids(live), "type": spec.text_done, "text": said})
        part: dict[str, Any] = {"type": "text", "text": said}
        item = spec.assistant_text_item(live.item_id, status, said)
        conversation.replace(item)
    else:
        await outlet.send({**_part_ids(live), "type": spec.audio_done})
        await outlet.send({**_part_ids(live), "type": spec.transcript_done, "transcript": said})
        part = {"type": "audio", "transcript": said}
        item = spec.assistant_audio_item(live.item_id, status, said)
        heard = live.heard
        conversation.replace(item if heard is None else spec.assistant_audio_item(live.item_id, status, heard))
    await outlet.send({**_part_ids(live), "type": "response.content_part.done", "part": part})
    for event in spec.item_done_events(item, previous_item_id):  # GA: conversation.item.done comes first
        await outlet.send(event)
    await outlet.send(
        {"type": "response.output_item.done", "response_id": live.response_id, "output_index": 0, "item": item}
    )
    return item


async def _function_call(
    live: LiveResponse,
    call: ScriptedCall,
    output_index: int,
    outlet: ResponseOutlet,
    conversation: Conversation,
    pacing: Pacing,
) -> dict[str, Any]:
    """One function call item (docs/protocol.md §2, "Function calling"): added with empty arguments, the
    arguments streamed in pieces, done (with the name on GA only), the item done. A stop meanwhile does
    not stop it: the arguments are finished and the response is then cancelled (the real service's way)."""
    spec = live.spec
    item_id, call_id = outlet.new_id("item"), outlet.new_id("call")
    item = spec.function_call_item(item_id, call_id, call.name, "", "in_progress")
    previous_item_id = conversation.add(item)
    placed = {"response_id": live.response_id, "output_index": output_index}
    await outlet.send({"type": "response.output_item.added", **placed, "item": item})
    for event in spec.item_added_events(item, previous_item_id):
        await outlet.send(event)
    ids = {**placed, "item_id": item_id, "call_id": call_id}
    for piece in argument_deltas(call.arguments):
        await outlet.send({**ids, "type": "response.function_call_arguments.delta", "delta": piece})
        if not live.stop.is_set():  # stopped: the rest of the arguments follow at once
            await _pause(live, pacing.seconds(pacing.argument_delta_ms))
    await outlet.send(spec.arguments_done(ids, call.name, call.arguments))
    done = spec.function_call_item(item_id, call_id, call.name, call.arguments, "completed")
    conversation.replace(done)
    live.made_calls.append(done)
    for event in spec.item_done_events(done, previous_item_id):  # GA: conversation.item.done comes first
        await outlet.send(event)
    await outlet.send({"type": "response.output_item.done", **placed, "item": done})
    return done


async def _done(live: LiveResponse, outlet: ResponseOutlet, output: list[dict[str, Any]]) -> None:
    status, details = _status(live)
    response = live.spec.response(
        live.response_id,
        live.config,
        status=status,
        status_details=details,
        output=output,
        usage=_usage(live),
    )
    outlet.response_finished(live)  # before response.done: a client may answer it at once
    await outlet.send({"type": "response.done", "response": response})


def _status(live: LiveResponse) -> tuple[str, dict[str, Any] | None]:
    """``response.status`` and ``status_details`` of a response that is over."""
    if isinstance(live.outcome, Failed):
        return "failed", live.outcome.status_details()
    if live.stop_reason in ("turn_detected", "client_cancelled"):
        return "cancelled", {"type": "cancelled", "reason": live.stop_reason}
    if isinstance(live.outcome, Incomplete) and live.stop_reason == live.outcome.reason:
        return "incomplete", live.outcome.status_details()
    return "completed", None


def _delta(live: LiveResponse, kind: str, delta: str) -> dict[str, Any]:
    """An audio or transcript delta; GA adds its ``obfuscation`` padding."""
    event = {**_part_ids(live), "type": kind, "delta": delta}
    return {**event, "obfuscation": obfuscation(len(delta))} if live.spec.is_ga else event


def _part_ids(live: LiveResponse) -> dict[str, Any]:
    return {"response_id": live.response_id, "item_id": live.item_id, "output_index": 0, "content_index": 0}


def _usage(live: LiveResponse) -> dict[str, Any]:
    audio_tokens = live.produced_ms // 50  # ~20 audio tokens per second
    text_tokens = len(live.transcript.split()) + sum(len(item["arguments"]) // 4 for item in live.made_calls)
    input_tokens = 120
    return {
        "total_tokens": input_tokens + audio_tokens + text_tokens,
        "input_tokens": input_tokens,
        "output_tokens": audio_tokens + text_tokens,
        "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
    }
