"""The model link: which model session the call uses, how it gets one, and when it replaces it.

It owns the model phase (moves checked against ``MODEL_MOVES``), the session number, the connect attempts
(each ``ConnectModel`` carries an id that the driver's reply must name), the back-off between failed
attempts, and the recycle that replaces a healthy session before the server's cap. Time is an argument.
"""

from __future__ import annotations

from dataclasses import replace

from voiceagent.call.actions import Action, ConnectModel, ConnectPurpose, Log, SendToModel
from voiceagent.call.guards import ConnectPolicy, WarningLimiter
from voiceagent.call.observations import ConnectFailed
from voiceagent.call.options import CallOptions
from voiceagent.call.phases import MODEL_MOVES, CallCoreError, ModelPhase, checked_move
from voiceagent.realtime import events as ev

__all__ = ["ModelLink"]


class ModelLink:
    def __init__(self, options: CallOptions, *, seed: str, warnings: WarningLimiter) -> None:
        self.phase = ModelPhase.CONNECTING  # read on the hot path: a plain attribute, set only by ``_enter``
        self.session = 0  # sessions opened so far; the current one's number
        self.session_config = options.session  # what the current session was asked for
        self.recycle_at: float | None = None
        self.pending: ConnectPurpose | None = None  # the purpose of the connect under way, or awaited
        self._options = options
        self._warnings = warnings
        self._connects = ConnectPolicy(
            attempts=options.connect_attempts,
            first_delay=options.retry_delay_seconds,
            per_minute=options.max_connects_per_minute,
            seed=seed,
        )
        self._attempts = 0  # ``ConnectModel`` actions so far: the last one's id
        self._attempt: int | None = None  # the id of the one under way
        self._retry_at: float | None = None
        self._configuring_since: float | None = None
        self._connected_at: float | None = None

    def _enter(self, phase: ModelPhase) -> None:
        self.phase = checked_move(MODEL_MOVES, self.phase, phase)

    @property
    def ready(self) -> bool:
        return self.phase is ModelPhase.READY

    # ------------------------------------------------------------ connecting

    def connect(self, purpose: ConnectPurpose, now: float) -> list[Action]:
        """Start a connect, or wait for the per-minute budget (a recycle just waits for a later moment)."""
        self.pending = purpose
        wait_until = self._connects.next_allowed(now)
        if wait_until is not None:
            if purpose is ConnectPurpose.RECYCLE:
                self.pending, self.recycle_at = None, wait_until
                return []
            self._enter(ModelPhase.RETRY_WAIT)
            self._retry_at = wait_until
            return self._warnings.warning("model_connects_rate_limited", {"per_minute": self._connects.per_minute})
        if purpose is not ConnectPurpose.RECYCLE:
            self._enter(ModelPhase.CONNECTING)
        self._attempts += 1
        self._attempt = self._attempts
        return [ConnectModel(self._attempt, purpose)]

    def answered(self, attempt: int) -> ConnectPurpose:
        """The driver answers connect ``attempt``: its purpose now. An attempt that is not under way (never
        made, answered already) is a driver bug: ``CallCoreError``."""
        if attempt != self._attempt or self.pending is None:
            raise CallCoreError(f"connect attempt {attempt} is not under way (under way: {self._attempt})")
        purpose, self.pending, self._attempt = self.pending, None, None
        return purpose

    def opened(self, instructions: str, now: float) -> list[Action]:
        """A new session is taken into use: configure it (``instructions``: the prompt and what was said)."""
        self.session += 1
        self._enter(ModelPhase.CONFIGURING)
        self._configuring_since = self._connected_at = now
        if self._options.recycle_seconds is not None:
            self.recycle_at = now + self._options.recycle_seconds
        self.session_config = replace(self._options.session, instructions=instructions)
        return [SendToModel(ev.UpdateSession(self.session_config))]

    def confirmed(self) -> bool:
        """The session confirmed μ-law both ways; False if it was not waiting for that."""
        if self.phase is not ModelPhase.CONFIGURING:
            return False
        self._enter(ModelPhase.READY)
        self._configuring_since = None
        return True

    def failed(self, purpose: ConnectPurpose, error: str, now: float) -> tuple[ConnectFailed, bool]:
        """A connect that failed, or a session that died young: back off exponentially, with jitter.
        Returns the fact and whether to give up (after ``connect_attempts`` in a row)."""
        retry_at = self._connects.failed(now)
        fact = ConnectFailed(self._connects.failures, self._connects.attempts, error)
        if retry_at is None:
            return fact, True
        self._enter(ModelPhase.RETRY_WAIT)
        self.pending, self._retry_at = purpose, retry_at
        return fact, False

    def lost(self, now: float) -> tuple[bool, float]:
        """The current session closed: (whether it was never confirmed, how long it lived)."""
        unconfirmed = self.phase is not ModelPhase.READY
        lived = now - (self._connected_at if self._connected_at is not None else now)
        self._enter(ModelPhase.CONNECTING)
        if self.pending is not None:  # a recycle is already connecting: it becomes the replacement
            self.pending = ConnectPurpose.RECONNECT
        return unconfirmed, lived

    def lived_long(self) -> None:
        """The lost session lived a healthy while: the next failure starts the count afresh."""
        self._connects.lived()

    # ------------------------------------------------------------ recycling

    def recycle_deferred(self, now: float) -> list[Action]:
        self.recycle_at = now  # again at the next quiet moment
        return [Log("info", "model_recycle_deferred", {"session": self.session})]

    def recycle_failed(self, error: str, now: float) -> list[Action]:
        if self._options.recycle_seconds is not None:
            self.recycle_at = now + self._options.recycle_seconds  # the current session is fine: later
        return [Log("warning", "model_recycle_failed", {"error": error})]

    def recycle(self, now: float) -> list[Action]:
        self.recycle_at = None
        return self.connect(ConnectPurpose.RECYCLE, now)

    # ------------------------------------------------------------ deadlines

    def deadline(self) -> float | None:
        """The retry's, or the session's confirmation's. (The recycle's, ``recycle_at``, counts only at a quiet
        moment, which the core knows.)"""
        if self.phase is ModelPhase.RETRY_WAIT:
            return self._retry_at
        if self.phase is ModelPhase.CONFIGURING and self._configuring_since is not None:
            return self._configuring_since + self._options.session_ready_seconds
        return None

    def unconfirmed_by(self, now: float) -> bool:
        due = self._configuring_since
        ready_s = self._options.session_ready_seconds
        return self.phase is ModelPhase.CONFIGURING and due is not None and now >= due + ready_s

    def retry_if_due(self, now: float) -> list[Action]:
        if self.phase is not ModelPhase.RETRY_WAIT or self._retry_at is None or now < self._retry_at:
            return []
        if self.pending is None:
            raise CallCoreError("a retry is due with no connect awaited")
        self._retry_at = None
        return self.connect(self.pending, now)
