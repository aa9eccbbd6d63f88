"""A call resumed on this instance after its own died: the conversation so far from the store, in the new
session's instructions (as a reconnect within one process does), and one short line to the caller."""

from __future__ import annotations

from dataclasses import replace

from voiceagent.call import CallOptions
from voiceagent.prompts import conversation_so_far
from voiceagent.store.records import LineRecord
from voiceagent.store.store import CallStore
from voiceagent.transcripts import TranscriptLine

__all__ = ["RESUME_PARAMETER", "resumed_options"]

RESUME_PARAMETER = "resume"  # the <Parameter> a resumed stream carries ("1")
MAX_HISTORY_CHARS = 16_000  # as CallOptions.history_chars: the latest lines within this budget


async def resumed_options(
    options: CallOptions, store: CallStore | None, call_sid: str, resume_line: str
) -> tuple[CallOptions, list[LineRecord]]:
    """The options of the resumed call, and the lines it had (so that its record goes on numbering them)."""
    lines = [] if store is None else await store.read(store.transcript, call_sid)
    kept: list[LineRecord] = []
    chars = 0
    for line in reversed(lines):
        chars += len(line.text)
        if chars > MAX_HISTORY_CHARS and kept:
            break
        kept.append(line)
    kept.reverse()
    said = [TranscriptLine(call_sid, line.role, line.text) for line in kept if line.role in ("caller", "agent", "tool")]
    instructions = conversation_so_far(options.session.instructions, said, left_out=len(lines) - len(kept))
    return replace(options, session=replace(options.session, instructions=instructions), greeting=resume_line), lines
