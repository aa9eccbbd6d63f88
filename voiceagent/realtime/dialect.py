"""A Realtime *dialect*: the table that turns our vocabulary into wire events and back.

Two dialects exist (see docs/protocol.md §2, "Two dialects"): GA (``ga.py``) and the legacy preview protocol
(``preview.py``). They share most event names; this module holds what they share, each dialect module
holds what differs. Nothing outside ``voiceagent.realtime`` knows which one is in use.

Decoding runs for every audio delta, so it is a dict lookup plus a few key reads: no validation
library on the hot path.

Malformed events: a server event whose ``type`` we map but whose fields are missing or of the wrong
kind decodes to ``ModelError(code="malformed_event", message=...)``; it never raises. An event with an
unknown or irrelevant ``type`` decodes to ``Ignored(type)``. Something that is not a JSON object, or has
no string ``type``, is also a ``malformed_event``. The call core treats ``ModelError`` as a warning
unless it decides otherwise, so one odd event never ends a call.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Never, NoReturn, Protocol

from voiceagent.realtime.events import (
    PCMU,
    AgentTranscriptDelta,
    AgentTranscriptDone,
    AppendAudio,
    AudioDelta,
    AudioDone,
    CallerTranscript,
    CallerTranscriptFailed,
    CancelResponse,
    CreateResponse,
    CreateTextItem,
    FunctionCall,
    FunctionOutput,
    Ignored,
    ModelCommand,
    ModelError,
    ModelEvent,
    ResponseCreated,
    ResponseDone,
    SessionConfig,
    SessionRejected,
    SessionUpdated,
    SpeechStarted,
    SpeechStopped,
    TextDelta,
    Truncate,
    UpdateSession,
)

if TYPE_CHECKING:
    from voiceagent.realtime.target import ModelTarget

MALFORMED = "malformed_event"
_PCMU_NAMES = frozenset({"audio/pcmu", "g711_ulaw"})

Decoder = Callable[[dict[str, Any]], ModelEvent]


class Dialect(Protocol):
    """Encodes our commands to wire events and decodes wire events to our events."""

    name: str  # "ga" | "preview"

    def encode(self, command: ModelCommand) -> dict[str, Any]:
        """A wire event for ``command``, with a fresh ``event_id``, ready for ``json.dumps``."""
        ...

    def decode(self, event: Any) -> ModelEvent:
        """Our event for a parsed wire event; never raises."""
        ...


class Malformed(Exception):
    """A mapped event lacks a field or has one of the wrong kind (never escapes ``decode``)."""


# ---------------------------------------------------------------- field readers (cheap, strict)


def text(obj: Any, key: str) -> str:
    """``obj[key]`` when ``obj`` is an object and the value a string, else raise Malformed."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str):
        raise Malformed(f"{key} missing or not a string")
    return value


def optional_text(obj: Any, key: str) -> str | None:
    value = obj.get(key) if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def integer(obj: Any, key: str) -> int:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed(f"{key} missing or not an integer")
    return value


def child(obj: Any, key: str) -> dict[str, Any]:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, dict):
        raise Malformed(f"{key} missing or not an object")
    return value


def normalise_format(value: Any) -> str | None:
    """``"pcmu"`` for μ-law in either dialect's spelling, else the raw name, ``None`` when absent.

    GA writes a format as ``{"type": "audio/pcmu"}``, preview as ``"g711_ulaw"``; both are accepted
    in both dialects so an odd server cannot make us misreport μ-law.
    """
    name = value.get("type") if isinstance(value, dict) else value
    if not isinstance(name, str):
        return None
    return PCMU if name in _PCMU_NAMES else name


# ---------------------------------------------------------------- decoders shared by both dialects


def _speech_started(event: dict[str, Any]) -> ModelEvent:
    return SpeechStarted(item_id=text(event, "item_id"), audio_start_ms=integer(event, "audio_start_ms"))


def _speech_stopped(event: dict[str, Any]) -> ModelEvent:
    return SpeechStopped(item_id=text(event, "item_id"), audio_end_ms=integer(event, "audio_end_ms"))


def _response_created(event: dict[str, Any]) -> ModelEvent:
    return ResponseCreated(response_id=text(child(event, "response"), "id"))


def _response_done(event: dict[str, Any]) -> ModelEvent:
    response = child(event, "response")
    usage = response.get("usage")
    return ResponseDone(
        response_id=text(response, "id"),
        status=text(response, "status"),
        usage=usage if isinstance(usage, dict) else None,
        detail=_status_detail(response.get("status_details")),
    )


def _status_detail(details: Any) -> str | None:
    """``status_details`` in a few words: ``reason``, and the ``error``'s code and message if any."""
    if not isinstance(details, dict):
        return None
    error = details.get("error") if isinstance(details.get("error"), dict) else {}
    parts = [optional_text(details, "reason"), optional_text(error, "code"), optional_text(error, "message")]
    return ": ".join(part for part in parts if part) or None


