"""The Twilio Media Streams adapter on its own: exact wire shapes out (docs/protocol.md §1, "Outbound
messages and marks"), and Twilio's inbound frames turned into the core's transport inputs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.core_helpers import (
    OTHER_STREAM,
    STREAM,
    b64,
    connected_frame,
    decoded_size,
    dtmf_frame,
    mark_frame,
    media_frame,
    start_frame,
    stop_frame,
    text,
)
from voiceagent.call import BadInput, CallerAudio, CallerHungUp, ClearPlayback, Digit, PlayAudio, PlayedUpTo
from voiceagent.twilio import messages as tw
from voiceagent.twilio.media_stream import MediaStreamAdapter


def adapter() -> MediaStreamAdapter:
    start = tw.parse_received(start_frame())
    assert isinstance(start, tw.Start)
    return MediaStreamAdapter(start)


def wire(frames: list[str]) -> list[dict[str, Any]]:
    for frame in frames:
        assert isinstance(frame, str), "text frames only, never binary"
    return [json.loads(frame) for frame in frames]


def play(stream: MediaStreamAdapter, item: str, size: int, end: int) -> str:
    """Send one chunk; return the name of its mark."""
    media, mark = wire(stream.send(PlayAudio(item, b64(size), end)))
    assert media["event"] == "media" and mark["event"] == "mark"
    name: str = mark["mark"]["name"]
    return name


# ---------------------------------------------------------------- outbound


def test_play_audio_is_exactly_one_media_then_one_mark_with_no_extra_keys():
    stream = adapter()
    payload = b64(160, 0x7F)
    frames = wire(stream.send(PlayAudio("item_a", payload, 160)))
    assert len(frames) == 2
    media, mark = frames
    assert media == {"event": "media", "streamSid": STREAM, "media": {"payload": payload}}
    assert set(mark) == {"event", "streamSid", "mark"}
    assert mark["event"] == "mark" and mark["streamSid"] == STREAM
    assert set(mark["mark"]) == {"name"}
    name = mark["mark"]["name"]
    assert isinstance(name, str) and name


def test_the_payload_goes_out_untouched():
    stream = adapter()
    odd = b64(803, 0x01)  # padded base64 of an odd size
    [media, _mark] = wire(stream.send(PlayAudio("item_a", odd, 803)))
    assert media["media"]["payload"] == odd


def test_clear_is_exactly_event_and_stream_sid():
    stream = adapter()
    play(stream, "item_a", 160, 160)
    assert wire(stream.send(ClearPlayback())) == [{"event": "clear", "streamSid": STREAM}]


def test_clear_with_nothing_pending_is_still_one_clear_frame():
    assert wire(adapter().send(ClearPlayback())) == [{"event": "clear", "streamSid": STREAM}]


def test_mark_names_are_unique_across_items_and_clears():
    stream = adapter()
    names = []
    for round_ in range(5):
        for chunk in range(20):
            names.append(play(stream, f"item_{round_}", 40, 40 * (chunk + 1)))
        stream.send(ClearPlayback())
    assert len(names) == len(set(names)) == 100


# ---------------------------------------------------------------- mark echoes


def test_an_echo_reports_the_item_played_up_to_the_end_of_its_chunk():
    stream = adapter()
    first = play(stream, "item_a", 800, 800)
    second = play(stream, "item_a", 480, 1280)
    other = play(stream, "item_b", 160, 160)
    assert stream.receive(mark_frame(first)) == PlayedUpTo("item_a", 800)
    assert stream.receive(mark_frame(second)) == PlayedUpTo("item_a", 1280)
    assert stream.receive(mark_frame(other)) == PlayedUpTo("item_b", 160)


def test_each_mark_is_acknowledged_once():
    stream = adapter()
    name = play(stream, "item_a", 160, 160)
    assert stream.receive(mark_frame(name)) == PlayedUpTo("item_a", 160)
    assert isinstance(stream.receive(mark_frame(name)), BadInput)


def test_echoes_of_marks_pending_at_a_clear_are_void():
    stream = adapter()
    played = play(stream, "item_a", 160, 160)
    pending = [play(stream, "item_a", 160, 160 * n) for n in (2, 3, 4)]
    assert stream.receive(mark_frame(played)) == PlayedUpTo("item_a", 160)
    stream.send(ClearPlayback())
    # Twilio echoes every pending mark at once on clear: "played *or* cleared"
    assert [stream.receive(mark_frame(name)) for name in pending] == [None, None, None]


def test_a_void_echo_is_swallowed_only_once():
    stream = adapter()
    name = play(stream, "item_a", 160, 160)
    stream.send(ClearPlayback())
    assert stream.receive(mark_frame(name)) is None
    assert isinstance(stream.receive(mark_frame(name)), BadInput)


def test_marks_set_after_a_clear_are_live_while_late_echoes_of_older_ones_stay_void():
    stream = adapter()
    old = play(stream, "item_a", 160, 160)
    stream.send(ClearPlayback())
    new = play(stream, "item_b", 320, 320)
    assert stream.receive(mark_frame(new)) == PlayedUpTo("item_b", 320)
    assert stream.receive(mark_frame(old)) is None


def test_an_echo_of_a_mark_never_set_is_bad_input():
    stream = adapter()
    play(stream, "item_a", 160, 160)
    event = stream.receive(mark_frame("no-such-mark"))
    assert isinstance(event, BadInput)
    assert "never set" in event.reason


# ---------------------------------------------------------------- other inbound frames


def test_connected_means_nothing_to_the_core():
    assert adapter().receive(connected_frame()) is None


def test_a_second_start_is_bad_input():
    event = adapter().receive(start_frame())
    assert isinstance(event, BadInput)
    assert "second start" in event.reason


@pytest.mark.parametrize(
    "frame",
    [
        media_frame(b64(160), OTHER_STREAM),
        mark_frame("m1", OTHER_STREAM),
        dtmf_frame("5", OTHER_STREAM),
        stop_frame(OTHER_STREAM),
    ],
    ids=["media", "mark", "dtmf", "stop"],
)
def test_a_frame_for_another_stream_is_bad_input(frame):
    stream = adapter()
    play(stream, "item_a", 160, 160)  # so that "m1" would be a live mark on the right stream
    event = stream.receive(frame)
    assert isinstance(event, BadInput)
    assert "another stream" in event.reason


def test_a_mark_for_another_stream_does_not_consume_the_live_mark():
    stream = adapter()
    name = play(stream, "item_a", 160, 160)
    assert isinstance(stream.receive(mark_frame(name, OTHER_STREAM)), BadInput)
    assert stream.receive(mark_frame(name)) == PlayedUpTo("item_a", 160)


def test_stop_is_the_caller_hanging_up():
    assert adapter().receive(stop_frame()) == CallerHungUp("caller hung up")


@pytest.mark.parametrize("digit", ["0", "5", "9", "*", "#"])
def test_dtmf_is_a_digit(digit):
    assert adapter().receive(dtmf_frame(digit)) == Digit(digit)


@pytest.mark.parametrize("size", [1, 2, 3, 159, 160, 161, 1000])
def test_caller_audio_is_forwarded_untouched_with_its_decoded_size(size):
    payload = b64(size, 0xFE)
    event = adapter().receive(media_frame(payload))
    assert event == CallerAudio(payload, size)
    assert size == decoded_size(payload)


def test_empty_caller_audio_is_zero_bytes():
    assert adapter().receive(media_frame("")) == CallerAudio("", 0)


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.receive", "text": "{not json"},
        {"type": "websocket.receive", "text": "[]"},
        {"type": "websocket.receive", "text": '"media"'},
        {"type": "websocket.receive", "bytes": b'{"event": "stop", "streamSid": "' + STREAM.encode() + b'"}'},
        {"type": "websocket.receive"},
        text({"event": "nonsense", "streamSid": STREAM}),
        text({"event": "media", "streamSid": STREAM}),
        text({"event": "media", "streamSid": STREAM, "media": {"payload": 5}}),
        text({"event": "mark", "streamSid": STREAM, "mark": {}}),
        text({"event": "dtmf", "streamSid": STREAM, "dtmf": {"digit": ""}}),
        text({"event": "stop"}),
        {"type": "websocket.receive", "text": " " * (tw.MAX_MESSAGE_BYTES + 1)},
    ],
    ids=[
        "malformed-json",
        "json-array",
        "json-string",
        "binary-frame",
        "empty-message",
        "unknown-event",
        "media-without-media",
        "payload-not-a-string",
        "mark-without-name",
        "empty-digit",
        "stop-without-stream",
        "oversized",
    ],
)
def test_what_is_not_a_media_streams_message_is_bad_input(message):
    event = adapter().receive(message)
    assert isinstance(event, BadInput)
    assert event.reason


def test_bad_input_leaves_the_pending_marks_alone():
    stream = adapter()
    name = play(stream, "item_a", 160, 160)
    assert isinstance(stream.receive({"type": "websocket.receive", "text": "{"}), BadInput)
    assert isinstance(stream.receive(start_frame()), BadInput)
    assert stream.receive(mark_frame(name)) == PlayedUpTo("item_a", 160)
