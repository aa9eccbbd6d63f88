"""The one response a fake Realtime session may have at a time, and who asked for it.

The real service runs one response at a time (docs/protocol.md §2, "### Responses: one at a time"). A
response is *active* from the moment it is requested — a client's ``response.create``, or the server's
own at the end of a caller turn when ``create_response`` is on — until just before its
``response.done``; ``response.created`` comes ``response_delay_ms`` after the request. A
``response.create`` while one is active is refused with ``conversation_already_has_active_response``
and nothing of it happens (``refused``); with ``refuse_overlap=False`` it is instead held and served
once the active one is done (``held``), for tests of clients that do not yet wait. A caller turn that
ends while a response is active starts none.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from voiceagent.testing.audio import FIXTURE_TEXTS, load_fixture
from voiceagent.testing.fake_realtime.audio import bytes_per_ms, encode_output
from voiceagent.testing.fake_realtime.errors import ClientError
from voiceagent.testing.fake_realtime.outcomes import Outcome, refusal_message
from voiceagent.testing.fake_realtime.response import LiveResponse, Pacing, stream_response
from voiceagent.testing.fake_realtime.script import TurnScript

if TYPE_CHECKING:
    from voiceagent.testing.fake_realtime.session import FakeModelSession


@dataclass(frozen=True, slots=True)
class Refusal:
    """A ``response.create`` the fake refused because a response was active."""

    client_event_id: str | None
    active_response_id: str
    active_origin: str  # request | vad: whose response was in the way
    active_created: bool  # False: it was requested, not yet created (the race window)


@dataclass
class Responder:
    """Starts, stops and counts the session's responses; ``active`` is the one requested or running."""

    session: FakeModelSession
    outcomes: deque[Outcome] = field(default_factory=deque)  # what the next responses do instead of completing
    active: LiveResponse | None = None
    responses: list[LiveResponse] = field(default_factory=list)  # every response, in order
    by_item: dict[str, LiveResponse] = field(default_factory=dict)  # assistant audio item id -> its response
    refused: list[Refusal] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)  # overlapping requests waiting (refuse_overlap=False)
    overlapping_requests: int = 0  # requests made while a response was active, refused or held
    _replies_used: int = 0

    @property
    def created_by_vad(self) -> int:
        """Responses the server created on its own at the end of a caller turn."""
        return sum(1 for live in self.responses if live.origin == "vad")

    @property
    def created_by_request(self) -> int:
        """Responses created for a client's ``response.create``."""
        return sum(1 for live in self.responses if live.origin == "request")

    def request(self, client_event: dict[str, Any]) -> None:
        """A client's ``response.create``: start it, or refuse (or hold) it if a response is active."""
        active = self.active
        if active is None:
            self._start("request", client_event)
            return
        self.overlapping_requests += 1
        if not self.session.options.refuse_overlap:
            self.held.append(client_event)
            return
        refusal = Refusal(client_event.get("event_id"), active.response_id, active.origin, active.created)
        self.refused.append(refusal)
        raise ClientError("conversation_already_has_active_response", refusal_message(active.response_id))

    def caller_turn_ended(self) -> None:
        """The server's own response to a caller turn (``create_response``), unless one is active."""
        if self.active is None:
            self._start("vad")

    def finished(self, live: LiveResponse) -> None:
        """``live`` is over (just before its ``response.done``): a held request may start now."""
        if self.active is not live:
            return
        self.active = None
        if self.held:
            self._start("request", self.held.pop(0))

    async def stop(self, reason: str) -> None:
        """Stop the active response (even one not yet created) and wait until its ``response.done``."""
        live = self.active
        if live is None:
            return
        live.request_stop(reason)
        if live.task is not None:
            await live.task

    def _start(self, origin: str, request: dict[str, Any] | None = None) -> None:
        session = self.session
        director = session.options.director
        plan = director.plan(session, request) if director is not None else None
        script = self._script() if plan is None else None
        fixture = script.say if script is not None else self._next_fixture() if plan is None else None
        if plan is not None and plan.text is not None:
            fixture = "(configured)"  # the director's words, not a recording's
        audio_format = session.spec.output_format(session.effective)
        speaks = fixture is not None and not session.answers_in_text
        ulaw = plan.audio if plan is not None else load_fixture(fixture) if fixture is not None else b""
        audio = encode_output(ulaw, audio_format) if speaks else b""
        live = LiveResponse(
            response_id=session.new_id("resp"),
            item_id=session.new_id("item"),
            fixture=fixture,
            text=(plan.text or "") if plan is not None else FIXTURE_TEXTS[fixture] if fixture else "",
            audio=audio,
            bytes_per_ms=bytes_per_ms(audio_format),
            spec=session.spec,
            config=session.effective,
            in_text=session.answers_in_text,
            calls=plan.calls if plan is not None else script.calls if script is not None else (),
            origin=origin,
            outcome=self.outcomes.popleft() if self.outcomes else None,
        )
        self.responses.append(live)
        if fixture is not None and not live.in_text:
            session.produced[live.item_id] = live.produced
        self.by_item[live.item_id] = live
        self.active = live
        options = session.options
        pacing = Pacing(
            options.delta_ms,
            options.speed,
            session.rng,
            created_ms=options.response_delay_ms,
            rate_limits_ms=options.rate_limits_delay_ms,
            argument_delta_ms=options.argument_delta_ms,
        )
        live.task = session.spawn(stream_response(live, session, session.conversation_state, pacing))

    def _script(self) -> TurnScript | None:
        """The scripted answer to the caller's last turn, if this response answers one that has a script."""
        items = self.session.conversation
        last = items[-1] if items else None
        heard = self.session.heard.get(last["id"], []) if last is not None and last.get("role") == "user" else []
        scripts = self.session.options.function_calls
        return next((scripts[name] for name in heard if name in scripts), None)

    def _next_fixture(self) -> str:
        options = self.session.options
        has_user_item = any(item.get("role") == "user" for item in self.session.conversation)
        if (len(self.responses) == 0 and not has_user_item) or not options.replies:
            return options.greeting
        fixture = options.replies[self._replies_used % len(options.replies)]
        self._replies_used += 1
        return fixture
