"""Wrong bearer tokens, per client: logged without flooding, and a guesser slowed to a stop.

Every wrong or missing token on ``/api`` or ``/metrics`` counts against the client's address. The first
of a minute is logged (``api_auth_failed``, with the count of the minute before); a client that gets it
wrong ``LIMIT`` times within ``WINDOW_SECONDS`` is answered 429 for the rest of that window, even with the
right token, so guessing costs a minute per ``LIMIT`` tries. The token itself is never logged.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from voiceagent.logs import CallLog

__all__ = ["FailedLogins"]

LIMIT = 20
WINDOW_SECONDS = 60.0
MAX_CLIENTS = 10_000


class FailedLogins:
    def __init__(
        self, *, limit: int = LIMIT, window: float = WINDOW_SECONDS, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._limit, self._window, self._now = limit, window, now
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._log = CallLog()

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            failures = self._failures[client] = deque()
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
        cutoff = self._now() - self._window
        while failures and failures[0] <= cutoff:
            failures.popleft()
        self._failures.move_to_end(client)
        return failures

    def blocked(self, client: str) -> bool:
        """Too many wrong tokens from ``client`` in the last window: answer 429 whatever it sends now."""
        return client in self._failures and len(self._recent(client)) >= self._limit

    def failed(self, client: str, path: str) -> None:
        """A wrong or missing token from ``client``: counted, and logged once per window per client."""
        failures = self._recent(client)
        if not failures:
            self._log.warning("api_auth_failed", client=client, path=path, limit=self._limit)
        elif len(failures) + 1 == self._limit:
            self._log.warning("api_auth_blocked", client=client, path=path, seconds=self._window)
        failures.append(self._now())
