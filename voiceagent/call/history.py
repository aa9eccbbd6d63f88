"""What was said in the call, kept for a session that replaces another mid-call (its instructions carry the
conversation so far). Bounded: the latest lines within a character budget, so that an hour-long call
neither holds every word in memory nor sends the model instructions longer than it accepts."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from voiceagent.transcripts import TranscriptLine

__all__ = ["History"]


class History:
    def __init__(self, budget_chars: int) -> None:
        self._budget = budget_chars
        self._lines: deque[TranscriptLine] = deque()
        self._chars = 0
        self.left_out = 0  # earlier lines dropped to stay within the budget

    def add(self, line: TranscriptLine) -> None:
        self._lines.append(line)
        self._chars += len(line.text)
        while self._chars > self._budget and len(self._lines) > 1:
            self._chars -= len(self._lines.popleft().text)
            self.left_out += 1

    def __iter__(self) -> Iterator[TranscriptLine]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)
