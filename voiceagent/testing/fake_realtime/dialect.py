"""The two wire dialects of the fake Realtime server: event names, session shapes, items, responses.

Everything that differs between the GA protocol and the legacy preview protocol lives here, so the
session logic (``session``) is written once. Shapes follow the ``openai`` package's
pydantic types; every event built from them is checked again by ``validate_server_event`` when sent.
"""

from __future__ import annotations

import copy
import typing
from dataclasses import dataclass
from typing import Any

from openai.types.beta.realtime.session import Session as _PreviewSession

# Server VAD defaults as the service reports them (threshold 0.5, prefix 300 ms, silence 200 ms, respond
# and interrupt): docs/protocol.md §2, "### Session configuration".
SERVER_VAD_DEFAULTS: dict[str, Any] = {
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 200,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS: dict[str, Any] = {"eagerness": "auto", "create_response": True, "interrupt_response": True}
DEFAULT_INSTRUCTIONS = "You are a helpful, witty, and friendly AI."
DEFAULT_VOICE = "alloy"
# The voices each dialect's models offer (docs/protocol.md §2, "Known traps"); others are refused.
GA_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
PREVIEW_VOICES = GA_VOICES[:8]
_PREVIEW_MODELS = frozenset(typing.get_args(typing.get_args(_PreviewSession.model_fields["model"].annotation)[0]))
_PREVIEW_DEFAULT_MODEL = "gpt-4o-realtime-preview-2024-12-17"


def _with_vad_defaults(turn_detection: dict[str, Any] | None, *, ga: bool) -> dict[str, Any] | None:
    if turn_detection is None:
        return None
    kind = turn_detection.get("type", "server_vad")
    defaults = dict(SEMANTIC_VAD_DEFAULTS if kind == "semantic_vad" else SERVER_VAD_DEFAULTS)
    if ga and kind == "server_vad":
        defaults["idle_timeout_ms"] = None
    return {"type": kind, **defaults, **turn_detection}


@dataclass(frozen=True)
class DialectSpec:
    """One wire dialect: its event names and the shapes of its sessions, items and responses."""

    name: str
    audio_delta: str
    audio_done: str
    transcript_delta: str
    transcript_done: str
    text_delta: str  # a text answer (the model has stopped speaking: docs/protocol.md §2, "Known traps")
    text_done: str
    audio_content_type: str  # content type of an assistant audio part inside an item
    text_content_type: str  # content type of an assistant text part inside an item
    voices: tuple[str, ...]  # the voices its models offer
    voice_param: str  # where a session.update names the voice, as the real error's ``param`` says it

    @property
    def is_ga(self) -> bool:
        return self.name == "ga"

    # ------------------------------------------------------------------ session

    def default_session(self, model: str, session_id: str) -> dict[str, Any]:
        """The configuration a fresh session starts with: PCM 24 kHz both ways, server VAD on."""
        if self.is_ga:
            return {
                "type": "realtime",
                "model": model,
                "output_modalities": ["audio"],
                "instructions": DEFAULT_INSTRUCTIONS,
                "tools": [],
                "tool_choice": "auto",
                "max_output_tokens": "inf",
                "tracing": None,
                "truncation": "auto",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": None,
                        "noise_reduction": None,
                        "turn_detection": _with_vad_defaults({"type": "server_vad"}, ga=True),
                    },
                    "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": DEFAULT_VOICE, "speed": 1.0},
                },
            }
        return {
            "id": session_id,
            "model": model if model in _PREVIEW_MODELS else _PREVIEW_DEFAULT_MODEL,
            "modalities": ["text", "audio"],
            "instructions": DEFAULT_INSTRUCTIONS,
            "voice": DEFAULT_VOICE,
            "input_audio_format": "pcm16",
            "output_audio_format": "pcm16",
            "input_audio_transcription": None,
            "input_audio_noise_reduction": None,
            "turn_detection": _with_vad_defaults({"type": "server_vad"}, ga=False),
            "tools": [],
            "tool_choice": "auto",
            "temperature": 0.8,
            "max_response_output_tokens": "inf",
            "speed": 1.0,
            "tracing": None,
        }

    def merge_session(self, effective: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        """The effective session after a ``session.update``: the nesting containers (``audio``,
        ``input``, ``output``) merge key by key; any other field given replaces the old value."""
        merged = copy.deepcopy(effective)
        if self.is_ga:
            _merge_nested(merged, update, containers={"audio", "input", "output"})
            audio_in = merged.get("audio", {}).get("input", {})
            if "turn_detection" in audio_in:
                audio_in["turn_detection"] = _with_vad_defaults(audio_in["turn_detection"], ga=True)
            for side in ("input", "output"):
                fmt = merged.get("audio", {}).get(side, {}).get("format")
                if isinstance(fmt, dict) and fmt.get("type") == "audio/pcm":
                    fmt.setdefault("rate", 24000)
        else:
            merged.update(copy.deepcopy(update))
            merged["turn_detection"] = _with_vad_defaults(merged.get("turn_detection"), ga=False)
        return merged

    def force_pcm(self, session: dict[str, Any]) -> dict[str, Any]:
        """``session`` with PCM 24 kHz audio both ways (a model that ignored the requested format)."""
        forced = copy.deepcopy(session)
        if self.is_ga:
            for side in ("input", "output"):
                forced.setdefault("audio", {}).setdefault(side, {})["format"] = {"type": "audio/pcm", "rate": 24000}
        else:
            forced["input_audio_format"] = forced["output_audio_format"] = "pcm16"
        return forced

    def input_format(self, session: dict[str, Any]) -> str:
        """Normalised input format: ``pcmu``, ``pcma`` or ``pcm`` (16-bit 24 kHz)."""
        return self._format(session, "input")

    def output_format(self, session: dict[str, Any]) -> str:
        return self._format(session, "output")

    def _format(self, session: dict[str, Any], side: str) -> str:
        if self.is_ga:
            raw = ((session.get("audio") or {}).get(side) or {}).get("format") or {}
            return {"audio/pcmu": "pcmu", "audio/pcma": "pcma"}.get(str(raw.get("type")), "pcm")
        raw_name = session.get(f"{side}_audio_format")
        return {"g711_ulaw": "pcmu", "g711_alaw": "pcma"}.get(str(raw_name), "pcm")

    def turn_detection(self, session: dict[str, Any]) -> dict[str, Any] | None:
        if self.is_ga:
            return ((session.get("audio") or {}).get("input") or {}).get("turn_detection")
        return session.get("turn_detection")

    def transcription_model(self, session: dict[str, Any]) -> str | None:
        """The transcription model when caller transcripts are configured, else ``None``."""
        if self.is_ga:
            config = ((session.get("audio") or {}).get("input") or {}).get("transcription")
        else:
            config = session.get("input_audio_transcription")
        if config is None:
            return None
        return config.get("model") or "whisper-1"

    def requested_voice(self, update: dict[str, Any]) -> str | None:
        """The voice a ``session.update``'s ``session`` asks for, if it names one."""
        if self.is_ga:
            voice = ((update.get("audio") or {}).get("output") or {}).get("voice")
        else:
            voice = update.get("voice")
        return voice if isinstance(voice, str) else None

    def voice(self, session: dict[str, Any]) -> str:
        if self.is_ga:
            voice = ((session.get("audio") or {}).get("output") or {}).get("voice")
        else:
            voice = session.get("voice")
        return voice if isinstance(voice, str) else DEFAULT_VOICE

    # ------------------------------------------------------------------ items

    def item_added_events(self, item: dict[str, Any], previous_item_id: str | None) -> list[dict[str, Any]]:
        """Events announcing a new item (GA: added; preview: created)."""
        kind = "conversation.item.added" if self.is_ga else "conversation.item.created"
        return [{"type": kind, "previous_item_id": previous_item_id, "item": copy.deepcopy(item)}]

    def item_done_events(self, item: dict[str, Any], previous_item_id: str | None) -> list[dict[str, Any]]:
        """Events announcing that an item is final (GA only: ``conversation.item.done``)."""
        if not self.is_ga:
            return []
        return [{"type": "conversation.item.done", "previous_item_id": previous_item_id, "item": copy.deepcopy(item)}]

    @staticmethod
    def user_audio_item(item_id: str, transcript: str | None = None) -> dict[str, Any]:
        return _message_item(item_id, "completed", "user", [{"type": "input_audio", "transcript": transcript}])

    def assistant_audio_item(self, item_id: str, status: str, transcript: str | None) -> dict[str, Any]:
        content = [] if transcript is None else [{"type": self.audio_content_type, "transcript": transcript}]
        return _message_item(item_id, status, "assistant", content)

    def assistant_text_item(self, item_id: str, status: str, text: str | None) -> dict[str, Any]:
        """An assistant message answered in text (no audio part)."""
        content = [] if text is None else [{"type": self.text_content_type, "text": text}]
        return _message_item(item_id, status, "assistant", content)

    @staticmethod
    def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
        }

    def arguments_done(self, ids: dict[str, Any], name: str, arguments: str) -> dict[str, Any]:
        """``response.function_call_arguments.done``: GA names the function here, preview does not."""
        event = {**ids, "type": "response.function_call_arguments.done", "arguments": arguments}
        return {**event, "name": name} if self.is_ga else event

    # ------------------------------------------------------------------ responses

    def response(
        self,
        response_id: str,
        session: dict[str, Any],
        *,
        status: str,
        output: list[dict[str, Any]],
        status_details: dict[str, Any] | None = None,
        usage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        common = {
            "id": response_id,
            "object": "realtime.response",
            "status": status,
            "status_details": status_details,
            "output": copy.deepcopy(output),
            "conversation_id": "conv_" + response_id.removeprefix("resp_"),
            "max_output_tokens": "inf",
            "usage": usage,
            "metadata": None,
        }
        if self.is_ga:
            fmt = copy.deepcopy(((session.get("audio") or {}).get("output") or {}).get("format"))
            return {
                **common,
                "output_modalities": ["audio"],
                "audio": {"output": {"format": fmt, "voice": self.voice(session)}},
            }
        return {
            **common,
            "modalities": ["text", "audio"],
            "voice": self.voice(session),
            "output_audio_format": session.get("output_audio_format", "pcm16"),
            "temperature": session.get("temperature", 0.8),
        }


def _message_item(item_id: str, status: str, role: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": role,
        "content": content,
    }


def _merge_nested(target: dict[str, Any], update: dict[str, Any], *, containers: set[str]) -> None:
    for key, value in update.items():
        if key in containers and isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_nested(target[key], value, containers=containers)
        else:
            target[key] = copy.deepcopy(value)


def _spec(name: str, output: str, voices: tuple[str, ...], voice_param: str) -> DialectSpec:
    """The two dialects name the same events and content types, GA with an ``output_`` prefix."""
    return DialectSpec(
        name=name,
        audio_delta=f"response.{output}audio.delta",
        audio_done=f"response.{output}audio.done",
        transcript_delta=f"response.{output}audio_transcript.delta",
        transcript_done=f"response.{output}audio_transcript.done",
        text_delta=f"response.{output}text.delta",
        text_done=f"response.{output}text.done",
        audio_content_type=f"{output}audio",
        text_content_type=f"{output}text",
        voices=voices,
        voice_param=voice_param,
    )


GA = _spec("ga", "output_", GA_VOICES, "session.audio.output.voice")
PREVIEW = _spec("preview", "", PREVIEW_VOICES, "session.voice")
DIALECTS: dict[str, DialectSpec] = {"ga": GA, "preview": PREVIEW}
