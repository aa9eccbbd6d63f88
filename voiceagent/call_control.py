"""The agent's built-in call control, declared to the model like any tool: ``end_call`` and
``transfer_call``. The core carries them out itself (voiceagent/call/core.py): the closing words are heard
in full, then the stream ends and the ``<Connect action>`` answer hangs up or dials the destination."""

from __future__ import annotations

from voiceagent.call.agent_tools import END_CALL, TRANSFER_CALL
from voiceagent.realtime.events import ToolSpec

__all__ = ["builtin_tools"]


def builtin_tools(*, end_call: bool, transfer_to: dict[str, str]) -> tuple[ToolSpec, ...]:
    specs: list[ToolSpec] = []
    if end_call:
        specs.append(
            ToolSpec(
                END_CALL,
                "Hang up the call. Say a short goodbye first, in the same response; "
                "call this only when the caller is done or asked to end the call.",
                {"type": "object", "properties": {}, "additionalProperties": False},
            )
        )
    if transfer_to:
        named = [name for name in transfer_to if name]
        properties = {"destination": {"type": "string", "enum": named}} if named else {}
        specs.append(
            ToolSpec(
                TRANSFER_CALL,
                "Transfer the caller to a person. Tell the caller you are transferring them first, "
                "in the same response." + (f" Destinations: {', '.join(named)}." if named else ""),
                {
                    "type": "object",
                    "properties": properties,
                    "required": ["destination"] if named else [],
                    "additionalProperties": False,
                },
            )
        )
    return tuple(specs)
