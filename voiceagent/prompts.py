"""What the agent is asked to say at the edges of a call: the greeting and the goodbye."""

from __future__ import annotations


def greeting_instructions(greeting: str) -> str:
    return f"Greet the caller by saying exactly this, and nothing else: {greeting}"


def goodbye_instructions(reason: str) -> str:
    return (
        f"The call is ending now ({reason}). Say a short, friendly goodbye in one sentence and do not ask any question."
    )