def _transcription_failed(event: dict[str, Any]) -> ModelEvent:
    error = event.get("error")
    message = optional_text(error, "message") or "transcription failed"
    return CallerTranscriptFailed(item_id=text(event, "item_id"), message=message)


def text_delta(event: dict[str, Any]) -> ModelEvent:
    return TextDelta(response_id=text(event, "response_id"), item_id=text(event, "item_id"), delta=text(event, "delta"))


def _caller_transcript(event: dict[str, Any]) -> ModelEvent:
    return CallerTranscript(item_id=text(event, "item_id"), transcript=text(event, "transcript"))


ROUTINE_ERROR_CODES = frozenset(
    {
        "response_cancel_not_active",  # a cancel raced the end of the response
        "conversation_already_has_active_response",
        "invalid_value",  # e.g. a truncate past the produced audio
        "item_truncate_invalid_item_id",
        "session_expired",  # the duration cap: the close that follows triggers the reconnect
    }
)
"""Error codes that are part of a normal call (docs/protocol.md §2, "Errors"): none of them ends a call."""


def _error(event: dict[str, Any]) -> ModelEvent:
    error = child(event, "error")
    code = optional_text(error, "code")
    return ModelError(
        code=code,
        message=text(error, "message"),
        client_event_id=optional_text(error, "event_id"),
        routine=code in ROUTINE_ERROR_CODES,
    )


def audio_delta(event: dict[str, Any]) -> ModelEvent:
    return AudioDelta(
        response_id=text(event, "response_id"), item_id=text(event, "item_id"), audio=text(event, "delta")
    )


def audio_done(event: dict[str, Any]) -> ModelEvent:
    return AudioDone(response_id=text(event, "response_id"), item_id=text(event, "item_id"))


def transcript_delta(event: dict[str, Any]) -> ModelEvent:
    return AgentTranscriptDelta(item_id=text(event, "item_id"), delta=text(event, "delta"))


def transcript_done(event: dict[str, Any]) -> ModelEvent:
    return AgentTranscriptDone(item_id=text(event, "item_id"), transcript=text(event, "transcript"))


COMMON_DECODERS: Mapping[str, Decoder] = MappingProxyType(
    {
        "input_audio_buffer.speech_started": _speech_started,
        "input_audio_buffer.speech_stopped": _speech_stopped,
        "response.created": _response_created,
        "response.done": _response_done,
        "conversation.item.input_audio_transcription.completed": _caller_transcript,
        "conversation.item.input_audio_transcription.failed": _transcription_failed,
        "error": _error,
    }
)


def response_decoders(audio: str, text: str) -> dict[str, Decoder]:
    """The decoders of a response's audio, transcript and text events, which the dialects name apart:
    ``{audio}.delta``, ``{audio}.done``, ``{audio}_transcript.delta`` / ``.done`` and ``{text}.delta``."""
    return {
        f"{audio}.delta": audio_delta,
        f"{audio}.done": audio_done,
        f"{audio}_transcript.delta": transcript_delta,
        f"{audio}_transcript.done": transcript_done,
        f"{text}.delta": text_delta,
    }


def session_updated(input_format: Any, output_format: Any) -> SessionUpdated:
    return SessionUpdated(input_format=normalise_format(input_format), output_format=normalise_format(output_format))


# ---------------------------------------------------------------- the shared machinery


def not_a_command(command: Never) -> NoReturn:
    """``assert_never`` for the commands: mypy fails where a ``ModelCommand`` is left unhandled, and a
    caller that passes something else gets the ``TypeError`` a wrong type deserves."""
    raise TypeError(f"not a Realtime command: {command!r}")


