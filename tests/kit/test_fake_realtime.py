"""The fake Realtime server, driven through a real WebSocket client in both dialects.

A fake that accepts anything proves nothing: these tests check that it rejects what the real service
rejects, answers what the real service answers, and that everything it sends validates.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voiceagent.testing import (
    FIXTURE_TEXTS,
    FRAME_BYTES,
    FakeModelSession,
    FakeRealtimeServer,
    Rejection,
    load_fixture,
    silence,
    wait_until,
)
from voiceagent.testing.fake_realtime import Target, parse_target
from voiceagent.testing.fake_realtime.audio import VoiceActivityDetector, recognise
from voiceagent.testing.fake_realtime.outcomes import Failed, Incomplete
from voiceagent.testing.validation import validate_server_event

DIALECTS = ("ga", "preview")
TIMEOUT = 10.0
FAST = float("inf")
LONG = "agent_reply_long"  # 13.9 s: stays live long enough to interrupt, even on a loaded machine

# ---------------------------------------------------------------------------------------------- helpers


def realtime_url(fake: FakeRealtimeServer, dialect: str, model: str = "gpt-realtime") -> str:
    base = f"ws://127.0.0.1:{fake.port}"
    if dialect == "ga":
        return f"{base}/openai/v1/realtime?model={model}"
    return f"{base}/openai/realtime?api-version=2025-04-01-preview&deployment={model}"


def mulaw_update(dialect: str, *, transcription: bool = True, vad: dict[str, Any] | None = None) -> dict[str, Any]:
    turn_detection = vad if vad is not None else {"type": "server_vad"}
    transcribe: dict[str, str] | None = {"model": "whisper-1"} if transcription else None
    if dialect == "ga":
        audio_in = {"format": {"type": "audio/pcmu"}, "turn_detection": turn_detection, "transcription": transcribe}
        audio_out = {"format": {"type": "audio/pcmu"}, "voice": "alloy"}
        audio = {"input": audio_in, "output": audio_out}
        session: dict[str, Any] = {"type": "realtime", "output_modalities": ["audio"], "audio": audio}
    else:
        session = {
            "modalities": ["text", "audio"],
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "voice": "alloy",
            "turn_detection": turn_detection,
            "input_audio_transcription": transcribe,
        }
    return {"type": "session.update", "session": session}


def formats(dialect: str, session: dict[str, Any]) -> tuple[Any, Any]:
    if dialect == "ga":
        return session["audio"]["input"]["format"]["type"], session["audio"]["output"]["format"]["type"]
    return session["input_audio_format"], session["output_audio_format"]


def audio_delta_type(dialect: str) -> str:
    return "response.output_audio.delta" if dialect == "ga" else "response.audio.delta"


def transcript_delta_type(dialect: str) -> str:
    return "response.output_audio_transcript.delta" if dialect == "ga" else "response.audio_transcript.delta"


class Client:
    """A test client: sends events, reads until it sees the one it waits for, keeps everything read."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(event if isinstance(event, (str, bytes)) else json.dumps(event))

    async def append(self, audio: bytes, size: int = FRAME_BYTES) -> None:
        for start in range(0, len(audio), size):
            chunk = base64.b64encode(audio[start : start + size]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": chunk})

    async def next(self, kind: str) -> dict[str, Any]:
        """Read until an event of ``kind`` arrives (within ``TIMEOUT``) and return it."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                event: dict[str, Any] = json.loads(await self.ws.recv())
                self.events.append(event)
                if event["type"] == kind:
                    return event

    async def seen(self, kind: str) -> dict[str, Any]:
        """The first event of ``kind`` read so far, or the next one to arrive."""
        earlier = self.of(kind)
        return earlier[0] if earlier else await self.next(kind)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


Opener = Callable[..., Awaitable[tuple[Client, FakeModelSession]]]


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Awaitable[FakeRealtimeServer]]]:
    """Start fakes with any options; on teardown stop them and check the fake sent only valid events."""
    started: list[FakeRealtimeServer] = []

    async def start(**options: Any) -> FakeRealtimeServer:
        fake = FakeRealtimeServer(**{"speed": FAST, **options})
        await fake.start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        await fake.stop()
        assert fake.self_violations == []
        for session in fake.sessions:
            assert session.self_violations == []


@pytest.fixture
async def open_session(servers: Callable[..., Awaitable[FakeRealtimeServer]]) -> AsyncIterator[Opener]:
    """Connect a client (μ-law configured unless ``configure=False``) to a fresh fake."""
    clients: list[ClientConnection] = []

    async def open_(
        dialect: str, *, configure: bool = True, fake: FakeRealtimeServer | None = None, **options: Any
    ) -> tuple[Client, FakeModelSession]:
        fake = fake or await servers(**options)
        ws = await connect(realtime_url(fake, dialect), additional_headers={"api-key": "test-key"})
        clients.append(ws)
        client = Client(ws)
        await client.next("session.created")
        if configure:
            await client.send(mulaw_update(dialect))
            await client.next("session.updated")
        return client, fake.sessions[-1]

    yield open_
    for ws in clients:
        await ws.close()


async def user_turn(client: Client, fixture: str, *, lead_ms: int = 1000, tail_ms: int = 1000) -> None:
    await client.append(silence(lead_ms) + load_fixture(fixture) + silence(tail_ms))


# ---------------------------------------------------------------------------------------------- session


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_session_starts_pcm_and_updates_to_mulaw(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, configure=False)
    created = client.of("session.created")[0]["session"]
    assert formats(dialect, created) == (("audio/pcm", "audio/pcm") if dialect == "ga" else ("pcm16", "pcm16"))

    await client.send(mulaw_update(dialect))
    updated = (await client.next("session.updated"))["session"]

    assert formats(dialect, updated) == (
        ("audio/pcmu", "audio/pcmu") if dialect == "ga" else ("g711_ulaw", "g711_ulaw")
    )
    assert updated == session.effective
    turn_detection = updated["audio"]["input"]["turn_detection"] if dialect == "ga" else updated["turn_detection"]
    assert turn_detection["silence_duration_ms"] == 200  # defaults filled in, as the real service does
    assert (turn_detection["threshold"], turn_detection["prefix_padding_ms"]) == (0.5, 300)
    assert session.dialect == dialect and session.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_model_that_ignores_the_format_keeps_pcm(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, ignore_audio_format=True, configure=False)
    await client.send(mulaw_update(dialect))
    updated = (await client.next("session.updated"))["session"]
    assert formats(dialect, updated) == (("audio/pcm", "audio/pcm") if dialect == "ga" else ("pcm16", "pcm16"))

    await client.send({"type": "response.create"})
    await client.next("response.done")
    item_id = next(iter(session.produced))
    assert len(session.produced[item_id]) == len(load_fixture("agent_greeting")) * 6  # 24 kHz, 16-bit


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_session_update_merges_into_the_effective_config(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    if dialect == "ga":
        await client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}})
    else:
        await client.send({"type": "session.update", "session": {"instructions": "Be brief."}})
    updated = (await client.next("session.updated"))["session"]
    assert updated["instructions"] == "Be brief."
    assert formats(dialect, updated) == formats(dialect, session.effective)
    assert "pcm" not in str(formats(dialect, updated)).replace("pcmu", "")  # still μ-law


# ---------------------------------------------------------------------------------------------- VAD


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_vad_hears_a_caller_and_transcribes_the_fixture(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    await client.append(silence(1000) + load_fixture("caller_book_table") + silence(1000), size=1000)

    started = await client.next("input_audio_buffer.speech_started")
    stopped = await client.next("input_audio_buffer.speech_stopped")
    committed = await client.next("input_audio_buffer.committed")
    transcript = await client.next("conversation.item.input_audio_transcription.completed")

    # caller_book_table is loud from its frame 2 to its frame 184, with no pause of 500 ms between;
    # it follows 50 silent frames. Speech starts prefix_padding_ms (300) before the first loud frame and
    # stops at the end of the 25th quiet frame (silence_duration_ms 500) after the last loud one.
    assert started["audio_start_ms"] == (50 + 2) * 20 - 300
    assert stopped["audio_end_ms"] == (50 + 184 + 25 + 1) * 20
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == transcript["item_id"]
    assert transcript["transcript"] == FIXTURE_TEXTS["caller_book_table"]
    if dialect == "ga":
        assert {"conversation.item.added", "conversation.item.done"} <= set(client.types())
        assert "usage" in transcript
    else:
        assert "conversation.item.created" in client.types()
    assert session.conversation[0]["role"] == "user"
    sent = silence(1000) + load_fixture("caller_book_table") + silence(1000)
    await wait_until(lambda: len(session.audio_received) == len(sent), TIMEOUT)
    assert session.audio_received == sent

    done = await client.next("response.done")  # create_response defaults to true: the reply follows
    assert done["response"]["status"] == "completed"
    assert session.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_vad_ignores_line_noise(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    await client.append(load_fixture("line_noise") + silence(1000))
    await client.send({"type": "input_audio_buffer.commit"})
    committed = await client.next("input_audio_buffer.committed")
    transcript = await client.next("conversation.item.input_audio_transcription.completed")

    assert "input_audio_buffer.speech_started" not in client.types()
    assert transcript["item_id"] == committed["item_id"]
    assert transcript["transcript"] == ""  # nothing recognisable
    assert not session.response_live


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_no_turn_detection_no_vad_events(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, configure=False)
    update = mulaw_update(dialect)
    if dialect == "ga":
        update["session"]["audio"]["input"]["turn_detection"] = None
    else:
        update["session"]["turn_detection"] = None
    await client.send(update)
    await client.next("session.updated")
    await user_turn(client, "caller_goodbye")
    await client.send({"type": "input_audio_buffer.commit"})
    transcript = await client.next("conversation.item.input_audio_transcription.completed")
    assert transcript["transcript"] == FIXTURE_TEXTS["caller_goodbye"]
    assert "input_audio_buffer.speech_started" not in client.types()


def test_vad_frames_the_input_whatever_the_append_sizes() -> None:
    audio = silence(600) + load_fixture("caller_interrupt") + silence(800)
    results = []
    for size in (7, 160, 1001, len(audio)):
        vad, events, received = VoiceActivityDetector(speech_dbfs=-38.0), [], bytearray()
        for start in range(0, len(audio), size):
            received.extend(audio[start : start + size])
            events += vad.scan(received, prefix_padding_ms=300, silence_duration_ms=500)
        results.append(events)
    assert all(events == results[0] for events in results)
    assert [type(e).__name__ for e in results[0]] == ["SpeechStarted", "SpeechStopped"]


def test_recognise_finds_fixtures_in_any_alignment() -> None:
    odd = silence(13)[:77] + load_fixture("caller_transfer") + silence(300)
    assert recognise(odd) == FIXTURE_TEXTS["caller_transfer"]
    assert recognise(load_fixture("line_noise")) == ""
    both = load_fixture("caller_interrupt") + silence(200) + load_fixture("caller_goodbye")
    assert recognise(both) == FIXTURE_TEXTS["caller_interrupt"] + " " + FIXTURE_TEXTS["caller_goodbye"]


# ---------------------------------------------------------------------------------------------- responses


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_response_streams_the_greeting(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    await client.send({"type": "response.create"})
    done = await client.next("response.done")

    greeting = load_fixture("agent_greeting")
    deltas = client.of(audio_delta_type(dialect))
    audio = b"".join(base64.b64decode(delta["delta"]) for delta in deltas)
    assert audio == greeting
    sizes = [len(base64.b64decode(delta["delta"])) for delta in deltas]
    assert all(40 * 8 <= size <= 240 * 8 for size in sizes[:-1]) and 0 < sizes[-1] <= 240 * 8  # the default
    assert len(set(sizes)) > len(sizes) // 2  # uneven, as the real service's are
    item_id = deltas[0]["item_id"]
    assert session.produced[item_id] == greeting

    text = "".join(delta["delta"] for delta in client.of(transcript_delta_type(dialect)))
    assert text == FIXTURE_TEXTS["agent_greeting"]
    order = [t for t in client.types() if t.startswith("response.") and "delta" not in t]
    assert order[:3] == ["response.created", "response.output_item.added", "response.content_part.added"]
    assert order[-2:] == ["response.output_item.done", "response.done"]
    response = done["response"]
    assert response["status"] == "completed" and response["usage"]["total_tokens"] > 0
    assert response["output"][0]["id"] == item_id
    assert response["output"][0]["content"][0]["transcript"] == FIXTURE_TEXTS["agent_greeting"]


async def test_later_responses_cycle_through_the_replies(open_session: Opener) -> None:
    client, session = await open_session("ga", replies=("agent_goodbye",))
    for _ in range(3):
        await client.send({"type": "response.create"})
        await client.next("response.done")
    spoken = [len(audio) for audio in session.produced.values()]
    greeting, goodbye = len(load_fixture("agent_greeting")), len(load_fixture("agent_goodbye"))
    assert spoken == [greeting, goodbye, goodbye]


@pytest.mark.refusals
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_second_response_while_one_is_live_is_refused(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, speed=1.0, greeting=LONG)
    await client.send({"type": "response.create"})
    await client.next(audio_delta_type(dialect))
    await client.send({"type": "response.create", "event_id": "evt_second"})
    error = (await client.next("error"))["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert error["event_id"] == "evt_second"
    await client.send({"type": "response.cancel"})
    await client.next("response.done")


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_cancel_stops_a_live_response(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, speed=1.0, greeting=LONG)
    await client.send({"type": "response.create"})
    await client.next(audio_delta_type(dialect))
    await client.send({"type": "response.cancel"})
    done = await client.next("response.done")

    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    item_id = done["response"]["output"][0]["id"]
    received = b"".join(base64.b64decode(e["delta"]) for e in client.of(audio_delta_type(dialect)))
    assert 0 < len(session.produced[item_id]) < len(load_fixture(LONG))
    await client.send({"type": "response.cancel"})  # nothing live any more
    assert (await client.next("error"))["error"]["code"] == "response_cancel_not_active"
    assert received == session.produced[item_id]  # no delta after response.done


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_cancel_with_nothing_live_is_the_real_error(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    await client.send({"type": "response.cancel", "event_id": "evt_cancel"})
    error = await client.next("error")
    assert error["error"] == {
        "type": "invalid_request_error",
        "code": "response_cancel_not_active",
        "message": "Cancellation failed: no active response found",
        "param": None,
        "event_id": "evt_cancel",
    }
    assert session.errors_sent == [error]
    assert session.violations == []  # an error answer, not a protocol violation


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_caller_speech_interrupts_a_live_response(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, speed=1.0, greeting=LONG)
    await client.send({"type": "response.create"})
    await client.next(audio_delta_type(dialect))
    await user_turn(client, "caller_interrupt", lead_ms=0)

    await client.next("input_audio_buffer.speech_started")
    done = await client.next("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "turn_detected"
    assert session.truncations == []  # truncation is the client's job
    transcript = await client.next("conversation.item.input_audio_transcription.completed")
    assert transcript["transcript"] == FIXTURE_TEXTS["caller_interrupt"]
    await client.next("response.created")  # the user turn starts the next reply
    await client.send({"type": "response.cancel"})
    await client.next("response.done")


async def test_interrupt_response_false_lets_the_response_finish(open_session: Opener) -> None:
    client, session = await open_session("ga", speed=16.0, greeting=LONG, configure=False)  # 0.9 s live
    vad = {"type": "server_vad", "interrupt_response": False, "create_response": False}
    await client.send(mulaw_update("ga", vad=vad))
    await client.next("session.updated")
    await client.send({"type": "response.create"})
    await client.next("response.output_audio.delta")
    await user_turn(client, "caller_transfer", lead_ms=0)
    await client.next("input_audio_buffer.speech_started")
    done = await client.next("response.done")  # read after speech_started: the response was live
    assert done["response"]["status"] == "completed"
    await client.seen("input_audio_buffer.committed")
    assert not session.response_live  # create_response=false: no reply to the turn


# ---------------------------------------------------------------------------------------------- truncate


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_truncate_rule(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    await client.send({"type": "response.create"})
    done = await client.next("response.done")
    item_id = done["response"]["output"][0]["id"]
    produced_ms = len(load_fixture("agent_greeting")) // 8

    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
    await client.send({**truncate, "audio_end_ms": produced_ms + 60, "event_id": "evt_past"})
    error = (await client.next("error"))["error"]
    assert error["message"] == f"Audio content of {produced_ms}ms is already shorter than {produced_ms + 60}ms"
    assert error["code"] == "invalid_value" and error["event_id"] == "evt_past"

    await client.send({**truncate, "item_id": "item_nope", "audio_end_ms": 10})
    assert (await client.next("error"))["error"]["code"] == "item_not_found"

    await client.send({**truncate, "audio_end_ms": 1200})
    truncated = await client.next("conversation.item.truncated")
    assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == (item_id, 0, 1200)
    assert session.truncations == [(item_id, 1200)]
    item = session.item(item_id)
    assert item is not None
    heard = item["content"][0]["transcript"]
    assert heard and FIXTURE_TEXTS["agent_greeting"].startswith(heard) and heard != FIXTURE_TEXTS["agent_greeting"]

    await client.send({**truncate, "audio_end_ms": produced_ms})  # exactly the end is fine
    await client.next("conversation.item.truncated")
    assert session.violations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_only_model_audio_can_be_truncated(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    user_text = [{"type": "input_text", "text": "Hi"}]
    assistant_text = [{"type": "output_text" if dialect == "ga" else "text", "text": "Hello"}]
    items = [
        {"id": "item_user1", "type": "message", "role": "user", "content": user_text},
        {"id": "item_text1", "type": "message", "role": "assistant", "content": assistant_text},
    ]
    for item in items:
        await client.send({"type": "conversation.item.create", "item": item})
        await client.next("conversation.item.added" if dialect == "ga" else "conversation.item.created")
        truncate = {"type": "conversation.item.truncate", "item_id": item["id"], "content_index": 0, "audio_end_ms": 0}
        await client.send(truncate)
        error = (await client.next("error"))["error"]
        assert error["message"] == "Only model output audio messages can be truncated"
    assert session.truncations == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_truncating_a_live_item_stops_its_audio(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, speed=1.0, greeting=LONG)
    await client.send({"type": "response.create"})
    delta = await client.next(audio_delta_type(dialect))
    item_id = delta["item_id"]
    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 20}
    await client.send(truncate)
    await client.next("conversation.item.truncated")
    done = await client.next("response.done")

    assert done["response"]["status"] == "cancelled"
    received = b"".join(base64.b64decode(e["delta"]) for e in client.of(audio_delta_type(dialect)))
    assert received == session.produced[item_id]
    assert len(received) < len(load_fixture(LONG))
    assert session.truncations == [(item_id, 20)]


# ---------------------------------------------------------------------------------------------- items


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_replayed_conversation_items(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    assistant_text = "output_text" if dialect == "ga" else "text"
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Table for two."}]},
        {"type": "message", "role": "assistant", "content": [{"type": assistant_text, "text": "At what time?"}]},
    ]
    added = "conversation.item.added" if dialect == "ga" else "conversation.item.created"
    for item in items:
        await client.send({"type": "conversation.item.create", "item": item})
        await client.next(added)

    assert [item["role"] for item in session.conversation] == ["user", "assistant"]
    assert session.conversation[1]["content"][0]["text"] == "At what time?"
    assert client.of(added)[1]["previous_item_id"] == session.conversation[0]["id"]

    await client.send({"type": "response.create"})
    await client.next("response.done")
    reply = session.conversation[-1]
    assert len(session.produced[reply["id"]]) == len(load_fixture("agent_reply_long"))  # not the greeting
    assert session.violations == []


# ---------------------------------------------------------------------------------------------- violations


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_invalid_events_are_violations_and_errors(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect)
    session_key = {"type": "realtime"} if dialect == "ga" else {}
    wrong_text_type = "text" if dialect == "ga" else "output_text"
    other_dialects_assistant_item = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": wrong_text_type, "text": "Hello"}],
    }
    bad: list[tuple[Any, str]] = [
        ({"type": "response.explode"}, "invalid_value"),
        ({"type": "session.update", "session": {**session_key, "colour": "blue"}}, "unknown_parameter"),
        ({"type": "response.cancel", "extra": 1}, "unknown_parameter"),
        ({"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": 5}, "missing_required_parameter"),
        ("{not json", "invalid_json"),
        (b"\x00\x01binary", "invalid_json"),
        ({"type": "input_audio_buffer.append", "audio": "%%% not base64 %%%"}, "invalid_value"),
        ({"type": "conversation.item.create", "item": other_dialects_assistant_item}, "invalid_value"),
    ]
    for event, code in bad:
        await client.send(event)
        error = (await client.next("error"))["error"]
        assert error["code"] == code, (event, error)
    assert len(session.violations) == len(bad)
    assert any("colour" in v for v in session.violations)
    unknown = client.of("error")[1]["error"]
    assert unknown["param"] == "session.colour" and unknown["message"] == "Unknown parameter: 'session.colour'."
    assert session.effective.get("colour") is None  # a rejected event changes nothing
    assert session.conversation == []


async def test_ga_session_update_without_type_is_a_violation(open_session: Opener) -> None:
    client, session = await open_session("ga")
    await client.send({"type": "session.update", "session": {"instructions": "Hi"}})
    error = (await client.next("error"))["error"]
    assert error["code"] == "missing_required_parameter"
    assert session.violations


async def test_preview_session_update_with_type_is_a_violation(open_session: Opener) -> None:
    client, session = await open_session("preview")
    await client.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Hi"}})
    await client.next("error")
    assert session.violations


# ---------------------------------------------------------------------------------------------- handshake


async def test_wrong_key_is_refused_and_counted(servers: Callable[..., Awaitable[FakeRealtimeServer]]) -> None:
    fake = await servers()
    with pytest.raises(InvalidStatus) as refused:
        await connect(realtime_url(fake, "ga"), additional_headers={"api-key": "wrong"})
    assert refused.value.response.status_code == 401
    assert fake.connection_attempts == 1 and fake.sessions == [] and fake.violations == []
    assert fake.rejections == [Rejection(401, "invalid or missing credentials")]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/openai/v1/realtime?model=gpt-realtime&api-version=2025-04-01-preview", 401),
        ("/openai/realtime?deployment=gpt-realtime", 400),
        ("/openai/deployments/x/realtime", 404),
    ],
)
async def test_bad_paths_are_refused(
    servers: Callable[..., Awaitable[FakeRealtimeServer]], path: str, status: int
) -> None:
    fake = await servers()
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"ws://127.0.0.1:{fake.port}{path}", additional_headers={"api-key": "test-key"})
    assert refused.value.response.status_code == status
    assert fake.connection_attempts == 1 and fake.sessions == []


def test_parse_target() -> None:
    assert parse_target("/v1/realtime?model=gpt-realtime") == Target("ga", "gpt-realtime")
    assert parse_target("/openai/v1/realtime?model=my-deploy") == Target("ga", "my-deploy")
    assert parse_target("/openai/realtime?api-version=2024-10-01-preview&deployment=d") == Target("preview", "d")
    assert parse_target("/openai/v1/realtime") == Rejection(400, "missing required query parameter: model")


async def test_bearer_tokens_and_refusals(servers: Callable[..., Awaitable[FakeRealtimeServer]]) -> None:
    fake = await servers(api_key=None, bearer_tokens=["entra-token"], refuse_next=2)
    headers = {"Authorization": "Bearer entra-token"}
    for _ in range(2):
        with pytest.raises(InvalidStatus) as refused:
            await connect(realtime_url(fake, "ga"), additional_headers=headers)
        assert refused.value.response.status_code == 503
    async with connect(realtime_url(fake, "ga"), additional_headers=headers) as ws:
        assert json.loads(await ws.recv())["type"] == "session.created"
    with pytest.raises(InvalidStatus):
        await connect(realtime_url(fake, "ga"), additional_headers={"api-key": "entra-token"})
    assert fake.connection_attempts == 4 and len(fake.sessions) == 1
    assert fake.sessions[0].headers["authorization"] == "Bearer entra-token"


async def test_openai_beta_header_on_ga_is_a_violation(
    servers: Callable[..., Awaitable[FakeRealtimeServer]],
) -> None:
    fake = await servers()
    headers = {"api-key": "test-key", "OpenAI-Beta": "realtime=v1"}
    async with connect(realtime_url(fake, "ga"), additional_headers=headers) as ws:
        await ws.recv()
    async with connect(realtime_url(fake, "preview"), additional_headers=headers) as ws:
        await ws.recv()
    assert fake.violations == ["session 0: GA connection sent OpenAI-Beta: realtime=v1"]


# ---------------------------------------------------------------------------------------------- closing


async def test_drop_aborts_without_a_close_frame(
    servers: Callable[..., Awaitable[FakeRealtimeServer]], open_session: Opener
) -> None:
    fake = await servers()
    client, session = await open_session("ga", fake=fake)
    await fake.drop(session)
    with pytest.raises(ConnectionClosed) as closed:
        await client.next("never")
    assert closed.value.rcvd is None  # no close frame: an abrupt TCP close
    await fake.wait_for(lambda: session.closed)


async def test_drop_with_a_code_sends_a_close_frame(
    servers: Callable[..., Awaitable[FakeRealtimeServer]], open_session: Opener
) -> None:
    fake = await servers()
    client, session = await open_session("preview", fake=fake)
    reason = "Your session hit the maximum duration of 30 minutes."
    await fake.drop(session, code=1001, reason=reason)
    with pytest.raises(ConnectionClosed) as closed:
        await client.next("never")
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, reason)
    await fake.wait_for(lambda: session.closed)


async def test_session_max_duration(open_session: Opener) -> None:
    client, session = await open_session("ga", session_max_seconds=0.3, configure=False)
    error = (await client.seen("error"))["error"]
    assert error["code"] == "session_expired"
    assert error["message"] == "Your session hit the maximum duration of 0.3 seconds."
    with pytest.raises(ConnectionClosed) as closed:
        await client.next("never")
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


async def test_stop_closes_live_sessions(servers: Callable[..., Awaitable[FakeRealtimeServer]]) -> None:
    fake = await servers(speed=1.0)
    async with connect(realtime_url(fake, "ga"), additional_headers={"api-key": "test-key"}) as ws:
        client = Client(ws)
        await client.next("session.created")
        await client.send({"type": "response.create"})
        await client.next("response.output_audio.delta")
        await fake.stop()
        with pytest.raises(ConnectionClosed):
            await client.next("never")
    assert fake.sessions[0].closed


async def test_wait_for_names_what_it_waited_for(servers: Callable[..., Awaitable[FakeRealtimeServer]]) -> None:
    fake = await servers()

    def nobody_connected() -> bool:
        return bool(fake.sessions)

    with pytest.raises(AssertionError, match="nobody_connected"):
        await fake.wait_for(nobody_connected, timeout=0.05)
    with pytest.raises(AssertionError, match="0 session"):  # and says what the fake has seen
        await fake.wait_for(nobody_connected, timeout=0)


# ---------------------------------------------------------------------------------------------- waiting


async def test_wait_until_returns_the_value_once_it_holds() -> None:
    box: list[str] = []
    woken = asyncio.Event()

    async def later() -> None:
        await asyncio.sleep(0.05)
        box.append("ready")
        woken.set()

    task = asyncio.create_task(later())
    assert await wait_until(lambda: box, TIMEOUT, wake=woken.wait) == ["ready"]
    await task
    assert await wait_until(lambda: len(box), 0) == 1  # already true: no wait at all, even with no time


async def test_wait_until_fails_the_test_naming_the_predicate() -> None:
    with pytest.raises(AssertionError, match=r"never_true.*0\.02 s\nwhat I saw"):
        await wait_until(lambda: "never_true" in "", 0.02, describe=lambda: "what I saw")
    with pytest.raises(ValueError, match="negative"):
        await wait_until(lambda: True, -1)


async def test_wait_until_awaits_a_coroutine_predicate_within_the_deadline() -> None:
    answers = iter([False, False, True])

    async def ready() -> bool:
        await asyncio.sleep(0)
        return next(answers)

    assert await wait_until(ready, TIMEOUT) is True

    async def hangs() -> bool:
        await asyncio.sleep(3600)
        return True

    with pytest.raises(AssertionError, match="hangs"):
        await wait_until(hangs, 0.05)


# ---------------------------------------------------------------------------------------------- like the real one


async def test_connect_delay_holds_the_handshake(servers: Callable[..., Awaitable[FakeRealtimeServer]]) -> None:
    fake = await servers(connect_delay=0.3)
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with connect(realtime_url(fake, "ga"), additional_headers={"api-key": "test-key"}) as ws:
        assert loop.time() - began >= 0.3  # never sooner (a loaded machine may make it later)
        assert json.loads(await ws.recv())["type"] == "session.created"
    assert fake.connection_attempts == 1


async def greeting_delta_sizes(fake: FakeRealtimeServer, open_session: Opener) -> list[int]:
    client, _ = await open_session("ga", fake=fake)
    await client.send({"type": "response.create"})
    await client.next("response.done")
    return [len(base64.b64decode(delta["delta"])) for delta in client.of("response.output_audio.delta")]


async def test_audio_deltas_are_fixed_or_drawn_from_a_range_repeatably(
    servers: Callable[..., Awaitable[FakeRealtimeServer]], open_session: Opener
) -> None:
    fixed = await greeting_delta_sizes(await servers(delta_ms=100), open_session)
    assert set(fixed[:-1]) == {800} and 0 < fixed[-1] <= 800
    assert await greeting_delta_sizes(await servers(chunk_ms=20), open_session) == [160] * 222 + [51]
    uneven = await greeting_delta_sizes(await servers(delta_ms=(50, 300), seed=3), open_session)
    assert all(400 <= size <= 2400 for size in uneven[:-1]) and len(set(uneven)) > len(uneven) // 2
    assert sum(uneven) == len(load_fixture("agent_greeting"))
    assert await greeting_delta_sizes(await servers(delta_ms=(50, 300), seed=3), open_session) == uneven
    assert await greeting_delta_sizes(await servers(delta_ms=(50, 300), seed=4), open_session) != uneven
    for bad in (0, (300, 50), (-1, 5)):
        with pytest.raises(ValueError, match="delta_ms"):
            FakeRealtimeServer(delta_ms=bad)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_failed_transcription_says_so_instead_of_completing(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, fail_transcription=True)
    await user_turn(client, "caller_book_table")
    committed = await client.next("input_audio_buffer.committed")
    failed = await client.next("conversation.item.input_audio_transcription.failed")
    assert (failed["item_id"], failed["content_index"]) == (committed["item_id"], 0)
    assert set(failed["error"]) == {"type", "code", "message", "param"} and failed["error"]["message"]
    await client.next("response.done")  # the model heard the audio all the same, and answers
    assert "conversation.item.input_audio_transcription.completed" not in client.types()


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_voice_the_deployment_lacks_refuses_the_whole_update(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, configure=False, voices=("alloy", "echo", "shimmer"))
    update = {**mulaw_update(dialect), "event_id": "evt_update"}
    if dialect == "ga":
        update["session"]["audio"]["output"]["voice"] = "coral"
    else:
        update["session"]["voice"] = "coral"
    await client.send(update)
    error = (await client.next("error"))["error"]
    assert error == {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "Invalid value: 'coral'. Supported values are: 'alloy', 'echo', and 'shimmer'.",
        "param": "session.audio.output.voice" if dialect == "ga" else "session.voice",
        "event_id": "evt_update",
    }
    assert formats(dialect, session.effective) == formats(dialect, client.of("session.created")[0]["session"])
    assert "session.updated" not in client.types() and session.violations == []


async def test_preview_models_have_no_marin(open_session: Opener) -> None:
    client, session = await open_session("preview", configure=False)
    await client.send({"type": "session.update", "session": {"voice": "marin"}})
    assert "'marin'" in (await client.next("error"))["error"]["message"]
    await client.send({"type": "session.update", "session": {"voice": "verse"}})
    assert (await client.next("session.updated"))["session"]["voice"] == "verse"


async def test_a_session_that_is_never_confirmed(open_session: Opener) -> None:
    client, session = await open_session("ga", configure=False, confirm_session=False)
    await client.send(mulaw_update("ga"))
    await client.send({"type": "response.create"})  # answered: the update was read, just never confirmed
    await client.next("response.done")
    assert "session.updated" not in client.types()


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_assistant_text_items_switch_the_model_to_text_answers(open_session: Opener, dialect: str) -> None:
    client, session = await open_session(dialect, text_after_assistant_text=True)
    await client.send({"type": "response.create"})
    await client.next("response.done")  # before any assistant text: it speaks
    assert not session.answers_in_text and len(session.produced) == 1
    text = "output_text" if dialect == "ga" else "text"
    item = {"type": "message", "role": "assistant", "content": [{"type": text, "text": "We open at noon."}]}
    await client.send({"type": "conversation.item.create", "item": item})
    await client.send({"type": "response.create"})
    done = await client.next("response.done")

    assert session.answers_in_text and len(session.produced) == 1  # no audio at all
    written = client.events[client.events.index(client.of("response.created")[-1]) :]
    kinds = [event["type"] for event in written]
    prefix = "response.output_text" if dialect == "ga" else "response.text"
    assert f"{prefix}.delta" in kinds and f"{prefix}.done" in kinds
    assert not any("audio" in kind for kind in kinds)
    words = "".join(event["delta"] for event in written if event["type"] == f"{prefix}.delta")
    assert words == FIXTURE_TEXTS["agent_reply_long"] == client.of(f"{prefix}.done")[-1]["text"]
    [output] = done["response"]["output"]
    assert output["content"] == [{"type": text, "text": words}]


SCRIPTED = {
    "caller_book_table": [
        "agent_goodbye",
        ("check_availability", {"party_size": 2, "time": "19:30"}),
        ("book_table", '{"party_size": 2,'),  # malformed on purpose: sent as written
    ]
}


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_scripted_turn_speaks_then_calls_functions_as_the_real_service_does(
    open_session: Opener, dialect: str
) -> None:
    client, session = await open_session(dialect, function_calls=SCRIPTED)
    await user_turn(client, "caller_book_table")
    done = (await client.next("response.done"))["response"]

    first, second = session.function_calls
    assert (first["name"], json.loads(first["arguments"])) == ("check_availability", {"party_size": 2, "time": "19:30"})
    assert (second["name"], second["arguments"]) == ("book_table", '{"party_size": 2,')
    assert [item["type"] for item in done["output"]] == ["message", "function_call", "function_call"]
    assert done["output"][1:] == [first, second] and done["status"] == "completed"
    assert len(next(iter(session.produced.values()))) == len(load_fixture("agent_goodbye"))  # said first

    for index, call in enumerate((first, second), start=1):
        events = [
            e for e in client.events if e.get("item_id") == call["id"] or e.get("item", {}).get("id") == call["id"]
        ]
        kinds = [event["type"] for event in events if event["type"].startswith("response.")]
        deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
        assert kinds[0] == "response.output_item.added" and kinds[-1] == "response.output_item.done"
        assert set(kinds[1:-1]) == {"response.function_call_arguments.delta", "response.function_call_arguments.done"}
        [added] = [e for e in events if e["type"] == "response.output_item.added"]
        assert added["item"]["arguments"] == "" and added["item"]["name"] == call["name"]
        assert added["output_index"] == index
        [arguments_done] = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert "".join(deltas) == arguments_done["arguments"] == call["arguments"]
        assert ("name" in arguments_done) is (dialect == "ga")  # preview names the function only in the item
        assert arguments_done["call_id"] == call["call_id"] and call["call_id"].startswith("call_")

    for call, output in ((first, '{"tables": 2}'), (second, '{"error": "arguments are not JSON"}')):
        item = {"type": "function_call_output", "call_id": call["call_id"], "output": output}
        await client.send({"type": "conversation.item.create", "item": item})
    await client.send({"type": "response.create"})
    after = (await client.next("response.done"))["response"]
    assert session.function_outputs == {
        first["call_id"]: '{"tables": 2}',
        second["call_id"]: '{"error": "arguments are not JSON"}',
    }
    assert [item["type"] for item in after["output"]] == ["message"]  # the answer about the results: audio
    assert len(session.produced) == 2 and len(session.function_calls) == 2
    assert session.violations == []


async def test_a_function_call_output_for_no_call_is_refused(open_session: Opener) -> None:
    client, session = await open_session("ga")
    item = {"type": "function_call_output", "call_id": "call_nope", "output": "{}"}
    await client.send({"type": "conversation.item.create", "item": item, "event_id": "evt_out"})
    error = (await client.next("error"))["error"]
    assert error["event_id"] == "evt_out" and "call_nope" in error["message"]
    assert session.function_outputs == {} and len(session.violations) == 1


async def test_a_scripted_call_interrupted_while_speaking_is_never_made(open_session: Opener) -> None:
    client, session = await open_session(
        "ga", speed=1.0, function_calls={"caller_goodbye": ["agent_reply_long", ("end_call", {})]}
    )
    await user_turn(client, "caller_goodbye", tail_ms=600)
    await client.next("response.output_audio.delta")
    await client.send({"type": "response.cancel"})
    done = (await client.next("response.done"))["response"]
    assert done["status"] == "cancelled" and [item["type"] for item in done["output"]] == ["message"]
    assert session.function_calls == []


def test_function_call_scripts_are_checked() -> None:
    scripts: list[dict[str, Sequence[str | tuple[str, Any]]]] = [
        {"caller_nobody": [("f", {})]},
        {"line_noise": [("f", {})]},
        {"caller_goodbye": ["agent_goodbye"]},
        {"caller_goodbye": [("f", {}), "agent_goodbye"]},
        {"caller_goodbye": ["agent_nobody", ("f", {})]},
    ]
    for bad in scripts:
        with pytest.raises(ValueError, match="function_calls"):
            FakeRealtimeServer(function_calls=bad)


# ---------------------------------------------------------------------------------------------- one response at a time


def error_of(client: Client, event_id: str) -> dict[str, Any]:
    [error] = [event["error"] for event in client.of("error") if event["error"]["event_id"] == event_id]
    assert isinstance(error, dict)
    return error


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_response_created_comes_after_the_delay_on_the_fakes_clock(open_session: Opener, dialect: str) -> None:
    loop = asyncio.get_running_loop()
    for speed, delay_ms in ((1.0, 150.0), (8.0, 400.0)):
        client, session = await open_session(dialect, speed=speed, response_delay_ms=delay_ms)
        sent_at = loop.time()
        await client.send({"type": "response.create"})
        await client.next("response.created")
        assert loop.time() - sent_at >= 0.9 * delay_ms / 1000 / speed
        await client.send({"type": "response.cancel"})
        await client.next("response.done")


@pytest.mark.refusals
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_request_before_the_first_is_created_is_refused_as_the_service_does(
    open_session: Opener, dialect: str
) -> None:
    client, session = await open_session(dialect, speed=1.0)
    await client.send({"type": "response.create", "event_id": "evt_first"})
    await client.send({"type": "response.create", "event_id": "evt_second"})
    await client.next("error")
    created = await client.next("response.created")
    resp_id = created["response"]["id"]
    assert error_of(client, "evt_second") == {
        "type": "invalid_request_error",
        "code": "conversation_already_has_active_response",
        "message": f"Conversation already has an active response in progress: {resp_id}. "
        "Wait until the response is finished before creating a new one.",
        "param": None,
        "event_id": "evt_second",
    }
    [refusal] = session.refused_responses
    assert (refusal.client_event_id, refusal.active_response_id) == ("evt_second", resp_id)
    assert not refusal.active_created  # refused in the window before response.created
    await client.send({"type": "response.cancel"})
    await client.next("response.done")
    assert len(session.responses) == 1 and session.created_by_request == 1  # nothing of the second happened
    assert client.types().index("error") < client.types().index("response.created")


@pytest.mark.refusals
@pytest.mark.parametrize("dialect", DIALECTS)
async def test_the_server_answers_a_caller_turn_itself_and_refuses_a_racing_request(
    open_session: Opener, dialect: str
) -> None:
    client, session = await open_session(dialect, speed=1.0)
    await user_turn(client, "caller_goodbye")
    await client.next("input_audio_buffer.committed")
    await client.send({"type": "response.create", "event_id": "evt_racing"})
    created = await client.next("response.created")
    assert error_of(client, "evt_racing")["code"] == "conversation_already_has_active_response"
    order = client.types()
    assert order.index("input_audio_buffer.speech_stopped") < order.index("input_audio_buffer.committed")
    assert order.index("input_audio_buffer.committed") < order.index("response.created")
    assert (session.created_by_vad, session.created_by_request) == (1, 0)
    [refusal] = session.refused_responses
    assert (refusal.active_origin, refusal.active_response_id) == ("vad", created["response"]["id"])
    await client.send({"type": "response.cancel"})
    await client.next("response.done")


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_a_failed_response_says_nothing_and_the_next_one_completes(open_session: Opener, dialect: str) -> None:
    failure = Failed(type="rate_limit_exceeded", code="rate_limit_exceeded", message="Rate limit reached.")
    client, session = await open_session(dialect, outcomes=[failure])
    await client.send({"type": "response.create"})
    failed = (await client.next("response.done"))["response"]
    assert failed["status"] == "failed" and failed["output"] == []
    assert failed["status_details"] == {"type": "failed", "error": failure.status_details()["error"]}
    assert client.of(audio_delta_type(dialect)) == [] and session.produced[session.responses[0].item_id] == b""
    await client.send({"type": "response.create"})
    assert (await client.next("response.done"))["response"]["status"] == "completed"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("reason", ["max_output_tokens", "content_filter"])
async def test_an_incomplete_response_keeps_the_audio_produced_so_far(
    open_session: Opener, dialect: str, reason: str
) -> None:
    client, session = await open_session(dialect)
    session.outcomes.append(Incomplete(reason=reason, fraction=0.5))  # scripted on the live session
    await client.send({"type": "response.create"})
    done = (await client.next("response.done"))["response"]
    assert done["status"] == "incomplete" and done["status_details"] == {"type": "incomplete", "reason": reason}
    said = b"".join(base64.b64decode(e["delta"]) for e in client.of(audio_delta_type(dialect)))
    assert 0 < len(said) <= len(load_fixture("agent_greeting")) // 2
    assert said == session.produced[done["output"][0]["id"]]
    assert done["output"][0]["status"] == "incomplete"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_talking_over_a_function_call_finishes_its_arguments_then_cancels(
    open_session: Opener, dialect: str
) -> None:
    script = {"caller_goodbye": [("end_call", {"reason": "the caller said goodbye"})]}
    client, session = await open_session(dialect, speed=1.0, function_calls=script)
    await user_turn(client, "caller_goodbye")
    await client.next("response.function_call_arguments.delta")
    await user_turn(client, "caller_interrupt", lead_ms=0)
    done = (await client.next("response.done"))["response"]
    assert done["status"] == "cancelled" and done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    [call] = session.function_calls
    arguments_done = await client.seen("response.function_call_arguments.done")
    assert arguments_done["arguments"] == call["arguments"] and done["output"] == [call]
    order = client.types()
    assert order.index("input_audio_buffer.speech_started") < order.index("response.function_call_arguments.done")
    assert order.index("response.function_call_arguments.done") < order.index("response.done")
    await client.next("response.created")  # the caller's new turn is answered
    await client.send({"type": "response.cancel"})


async def test_ga_order_rate_limits_and_obfuscation(open_session: Opener) -> None:
    client, session = await open_session("ga")
    await client.send({"type": "response.create"})
    await client.next("response.done")
    rate_limits = await client.next("rate_limits.updated")
    order = client.types()
    assert order.index("conversation.item.done") < order.index("response.output_item.done")
    assert order.index("response.done") < order.index("rate_limits.updated")
    assert {limit["name"] for limit in rate_limits["rate_limits"]} == {"requests", "tokens"}
    deltas = client.of("response.output_audio.delta") + client.of("response.output_audio_transcript.delta")
    assert deltas and all(isinstance(delta["obfuscation"], str) and delta["obfuscation"] for delta in deltas)
    assert validate_server_event("ga", deltas[0]) == []


async def test_preview_deltas_have_no_obfuscation(open_session: Opener) -> None:
    client, session = await open_session("preview")
    await client.send({"type": "response.create"})
    await client.next("response.done")
    await client.next("rate_limits.updated")
    assert client.of("response.audio.delta") and all("obfuscation" not in e for e in client.of("response.audio.delta"))


async def test_with_refuse_overlap_off_a_second_request_waits_its_turn(open_session: Opener) -> None:
    client, session = await open_session("ga", refuse_overlap=False)
    await client.send({"type": "response.create"})
    await client.send({"type": "response.create"})
    await client.next("response.done")
    await client.next("response.done")
    assert client.of("error") == [] and session.refused_responses == []
    assert session.responder.overlapping_requests == 1 and session.created_by_request == 2


async def test_forbid_refusals_fails_the_stop_naming_the_refusal() -> None:
    fake = FakeRealtimeServer(speed=FAST, forbid_refusals=True)
    await fake.start()
    ws = await connect(realtime_url(fake, "ga"), additional_headers={"api-key": "test-key"})
    client = Client(ws)
    await client.send({"type": "response.create"})
    await client.send({"type": "response.create", "event_id": "evt_overlap"})
    await client.next("error")
    await ws.close()
    with pytest.raises(AssertionError, match="evt_overlap refused, request response resp_"):
        await fake.stop()
    assert len(fake.refusals) == 1 and fake.self_violations == []


async def test_a_heard_silence_of_none_splits_a_paused_sentence_as_the_service_would(open_session: Opener) -> None:
    client, session = await open_session("ga", heard_silence_ms=None)  # listens with the reported 200 ms
    await user_turn(client, "caller_goodbye")  # pauses 340 ms after its first words
    await client.next("input_audio_buffer.committed")
    await client.next("input_audio_buffer.committed")  # the rest of the sentence: a second turn
    assert len(client.of("input_audio_buffer.speech_started")) == 2
