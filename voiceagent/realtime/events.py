"""The one internal vocabulary for the Realtime API.

The dialect modules (``ga.py``, ``preview.py``) turn wire events into these objects and these
commands into wire events. Nothing outside ``voiceagent.realtime`` knows which dialect is in use.

Audio travels as the base64 text it arrived in: passthrough means no decode on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PCMU = "pcmu"  # how ``SessionUpdated`` names μ-law, whatever the dialect's own spelling

# ---------------------------------------------------------------- events the model sends us


@dataclass(frozen=True, slots=True)
class SessionUpdated:
    """The effective configuration. Formats are normalised: ``"pcmu"`` for μ-law, otherwise the
    dialect's own name (e.g. ``"audio/pcm"``, ``"pcm16"``) or ``None`` when the server did not say."""

    input_format: str | None
    output_format: str | None


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    item_id: str
    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: str  # completed | cancelled | incomplete | failed | in_progress
    usage: dict[str, Any] | None = None
    detail: str | None = None  # status_details of a failed or incomplete response: reason, error code, message


@dataclass(frozen=True, slots=True)
class AudioDelta:
    response_id: str
    item_id: str
    audio: str  # base64 μ-law, untouched


@dataclass(frozen=True, slots=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True, slots=True)
class AgentTranscriptDelta:
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class AgentTranscriptDone:
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class CallerTranscript:
    item_id: str
    transcript: str


@dataclass(frozen=True, slots=True)
class CallerTranscriptFailed:
    """The caller's words could not be transcribed (on Azure, often a transcription deployment the
    resource lacks): the turn happened, its text is lost."""

    item_id: str
    message: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Part of a *text* answer. In an audio session this means the model has stopped speaking (a known
    trap after assistant text is replayed): the caller hears nothing of it."""

    response_id: str
    item_id: str
    delta: str


@dataclass(frozen=True, slots=True)
class SessionRejected:
    """The server refused our ``session.update`` (its ``error`` names that event): the session keeps its
    defaults, PCM at 24 kHz, which a caller would hear as static."""

    code: str | None
    message: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The model calls a function: ``arguments`` is the JSON text it produced (possibly invalid)."""

    response_id: str
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ModelError:
    """An ``error`` event. ``routine``: the dialect knows this code as part of a normal call (a cancel
    that raced the end of a response, a session cap announced before the close): a warning, not an error."""

    code: str | None
    message: str
    client_event_id: str | None = None
    routine: bool = False


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event the call core has no use for (rate limits, content parts, ...)."""

    type: str


ModelEvent = (
    SessionUpdated
    | SpeechStarted
    | SpeechStopped
    | ResponseCreated
    | ResponseDone
    | AudioDelta
    | AudioDone
    | AgentTranscriptDelta
    | AgentTranscriptDone
    | CallerTranscript
    | CallerTranscriptFailed
    | FunctionCall
    | TextDelta
    | SessionRejected
    | ModelError
    | Ignored
)

# ---------------------------------------------------------------- commands we send the model


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A function the model may call, as declared in ``session.update``: ``parameters`` is a JSON schema
    object."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """What we ask of a session; the dialect renders it to its own ``session.update``."""

    instructions: str
    voice: str
    vad: str = "server_vad"  # server_vad | semantic_vad
    vad_threshold: float | None = None
    vad_prefix_padding_ms: int | None = None
    vad_silence_ms: int | None = None
    transcription_model: str = "whisper-1"
    tools: tuple[ToolSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class UpdateSession:
    config: SessionConfig


@dataclass(frozen=True, slots=True)
class AppendAudio:
    audio: str  # base64 μ-law, untouched


@dataclass(frozen=True, slots=True)
class Truncate:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True, slots=True)
class CancelResponse:
    pass


@dataclass(frozen=True, slots=True)
class CreateResponse:
    instructions: str | None = None


@dataclass(frozen=True, slots=True)
class FunctionOutput:
    """The result of a function call, for the model (``output`` is what it reads, usually JSON)."""

    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class CreateTextItem:
    """Replays one utterance of the conversation (after a reconnect)."""

    role: str  # user | assistant
    text: str


ModelCommand = (
    UpdateSession | AppendAudio | Truncate | CancelResponse | CreateResponse | CreateTextItem | FunctionOutput
)
