"""One streaming response of the fake Realtime server: a fixture spoken in paced audio deltas.

Runs as its own task so the session keeps reading client events while it streams. Stopping is
cooperative: ``LiveResponse.request_stop`` wakes the pacing sleep, the stream sends no further delta
and closes the response with the usual ``*.done`` events and ``response.done`` (status ``cancelled``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from voiceagent.testing.fake_realtime_session import FakeSession

logger = logging.getLogger(__name__)


@dataclass
class LiveResponse:
    """A response in progress and what it has said so far."""

    response_id: str
    item_id: str
    fixture: str
    text: str
    audio: bytes  # the whole reply, already in the session's output format
    bytes_per_ms: int
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: str | None = None  # turn_detected | client_cancelled
    transcript: str = ""  # transcript deltas sent so far
    heard: str | None = None  # what the caller heard, once the client truncated the item
    task: asyncio.Task[None] | None = None

    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.stop.set()


async def stream_response(session: FakeSession, live: LiveResponse) -> None:
    """Announce the response and its item, stream the audio, then close both."""
    try:
        previous_item_id = await _open(session, live)
        await _stream_audio(session, live)
        await _close(session, live, previous_item_id)
    except ConnectionClosed:
        pass
    except Exception as exc:  # a bug in the fake: make it visible to the test, do not hang the session
        logger.exception("fake realtime response crashed")
        session.self_violations.append(f"fake crashed while streaming {live.response_id}: {exc!r}")
    finally:
        session.response_finished(live)


async def _open(session: FakeSession, live: LiveResponse) -> str | None:
    spec = session.spec
    response = spec.response(live.response_id, session.effective, status="in_progress", output=[])
    await session.send({"type": "response.created", "response": response})
    item = spec.assistant_audio_item(live.item_id, "in_progress", None)
    previous_item_id = session.add_item(item)
    await session.send(
        {"type": "response.output_item.added", "response_id": live.response_id, "output_index": 0, "item": item}
    )
    for event in spec.item_added_events(item, previous_item_id):
        await session.send(event)
    await session.send(
        {**_part_ids(live), "type": "response.content_part.added", "part": {"type": "audio", "transcript": ""}}
    )
    return previous_item_id


async def _stream_audio(session: FakeSession, live: LiveResponse) -> None:
    options = session.options
    chunk_bytes = max(1, options.chunk_ms * live.bytes_per_ms)
    chunks = max(1, math.ceil(len(live.audio) / chunk_bytes))
    words = live.text.split()
    said = 0
    for index in range(chunks):
        if live.stop.is_set():
            return
        piece = live.audio[index * chunk_bytes : (index + 1) * chunk_bytes]
        session.produced[live.item_id].extend(piece)
        delta = base64.b64encode(piece).decode("ascii")
        await session.send({**_part_ids(live), "type": session.spec.audio_delta, "delta": delta})
        due = round(len(words) * (index + 1) / chunks)
        if due > said:
            text = (" " if said else "") + " ".join(words[said:due])
            said = due
            live.transcript += text
            await session.send({**_part_ids(live), "type": session.spec.transcript_delta, "delta": text})
        await _pause(live, options.chunk_ms / options.speed / 1000)


async def _pause(live: LiveResponse, seconds: float) -> None:
    if seconds <= 0:  # speed=inf: no pacing, but let the session read its socket between chunks
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(live.stop.wait(), timeout=seconds)


async def _close(session: FakeSession, live: LiveResponse, previous_item_id: str | None) -> None:
    spec = session.spec
    cancelled = live.stop_reason is not None
    transcript = live.transcript
    await session.send({**_part_ids(live), "type": spec.audio_done})
    await session.send({**_part_ids(live), "type": spec.transcript_done, "transcript": transcript})
    await session.send(
        {**_part_ids(live), "type": "response.content_part.done", "part": {"type": "audio", "transcript": transcript}}
    )
    status = "incomplete" if cancelled else "completed"
    item = spec.assistant_audio_item(live.item_id, status, transcript)
    session.replace_item(item if live.heard is None else spec.assistant_audio_item(live.item_id, status, live.heard))
    await session.send(
        {"type": "response.output_item.done", "response_id": live.response_id, "output_index": 0, "item": item}
    )
    for event in spec.item_done_events(item, previous_item_id):
        await session.send(event)
    details = {"type": "cancelled", "reason": live.stop_reason} if cancelled else None
    response = spec.response(
        live.response_id,
        session.effective,
        status="cancelled" if cancelled else "completed",
        status_details=details,
        output=[item],
        usage=_usage(live, session.produced[live.item_id]),
    )
    session.response_finished(live)  # before response.done: a client may answer it at once
    await session.send({"type": "response.done", "response": response})


def _part_ids(live: LiveResponse) -> dict[str, Any]:
    return {"response_id": live.response_id, "item_id": live.item_id, "output_index": 0, "content_index": 0}


def _usage(live: LiveResponse, produced: bytearray) -> dict[str, Any]:
    audio_tokens = len(produced) // live.bytes_per_ms // 50  # ~20 audio tokens per second
    text_tokens = len(live.transcript.split())
    input_tokens = 120
    return {
        "total_tokens": input_tokens + audio_tokens + text_tokens,
        "input_tokens": input_tokens,
        "output_tokens": audio_tokens + text_tokens,
        "input_token_details": {"text_tokens": input_tokens, "audio_tokens": 0, "cached_tokens": 0},
        "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
    }
