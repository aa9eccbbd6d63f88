"""The GA and preview dialects: what we send validates against the ``openai`` types, and what the
server sends (built to validate too) decodes to our vocabulary; malformed input never raises."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voiceagent.config import VOICES
from voiceagent.realtime import events as ev
from voiceagent.realtime.dialect import MALFORMED, Dialect, dialect_for
from voiceagent.realtime.ga import GADialect
from voiceagent.realtime.preview import PreviewDialect
from voiceagent.realtime.target import ModelTarget
from voiceagent.testing.validation import validate_client_event, validate_server_event

DIALECTS = ("ga", "preview")
AUDIO = "//79/fz7+vn4" * 20  # base64 μ-law


def make(name: str) -> Dialect:
    version = "2024-10-01-preview" if name == "preview" else None
    return dialect_for(
        ModelTarget(provider="azure", endpoint="https://res.openai.azure.com", deployment="d", api_version=version)
    )


def config(**overrides: Any) -> ev.SessionConfig:
    return ev.SessionConfig(**{"instructions": "Be brief.", "voice": "alloy", **overrides})


SERVER_VAD_CONFIGS = [
    config(),
    config(vad_threshold=0.7),
    config(vad_prefix_padding_ms=200),
    config(vad_silence_ms=800),
    config(vad_threshold=0.0, vad_prefix_padding_ms=0, vad_silence_ms=0),
    config(
        vad_threshold=1.0, vad_prefix_padding_ms=10_000, vad_silence_ms=10_000, transcription_model="gpt-4o-transcribe"
    ),
]
COMMANDS: list[ev.ModelCommand] = [
    *(ev.UpdateSession(c) for c in SERVER_VAD_CONFIGS),
    ev.AppendAudio(AUDIO),
    ev.Truncate(item_id="item_abc", audio_end_ms=0),
    ev.Truncate(item_id="item_abc", audio_end_ms=3700),
    ev.CancelResponse(),
    ev.CreateResponse(),
    ev.CreateResponse(instructions="Greet the caller."),
    ev.CreateTextItem(role="user", text="I'd like a table for two."),
    ev.CreateTextItem(role="assistant", text="For what time?"),
    ev.CreateTextItem(role="system", text="The caller is in a hurry."),
]


# ---------------------------------------------------------------- encode


def test_dialect_for_follows_the_target() -> None:
    assert isinstance(make("ga"), GADialect) and make("ga").name == "ga"
    assert isinstance(make("preview"), PreviewDialect) and make("preview").name == "preview"


@pytest.mark.parametrize("name", DIALECTS)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_validates(name: str, command: ev.ModelCommand) -> None:
    event = make(name).encode(command)
    assert validate_client_event(name, event) == []
    assert json.loads(json.dumps(event)) == event


def test_semantic_vad_validates_in_ga() -> None:
    event = make("ga").encode(ev.UpdateSession(config(vad="semantic_vad", vad_threshold=0.9)))
    assert event["session"]["audio"]["input"]["turn_detection"] == {"type": "semantic_vad"}
    assert validate_client_event("ga", event) == []


def test_semantic_vad_is_refused_in_preview() -> None:
    with pytest.raises(ValueError, match="semantic_vad"):
        make("preview").encode(ev.UpdateSession(config(vad="semantic_vad")))


def test_ga_session_update_shape() -> None:
    event = make("ga").encode(ev.UpdateSession(config(voice="marin", vad_silence_ms=700)))
    assert event == {
        "type": "session.update",
        "event_id": event["event_id"],
        "session": {
            "type": "realtime",
            "instructions": "Be brief.",
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "whisper-1"},
                    "turn_detection": {"type": "server_vad", "silence_duration_ms": 700},
                },
                "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
            },
        },
    }


def test_preview_session_update_shape() -> None:
    event = make("preview").encode(ev.UpdateSession(config(vad_threshold=0.6, vad_prefix_padding_ms=250)))
    assert event == {
        "type": "session.update",
        "event_id": event["event_id"],
        "session": {
            "instructions": "Be brief.",
            "voice": "alloy",
            "modalities": ["text", "audio"],
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 250},
        },
    }


@pytest.mark.parametrize("name", DIALECTS)
def test_unconfigured_vad_keeps_server_defaults(name: str) -> None:
    event = make(name).encode(ev.UpdateSession(config()))
    session = event["session"]
    detection = session["audio"]["input"]["turn_detection"] if name == "ga" else session["turn_detection"]
    assert detection == {"type": "server_vad"}


@pytest.mark.parametrize("name", DIALECTS)
def test_plain_commands(name: str) -> None:
    dialect = make(name)
    append = dialect.encode(ev.AppendAudio(AUDIO))
    assert append["type"] == "input_audio_buffer.append" and append["audio"] is AUDIO  # untouched
    truncate = dialect.encode(ev.Truncate(item_id="item_1", audio_end_ms=1234))
    assert {k: v for k, v in truncate.items() if k != "event_id"} == {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 1234,
    }
    assert set(dialect.encode(ev.CancelResponse())) == {"type", "event_id"}
    assert set(dialect.encode(ev.CreateResponse())) == {"type", "event_id"}
    assert dialect.encode(ev.CreateResponse("Say goodbye."))["response"] == {"instructions": "Say goodbye."}


@pytest.mark.parametrize(("name", "assistant_type"), [("ga", "output_text"), ("preview", "text")])
def test_text_items(name: str, assistant_type: str) -> None:
    dialect = make(name)
    user = dialect.encode(ev.CreateTextItem("user", "hello"))["item"]
    assistant = dialect.encode(ev.CreateTextItem("assistant", "hi there"))["item"]
    assert user == {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}
    assert assistant["content"] == [{"type": assistant_type, "text": "hi there"}]
    with pytest.raises(ValueError):
        dialect.encode(ev.CreateTextItem("tool", "x"))


def test_the_validator_tells_the_dialects_apart() -> None:
    """A control: the content types really differ, so the validation above means something."""
    ga_item = make("ga").encode(ev.CreateTextItem("assistant", "hi"))
    preview_item = make("preview").encode(ev.CreateTextItem("assistant", "hi"))
    assert validate_client_event("preview", ga_item) != []
    assert validate_client_event("ga", preview_item) != []
    assert validate_client_event("preview", make("ga").encode(ev.UpdateSession(config()))) != []


@pytest.mark.parametrize("name", DIALECTS)
def test_event_ids_are_unique_per_connection(name: str) -> None:
    dialect = make(name)
    ids = [dialect.encode(command)["event_id"] for command in COMMANDS * 3]
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == len(ids)


def test_not_a_command_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        make("ga").encode("session.update")  # type: ignore[arg-type]


session_configs = st.builds(
    ev.SessionConfig,
    instructions=st.text(max_size=300),
    voice=st.sampled_from(VOICES),
    vad=st.sampled_from(["server_vad", "semantic_vad"]),
    vad_threshold=st.none() | st.floats(min_value=0.0, max_value=1.0),
    vad_prefix_padding_ms=st.none() | st.integers(min_value=0, max_value=10_000),
    vad_silence_ms=st.none() | st.integers(min_value=0, max_value=10_000),
    transcription_model=st.sampled_from(["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]),
)


@settings(max_examples=150, deadline=None)
@given(session_configs)
def test_any_valid_session_config_encodes_validly(session: ev.SessionConfig) -> None:
    assert validate_client_event("ga", make("ga").encode(ev.UpdateSession(session))) == []
    if session.vad == "server_vad":
        assert validate_client_event("preview", make("preview").encode(ev.UpdateSession(session))) == []


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(DIALECTS),
    st.text(min_size=1, max_size=40),
    st.integers(min_value=0, max_value=3_600_000),
    st.sampled_from(["user", "assistant"]),
    st.text(max_size=200),
)
def test_any_truncate_and_text_item_validate(name: str, item_id: str, end_ms: int, role: str, content: str) -> None:
    dialect = make(name)
    assert validate_client_event(name, dialect.encode(ev.Truncate(item_id, end_ms))) == []
    assert validate_client_event(name, dialect.encode(ev.CreateTextItem(role, content))) == []


# ---------------------------------------------------------------- decode

GA_SESSION = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "Be brief.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "alloy"},
    },
}
PREVIEW_SESSION = {
    "id": "sess_1",
    "model": "gpt-4o-realtime-preview",
    "modalities": ["text", "audio"],
    "voice": "alloy",
    "input_audio_format": "g711_ulaw",
    "output_audio_format": "g711_ulaw",
}
USAGE = {"total_tokens": 30, "input_tokens": 10, "output_tokens": 20, "input_token_details": {"audio_tokens": 8}}
TRANSCRIPTION_USAGE = {"type": "tokens", "input_tokens": 5, "output_tokens": 3, "total_tokens": 8}


def _names(name: str) -> dict[str, str]:
    if name == "ga":
        return {
            "audio": "response.output_audio",
            "transcript": "response.output_audio_transcript",
            "item": "conversation.item.added",
        }
    return {"audio": "response.audio", "transcript": "response.audio_transcript", "item": "conversation.item.created"}


def server_cases(name: str) -> list[tuple[dict[str, Any], Any]]:
    """(wire event, expected decoding) pairs, each wire event valid for ``name``."""
    n = _names(name)
    session = GA_SESSION if name == "ga" else PREVIEW_SESSION
    ids = {"event_id": "event_1", "response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0}
    return [
        ({"type": "session.created", "event_id": "event_1", "session": session}, ev.Ignored("session.created")),
        ({"type": "session.updated", "event_id": "event_2", "session": session}, ev.SessionUpdated("pcmu", "pcmu")),
        (
            {"type": "input_audio_buffer.speech_started", "event_id": "e", "item_id": "item_u", "audio_start_ms": 1200},
            ev.SpeechStarted(item_id="item_u", audio_start_ms=1200),
        ),
        (
            {"type": "input_audio_buffer.speech_stopped", "event_id": "e", "item_id": "item_u", "audio_end_ms": 2400},
            ev.SpeechStopped(item_id="item_u", audio_end_ms=2400),
        ),
        (
            {
                "type": "response.created",
                "event_id": "e",
                "response": {"id": "resp_1", "object": "realtime.response", "status": "in_progress", "output": []},
            },
            ev.ResponseCreated("resp_1"),
        ),
        (
            {
                "type": "response.done",
                "event_id": "e",
                "response": {
                    "id": "resp_1",
                    "object": "realtime.response",
                    "status": "cancelled",
                    "output": [],
                    "usage": USAGE,
                },
            },
            ev.ResponseDone("resp_1", "cancelled", USAGE),
        ),
        (
            {"type": "response.done", "event_id": "e", "response": {"id": "resp_2", "status": "completed"}},
            ev.ResponseDone("resp_2", "completed", None),
        ),
        ({"type": f"{n['audio']}.delta", "delta": AUDIO, **ids}, ev.AudioDelta("resp_1", "item_1", AUDIO)),
        ({"type": f"{n['audio']}.done", **ids}, ev.AudioDone("resp_1", "item_1")),
        ({"type": f"{n['transcript']}.delta", "delta": "Hel", **ids}, ev.AgentTranscriptDelta("item_1", "Hel")),
        (
            {"type": f"{n['transcript']}.done", "transcript": "Hello!", **ids},
            ev.AgentTranscriptDone("item_1", "Hello!"),
        ),
        (
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "event_id": "e",
                "item_id": "item_u",
                "content_index": 0,
                "transcript": "A table for two.",
                "usage": TRANSCRIPTION_USAGE,
            },
            ev.CallerTranscript("item_u", "A table for two."),
        ),
        (
            {
                "type": n["item"],
                "event_id": "e",
                "previous_item_id": "item_u",
                "item": {"id": "item_1", "type": "message", "role": "assistant", "content": []},
            },
            ev.Ignored(n["item"]),
        ),
        (
            {
                "type": n["item"],
                "event_id": "e",
                "item": {"id": "item_f", "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            },
            ev.Ignored(n["item"]),
        ),
        (
            {
                "type": "conversation.item.truncated",
                "event_id": "e",
                "item_id": "item_1",
                "content_index": 0,
                "audio_end_ms": 1500,
            },
            ev.Ignored("conversation.item.truncated"),
        ),
        (
            {
                "type": "error",
                "event_id": "e",
                "error": {
                    "type": "invalid_request_error",
                    "code": "response_cancel_not_active",
                    "message": "No active response",
                    "param": None,
                    "event_id": "evt_7",
                },
            },
            ev.ModelError("response_cancel_not_active", "No active response", "evt_7", routine=True),
        ),
        (
            {"type": "error", "event_id": "e", "error": {"type": "server_error", "message": "boom"}},
            ev.ModelError(None, "boom", None),
        ),
        (
            {
                "type": "rate_limits.updated",
                "event_id": "e",
                "rate_limits": [{"name": "tokens", "limit": 10, "remaining": 5, "reset_seconds": 1.0}],
            },
            ev.Ignored("rate_limits.updated"),
        ),
        (
            {"type": "input_audio_buffer.committed", "event_id": "e", "item_id": "item_u", "previous_item_id": None},
            ev.Ignored("input_audio_buffer.committed"),
        ),
    ]


def _all_cases() -> list[tuple[str, dict[str, Any], Any]]:
    return [(name, wire, expected) for name in DIALECTS for wire, expected in server_cases(name)]


@pytest.mark.parametrize(
    ("name", "wire", "expected"), _all_cases(), ids=lambda v: v["type"] if isinstance(v, dict) else None
)
def test_server_events_decode(name: str, wire: dict[str, Any], expected: Any) -> None:
    assert validate_server_event(name, wire) == []  # the fake is faithful
    assert make(name).decode(wire) == expected


def test_ga_conversation_item_done_is_ignored() -> None:
    wire = {
        "type": "conversation.item.done",
        "event_id": "e",
        "item": {"id": "item_1", "type": "message", "role": "assistant", "content": []},
    }
    assert validate_server_event("ga", wire) == []
    assert make("ga").decode(wire) == ev.Ignored("conversation.item.done")


@pytest.mark.parametrize(
    ("name", "other_names"),
    [
        ("ga", ["response.audio.delta", "response.audio_transcript.delta"]),
        ("preview", ["response.output_audio.delta", "conversation.item.added"]),
    ],
)
def test_the_other_dialects_names_are_ignored(name: str, other_names: list[str]) -> None:
    for kind in other_names:
        wire = {"type": kind, "event_id": "e", "response_id": "r", "item_id": "i", "delta": AUDIO, "item": {"id": "i"}}
        assert make(name).decode(wire) == ev.Ignored(kind)


# ---------------------------------------------------------------- format normalisation


@pytest.mark.parametrize(
    ("input_format", "output_format", "expected"),
    [
        ({"type": "audio/pcmu"}, {"type": "audio/pcmu"}, ev.SessionUpdated("pcmu", "pcmu")),
        ({"type": "audio/pcm", "rate": 24000}, {"type": "audio/pcmu"}, ev.SessionUpdated("audio/pcm", "pcmu")),
        ({"type": "audio/pcmu"}, {"type": "audio/pcma"}, ev.SessionUpdated("pcmu", "audio/pcma")),
        ({}, None, ev.SessionUpdated(None, None)),
    ],
)
def test_ga_formats(input_format: Any, output_format: Any, expected: ev.SessionUpdated) -> None:
    audio: dict[str, Any] = {"input": {"format": input_format}}
    if output_format is not None:
        audio["output"] = {"format": output_format}
    wire = {"type": "session.updated", "event_id": "e", "session": {"type": "realtime", "audio": audio}}
    assert validate_server_event("ga", wire) == []
    assert make("ga").decode(wire) == expected


def test_ga_session_without_audio_has_no_formats() -> None:
    wire = {"type": "session.updated", "event_id": "e", "session": {"type": "realtime"}}
    assert validate_server_event("ga", wire) == []
    assert make("ga").decode(wire) == ev.SessionUpdated(None, None)


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        ({"input_audio_format": "g711_ulaw", "output_audio_format": "g711_ulaw"}, ev.SessionUpdated("pcmu", "pcmu")),
        ({"input_audio_format": "g711_ulaw", "output_audio_format": "pcm16"}, ev.SessionUpdated("pcmu", "pcm16")),
        ({"input_audio_format": "g711_alaw"}, ev.SessionUpdated("g711_alaw", None)),
        ({}, ev.SessionUpdated(None, None)),
    ],
)
def test_preview_formats(session: dict[str, Any], expected: ev.SessionUpdated) -> None:
    wire = {"type": "session.updated", "event_id": "e", "session": session}
    assert validate_server_event("preview", wire) == []
    assert make("preview").decode(wire) == expected


# ---------------------------------------------------------------- malformed events never raise

MALFORMED_EVENTS: list[Any] = [
    None,
    [],
    "response.done",
    42,
    {},
    {"type": None},
    {"type": 7},
    {"type": "error"},
    {"type": "error", "error": "boom"},
    {"type": "error", "error": {"code": "x"}},
    {"type": "response.done"},
    {"type": "response.done", "response": {"status": "completed"}},
    {"type": "response.done", "response": {"id": "r"}},
    {"type": "response.created", "response": None},
    {"type": "input_audio_buffer.speech_started", "item_id": "i"},
    {"type": "input_audio_buffer.speech_started", "item_id": "i", "audio_start_ms": "12"},
    {"type": "input_audio_buffer.speech_started", "item_id": "i", "audio_start_ms": True},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 1},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "i"},
    {"type": "session.updated"},
    {"type": "session.updated", "session": "pcmu"},
]


def _dialect_specific_malformed(name: str) -> list[dict[str, Any]]:
    n = _names(name)
    return [
        {"type": f"{n['audio']}.delta", "response_id": "r", "item_id": "i"},
        {"type": f"{n['audio']}.delta", "response_id": "r", "item_id": "i", "delta": None},
        {"type": f"{n['audio']}.delta", "delta": AUDIO},
        {"type": f"{n['audio']}.done", "item_id": "i"},
        {"type": f"{n['transcript']}.delta", "item_id": "i"},
        {"type": f"{n['transcript']}.done", "item_id": "i", "transcript": ["x"]},
    ]


@pytest.mark.parametrize("name", DIALECTS)
def test_malformed_events_become_malformed_errors(name: str) -> None:
    dialect = make(name)
    for wire in [*MALFORMED_EVENTS, *_dialect_specific_malformed(name)]:
        decoded = dialect.decode(wire)
        assert isinstance(decoded, ev.ModelError), wire
        assert decoded.code == MALFORMED and decoded.client_event_id is None
        assert decoded.message


def test_a_malformed_message_names_the_event_and_field() -> None:
    decoded = make("ga").decode({"type": "response.output_audio.delta", "response_id": "r", "item_id": "i"})
    assert decoded == ev.ModelError(MALFORMED, "response.output_audio.delta: delta missing or not a string")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
KNOWN_TYPES = sorted({wire["type"] for name in DIALECTS for wire, _ in server_cases(name)})


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(DIALECTS),
    st.sampled_from(KNOWN_TYPES) | st.text(max_size=20),
    st.dictionaries(
        st.sampled_from(
            [
                "item_id",
                "response_id",
                "delta",
                "audio_start_ms",
                "audio_end_ms",
                "response",
                "item",
                "error",
                "session",
                "transcript",
            ]
        ),
        json_values,
    ),
)
def test_decode_never_raises(name: str, kind: str, fields: dict[str, Any]) -> None:
    assert isinstance(make(name).decode({**fields, "type": kind}), typing.get_args(ev.ModelEvent))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DIALECTS), json_values)
def test_decode_of_any_json_never_raises(name: str, value: Any) -> None:
    make(name).decode(value)


@pytest.mark.parametrize("name", DIALECTS)
def test_tools_are_declared_and_function_calls_answered_in_both_dialects(name: str) -> None:
    from voiceagent.realtime.events import FunctionCall, FunctionOutput, ToolSpec

    spec = ToolSpec("check_availability", "Free tables.", {"type": "object", "properties": {"n": {"type": "integer"}}})
    dialect = make(name)
    update = dialect.encode(ev.UpdateSession(config(tools=(spec,))))
    assert validate_client_event(name, update) == []
    assert update["session"]["tools"] == [
        {"type": "function", "name": "check_availability", "description": "Free tables.", "parameters": spec.parameters}
    ]
    assert update["session"]["tool_choice"] == "auto"
    output = dialect.encode(FunctionOutput("call_1", '{"tables": 2}'))
    assert validate_client_event(name, output) == []
    assert output["item"] == {"type": "function_call_output", "call_id": "call_1", "output": '{"tables": 2}'}
    item = {"id": "item_f", "type": "function_call", "call_id": "call_1", "name": "check_availability", "arguments": ""}
    added = {
        "type": "response.output_item.added",
        "event_id": "e1",
        "response_id": "r1",
        "output_index": 0,
        "item": item,
    }
    assert validate_server_event(name, added) == []
    assert dialect.decode(added) == ev.Ignored("response.output_item.added")
    done = {
        "type": "response.function_call_arguments.done",
        "event_id": "e2",
        "response_id": "r1",
        "item_id": "item_f",
        "output_index": 0,
        "call_id": "call_1",
        "arguments": '{"n": 2}',
    }
    if name == "ga":
        done["name"] = "check_availability"
    assert validate_server_event(name, done) == []
    assert dialect.decode(done) == FunctionCall("r1", "call_1", "check_availability", '{"n": 2}')
