"""The GA Realtime protocol (``/openai/v1/realtime`` on Azure, ``/v1/realtime`` on OpenAI).

What differs from the preview protocol: the nested ``session.audio`` block with ``session.type``,
format objects (``{"type": "audio/pcmu"}``), ``output_modalities``, semantic VAD, the
``response.output_audio*`` event names, ``conversation.item.added`` for new items and ``output_text``
as the content type of assistant text.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from voiceagent.realtime import dialect as base
from voiceagent.realtime.events import ModelEvent, SessionConfig

PCMU_FORMAT = "audio/pcmu"


def _session_updated(event: dict[str, Any]) -> ModelEvent:
    audio = base.child(event, "session").get("audio")
    audio = audio if isinstance(audio, dict) else {}
    return base.session_updated(_format_of(audio.get("input")), _format_of(audio.get("output")))


def _format_of(direction: Any) -> Any:
    return direction.get("format") if isinstance(direction, dict) else None


def _turn_detection(config: SessionConfig) -> dict[str, Any]:
    if config.vad == "semantic_vad":
        return {"type": "semantic_vad"}
    if config.vad == "server_vad":
        return base.server_vad(config)
    raise ValueError(f"unknown turn detection {config.vad!r}")


class GADialect(base.BaseDialect):
    """The GA dialect."""

    name = "ga"
    content_types = MappingProxyType({"user": "input_text", "system": "input_text", "assistant": "output_text"})

    def __init__(self) -> None:
        super().__init__()
        self.decoders = {
            **base.COMMON_DECODERS,
            "session.updated": _session_updated,
            **base.response_decoders("response.output_audio", "response.output_text"),
        }

    def session_update(self, config: SessionConfig) -> dict[str, Any]:
        return {
            "type": "realtime",
            "instructions": config.instructions,
            "output_modalities": ["audio"],
            "audio": {
                "input": {
                    "format": {"type": PCMU_FORMAT},
                    "transcription": {"model": config.transcription_model},
                    "turn_detection": _turn_detection(config),
                },
                "output": {"format": {"type": PCMU_FORMAT}, "voice": config.voice},
            },
            **base.tools_of(config),
        }