class BaseDialect(ABC):
    """Numbering of client events, the decode table and the commands both dialects spell alike.

    Subclasses set ``name``, ``decoders`` and ``content_types`` (message role → content type of a
    text part) and implement ``session_update``. One object per connection: it holds the counter.
    """

    name: str
    decoders: Mapping[str, Decoder]
    content_types: Mapping[str, str]

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._session_update_ids: set[str] = set()  # errors naming one of these reject our configuration
        self._function_names: dict[str, str] = {}  # function_call item id -> name (preview omits it later)
        self._stateful_decoders: dict[str, Decoder] = {  # per connection: they remember what they saw
            "response.output_item.added": self._output_item_added,
            "response.function_call_arguments.done": self._function_call,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # ------------------------------------------------------------ encode

    def next_event_id(self) -> str:
        return f"evt_{next(self._counter)}"

    def encode(self, command: ModelCommand) -> dict[str, Any]:
        """A wire event for ``command`` with a fresh ``event_id``."""
        event = self._event(command)
        event["event_id"] = self.next_event_id()
        if isinstance(command, UpdateSession):
            self._session_update_ids.add(event["event_id"])
        return event

    def _event(self, command: ModelCommand) -> dict[str, Any]:
        match command:
            case AppendAudio(audio=audio):
                return {"type": "input_audio_buffer.append", "audio": audio}
            case Truncate(item_id=item_id, audio_end_ms=audio_end_ms):
                return {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": audio_end_ms,
                }
            case CancelResponse():
                return {"type": "response.cancel"}
            case CreateResponse(instructions=None):
                return {"type": "response.create"}
            case CreateResponse(instructions=instructions):  # same shape in both dialects
                return {"type": "response.create", "response": {"instructions": instructions}}
            case CreateTextItem(role=role, text=content):
                return {"type": "conversation.item.create", "item": self.text_item(role, content)}
            case FunctionOutput(call_id=call_id, output=output):
                item = {"type": "function_call_output", "call_id": call_id, "output": output}
                return {"type": "conversation.item.create", "item": item}
            case UpdateSession(config=config):
                return {"type": "session.update", "session": self.session_update(config)}
            case _:
                not_a_command(command)

    def _output_item_added(self, event: dict[str, Any]) -> ModelEvent:
        item = child(event, "item")
        if item.get("type") == "function_call":
            self._function_names[text(item, "id")] = text(item, "name")
        return Ignored(event["type"])

    def _function_call(self, event: dict[str, Any]) -> ModelEvent:
        """GA names the function here; preview does not, so the name comes from the output item."""
        item_id = text(event, "item_id")
        name = optional_text(event, "name") or self._function_names.get(item_id)
        if name is None:
            raise Malformed("function call arguments for an unknown item")
        self._function_names.pop(item_id, None)
        return FunctionCall(
            response_id=text(event, "response_id"),
            call_id=text(event, "call_id"),
            name=name,
            arguments=text(event, "arguments"),
        )

    @abstractmethod
    def session_update(self, config: SessionConfig) -> dict[str, Any]:
        """The ``session`` object of ``session.update``: the dialects differ most here."""

    def text_item(self, role: str, content: str) -> dict[str, Any]:
        """A message item holding one text part, for ``conversation.item.create``."""
        try:
            content_type = self.content_types[role]
        except KeyError:
            raise ValueError(f"cannot create a {role!r} message") from None
        return {"type": "message", "role": role, "content": [{"type": content_type, "text": content}]}

    # ------------------------------------------------------------ decode

    def decode(self, event: Any) -> ModelEvent:
        """Our event for a parsed wire event. Never raises (see the module docstring)."""
        kind = event.get("type") if isinstance(event, dict) else None
        if not isinstance(kind, str):
            return ModelError(code=MALFORMED, message="server event without a string type")
        decoder = self._stateful_decoders.get(kind) or self.decoders.get(kind)
        if decoder is None:
            return Ignored(kind)
        try:
            decoded = decoder(event)
        except Malformed as exc:
            return ModelError(code=MALFORMED, message=f"{kind}: {exc}")
        if isinstance(decoded, ModelError) and decoded.client_event_id in self._session_update_ids:
            return SessionRejected(code=decoded.code, message=decoded.message)
        return decoded


def tools_of(config: SessionConfig) -> dict[str, Any]:
    """``tools`` and ``tool_choice`` for ``session.update`` (the same in both dialects), if any."""
    if not config.tools:
        return {}
    tools = [
        {"type": "function", "name": spec.name, "description": spec.description, "parameters": spec.parameters}
        for spec in config.tools
    ]
    return {"tools": tools, "tool_choice": "auto"}


def server_vad(config: SessionConfig) -> dict[str, Any]:
    """``turn_detection`` for server VAD: only the settings that were configured (None = server default)."""
    detection: dict[str, Any] = {"type": "server_vad"}
    if config.vad_threshold is not None:
        detection["threshold"] = config.vad_threshold
    if config.vad_prefix_padding_ms is not None:
        detection["prefix_padding_ms"] = config.vad_prefix_padding_ms
    if config.vad_silence_ms is not None:
        detection["silence_duration_ms"] = config.vad_silence_ms
    return detection


def dialect_for(target: ModelTarget) -> Dialect:
    """A new dialect object for one connection to ``target`` (``target.dialect`` is "ga" or "preview")."""
    from voiceagent.realtime.ga import GADialect  # imported here: both modules build on this one
    from voiceagent.realtime.preview import PreviewDialect

    kinds: dict[str, type[BaseDialect]] = {"ga": GADialect, "preview": PreviewDialect}
    try:
        return kinds[target.dialect]()
    except KeyError:
        raise ValueError(f"unknown Realtime dialect {target.dialect!r}") from None
