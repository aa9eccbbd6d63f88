"""The preview ("beta", ``realtime=v1``) Realtime protocol: Azure ``/openai/realtime?api-version=…``.

Legacy: Azure stopped it from 2026-04-30 and OpenAI switched it off on 2026-05-12, but existing
deployments may still speak it. What differs from GA: a flat session (``input_audio_format:
"g711_ulaw"``, ``voice``, ``modalities``, ``input_audio_transcription``) without ``session.type``, the
``response.audio*`` event names, ``conversation.item.created`` for new items and ``text`` as the
content type of assistant text. We offer no semantic VAD here (the configuration refuses it).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from voiceagent.realtime import dialect as base
from voiceagent.realtime.events import ModelEvent, SessionConfig

PCMU_FORMAT = "g711_ulaw"


def _session_updated(event: dict[str, Any]) -> ModelEvent:
    session = base.child(event, "session")
    return base.session_updated(session.get("input_audio_format"), session.get("output_audio_format"))


class PreviewDialect(base.BaseDialect):
    """The preview dialect."""

    name = "preview"
    content_types = MappingProxyType({"user": "input_text", "system": "input_text", "assistant": "text"})
    decoders = MappingProxyType(
        {
            **base.COMMON_DECODERS,
            "session.updated": _session_updated,
            **base.response_decoders("response.audio", "response.text"),
        }
    )

    def session_update(self, config: SessionConfig) -> dict[str, Any]:
        if config.vad != "server_vad":
            raise ValueError(f"the preview protocol has no {config.vad}: use server_vad or the GA protocol")
        return {
            "instructions": config.instructions,
            "voice": config.voice,
            "modalities": ["text", "audio"],
            "input_audio_format": PCMU_FORMAT,
            "output_audio_format": PCMU_FORMAT,
            "input_audio_transcription": {"model": config.transcription_model},
            "turn_detection": base.server_vad(config),
            **base.tools_of(config),
        }
