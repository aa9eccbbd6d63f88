"""What the agent is asked at the edges of a call: the greeting, the goodbye, and the conversation so far.

Response-level ``instructions`` *replace* the session's for that response (docs/protocol.md §2, "Known
traps"), so each of these carries the operator's prompt too: persona and language hold for the first
and the last thing the caller hears.
"""

from __future__ import annotations

from collections.abc import Iterable

from voiceagent.transcripts import TranscriptLine

__all__ = ["closing_words_instructions", "conversation_so_far", "goodbye_instructions", "greeting_instructions"]

_SPEAKERS = {"caller": "Caller", "agent": "You", "tool": "Tool result", "operator": "Operator's note"}


def greeting_instructions(prompt: str, greeting: str) -> str:
    return f"{prompt}\n\nGreet the caller by saying exactly this, and nothing else: {greeting}"


def goodbye_instructions(prompt: str, reason: str) -> str:
    return (
        f"{prompt}\n\nThe call is ending now ({reason}). "
        "Say a short, friendly goodbye in one sentence and do not ask any question."
    )


def closing_words_instructions(prompt: str, *, transfer: bool) -> str:
    """The agent hung up or transferred (``transfer``) without a word: the line the caller must still hear."""
    if transfer:
        line = "Tell the caller in one short sentence that you are putting them through to a colleague now."
    else:
        line = "Say a short, friendly goodbye in one sentence and do not ask any question."
    return f"{prompt}\n\nYou are ending this call now. {line}"


def conversation_so_far(prompt: str, lines: Iterable[TranscriptLine], *, left_out: int = 0) -> str:
    """The session prompt for a session that replaces another mid-call (``left_out``: earlier lines not
    among ``lines``, which a long call drops to keep the instructions bounded).

    The conversation goes in as text in the instructions rather than as replayed items: assistant text
    items in an audio session are known to switch the model to answering in text only (silence for the
    caller), and caller items as text would invite it to answer them again.
    """
    said = "\n".join(f"{_SPEAKERS[line.role]}: {line.text}" for line in lines)
    if not said:
        return prompt
    earlier = f"(The first {left_out} lines of the conversation are left out.)\n" if left_out else ""
    return (
        f"{prompt}\n\n# The conversation so far\n"
        "This phone call is already under way; the connection to you was renewed. Carry on from where it "
        "stopped, speaking as before. Do not greet the caller again and do not repeat yourself.\n\n"
        f"{earlier}{said}"
    )
