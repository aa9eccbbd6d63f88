"""A faithful fake of the Azure OpenAI / OpenAI Realtime API, for end-to-end tests of voice agents.

It speaks both wire dialects (GA and the legacy preview, chosen by the URL), checks every client
event against the ``openai`` package's types, hears speech by its energy (server VAD), recognises the
bundled caller fixtures, answers with the bundled agent fixtures in paced audio deltas of uneven sizes,
and applies the truncate rule exactly as the real service does::

    async with FakeRealtimeServer() as fake:
        settings = ...(AZURE_OPENAI_ENDPOINT=fake.endpoint, AZURE_OPENAI_API_KEY="test-key")
        ... run a call ...
        await fake.wait_for(lambda: fake.sessions and fake.sessions[0].truncations)
        assert fake.violations == []

Defaults follow the real service: a new session uses PCM 24 kHz audio both ways and ``server_vad``
turn detection (threshold 0.5, prefix 300 ms, silence 200 ms, create and interrupt responses) until a
``session.update`` says otherwise. The VAD ignores ``threshold`` and uses ``speech_dbfs`` instead, and
while the client leaves ``silence_duration_ms`` to the service it waits ``heard_silence_ms`` (500) for
the end of a turn, not 200 ms: the bundled caller fixtures pause up to 340 ms mid-sentence
(``heard_silence_ms=None``: split them, as the real service would).

The real service's rules for responses (docs/protocol.md §2, "### Responses: one at a time"):

* one response at a time: a ``response.create`` while one is requested or in progress is refused with
  ``conversation_already_has_active_response`` (``refusals``; ``refuse_overlap=False`` holds it until
  the active one is done instead); the server creates its own after a caller turn (``create_response``);
* ``response_delay_ms`` (150) from the request, or the end of the turn, to ``response.created``;
  ``rate_limits_delay_ms`` (40) from ``response.done`` to ``rate_limits.updated``; ``argument_delta_ms``
  (50) between pieces of a function call's arguments; all in the real service's ms, divided by ``speed``;
* ``outcomes``: each new session's first responses fail or end incomplete (``outcomes.Failed``,
  ``outcomes.Incomplete``); ``session.outcomes`` is the live queue of one session;
* ``forbid_refusals``: ``stop()`` fails (``AssertionError``) if any request was refused; its default is
  the class attribute ``forbid_refusals_by_default`` (a conftest can switch it on for a whole suite).

How the real services misbehave, on request (docs/protocol.md §2):

* ``connect_delay``: seconds each handshake takes before it is accepted (the real one: hundreds of ms).
* ``delta_ms``: audio delta lengths, fixed (``100``) or drawn in a range (``(40, 240)``, the default;
  ``seed`` makes the draw repeatable); ``speed``: how much faster than real time they are sent.
* ``voices``: the voices the deployment offers; a ``session.update`` naming another is refused with the
  real error (its ``error.event_id`` names the update) and the session stays as it was (PCM 24 kHz).
* ``confirm_session=False``: ``session.update`` is never answered with ``session.updated``.
* ``fail_transcription``: caller turns get ``conversation.item.input_audio_transcription.failed``.
* ``text_after_assistant_text``: once assistant text items are created in a session, it answers in text
  only (``response.output_text.*`` on GA, ``response.text.*`` on preview), never in audio.
* ``function_calls``: function calls scripted per caller fixture (see ``script``); the outputs a client
  sends back are in ``session.function_outputs``, the calls made in ``session.function_calls``.
* ``director``: a ``director.ConfiguredModel`` that follows the operator's configuration (greeting, ``say``
  text, tool rules) instead of the recordings above; or a ``persona.PersonaCaller``, the fake *caller*
  model of an eval run: it answers each turn it hears (server VAD) with the persona's next line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import ClassVar, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from voiceagent.testing.audio import FIXTURE_TEXTS
from voiceagent.testing.fake_realtime.director import Director
from voiceagent.testing.fake_realtime.handshake import Rejection, Target, check_auth, parse_target
from voiceagent.testing.fake_realtime.options import SessionOptions
from voiceagent.testing.fake_realtime.outcomes import Outcome
from voiceagent.testing.fake_realtime.responder import Refusal
from voiceagent.testing.fake_realtime.script import DeltaMs, Step, delta_range, parse_scripts
from voiceagent.testing.fake_realtime.session import FakeModelSession
from voiceagent.testing.waiting import wait_until

T = TypeVar("T")

MAX_MESSAGE_BYTES = 16 * 2**20  # the real service accepts events up to 15 MiB


class FakeRealtimeServer:
    """A Realtime API on 127.0.0.1 (ephemeral port). See the module docstring."""

    forbid_refusals_by_default: ClassVar[bool] = False

    def __init__(
        self,
        *,
        api_key: str | None = "test-key",
        bearer_tokens: Iterable[str] = (),
        delta_ms: DeltaMs = (40, 240),
        chunk_ms: int | None = None,
        seed: int = 0,
        speed: float = 4.0,
        greeting: str = "agent_greeting",
        replies: Sequence[str] = ("agent_reply_long", "agent_goodbye"),
        speech_dbfs: float = -38.0,
        ignore_audio_format: bool = False,
        session_max_seconds: float | None = None,
        refuse_next: int = 0,
        connect_delay: float = 0.0,
        voices: Iterable[str] | None = None,
        confirm_session: bool = True,
        fail_transcription: bool = False,
        text_after_assistant_text: bool = False,
        function_calls: Mapping[str, Sequence[Step]] | None = None,
        response_delay_ms: float = 150.0,
        rate_limits_delay_ms: float = 40.0,
        argument_delta_ms: float = 50.0,
        heard_silence_ms: int | None = 500,
        refuse_overlap: bool = True,
        outcomes: Iterable[Outcome] = (),
        forbid_refusals: bool | None = None,
        director: Director | None = None,
    ) -> None:
        """See the module docstring. ``chunk_ms``: the older name of a fixed ``delta_ms``."""
        for name in (greeting, *replies):
            if name not in FIXTURE_TEXTS:
                raise ValueError(f"unknown fixture {name!r}; have {sorted(FIXTURE_TEXTS)}")
        if speed <= 0 or min(connect_delay, response_delay_ms, rate_limits_delay_ms, argument_delta_ms) < 0:
            raise ValueError("speed must be positive, and connect_delay and the *_ms delays not negative")
        offered = tuple(voices) if voices is not None else None
        if offered == ():
            raise ValueError("voices: a deployment offers at least one voice")
        self.api_key = api_key
        self.bearer_tokens = frozenset(bearer_tokens)
        self.options = SessionOptions(
            delta_ms=delta_range(chunk_ms if chunk_ms is not None else delta_ms),
            speed=speed,
            greeting=greeting,
            replies=tuple(replies),
            speech_dbfs=speech_dbfs,
            ignore_audio_format=ignore_audio_format,
            session_max_seconds=session_max_seconds,
            seed=seed,
            voices=offered,
            confirm_session=confirm_session,
            fail_transcription=fail_transcription,
            text_after_assistant_text=text_after_assistant_text,
            function_calls=parse_scripts(function_calls),
            response_delay_ms=response_delay_ms,
            rate_limits_delay_ms=rate_limits_delay_ms,
            argument_delta_ms=argument_delta_ms,
            heard_silence_ms=heard_silence_ms,
            refuse_overlap=refuse_overlap,
            outcomes=tuple(outcomes),
            director=director,
        )
        self.forbid_refusals = self.forbid_refusals_by_default if forbid_refusals is None else forbid_refusals
        self.refuse_next = refuse_next
        self.connect_delay = connect_delay
        self.port = 0
        self.connection_attempts = 0  # every handshake, accepted or refused
        self.rejections: list[Rejection] = []  # refused handshakes (not violations)
        self.sessions: list[FakeModelSession] = []  # accepted connections, in order
        self._server: Server | None = None

    @property
    def endpoint(self) -> str:
        """What ``AZURE_OPENAI_ENDPOINT`` should be set to."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def violations(self) -> list[str]:
        """Every session's protocol violations, prefixed by the session's index."""
        return [f"session {i}: {problem}" for i, session in enumerate(self.sessions) for problem in session.violations]

    @property
    def self_violations(self) -> list[str]:
        """Events the fake itself sent that fail validation (a bug in the fake)."""
        return [f"session {i}: {p}" for i, session in enumerate(self.sessions) for p in session.self_violations]

    @property
    def refusals(self) -> list[tuple[int, Refusal]]:
        """Every ``response.create`` refused because a response was active, with its session's index."""
        return [(i, refusal) for i, session in enumerate(self.sessions) for refusal in session.refused_responses]

    def assert_no_refusals(self) -> None:
        """Fail, naming them, if any request was refused (a client that does not wait for ``response.done``)."""
        if self.refusals:
            listed = "; ".join(
                f"session {i}: {r.client_event_id} refused, {r.active_origin} response {r.active_response_id} "
                + ("in progress" if r.active_created else "requested, not yet created")
                for i, r in self.refusals
            )
            raise AssertionError(f"{len(self.refusals)} overlapping response.create refused: {listed}")

    async def start(self) -> None:
        self._server = await serve(
            self._serve_session,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            max_size=MAX_MESSAGE_BYTES,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for session in self.sessions:
            await session.shutdown()
        await server.wait_closed()
        if self.forbid_refusals:
            self.assert_no_refusals()

    async def __aenter__(self) -> FakeRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """``wait_until(predicate, timeout)``, naming the sessions' recent events if it times out."""
        return await wait_until(predicate, timeout, describe=self._recent_events)

    def _recent_events(self) -> str:
        lines = [f"{len(self.sessions)} session(s), {self.connection_attempts} handshake(s)"]
        for index, session in enumerate(self.sessions[-2:], start=max(0, len(self.sessions) - 2)):
            received = [str(event.get("type")) if isinstance(event, dict) else "?" for event in session.received[-8:]]
            sent = [str(event.get("type")) for event in session.sent[-8:]]
            lines.append(f"session {index}: closed={session.closed} received ...{received} sent ...{sent}")
        return "\n".join(lines)

    async def drop(self, session: FakeModelSession, *, code: int | None = None, reason: str = "") -> None:
        """End a session: ``code=None`` aborts the TCP connection (no close frame); otherwise a close
        frame with ``code`` and ``reason`` (e.g. 1001, "Your session hit the maximum duration of 30 minutes.")."""
        if code is None:
            session.abort()
        else:
            await session.close(code, reason)

    # ------------------------------------------------------------------ handshake

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        self.connection_attempts += 1
        if self.connect_delay > 0:  # the real handshake (TLS, routing, session set-up) takes its time
            await asyncio.sleep(self.connect_delay)
        rejection = self._rejection(request)
        if rejection is None:
            return None
        self.rejections.append(rejection)
        return connection.respond(HTTPStatus(rejection.status), rejection.reason + "\n")

    def _rejection(self, request: Request) -> Rejection | None:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return Rejection(503, "service unavailable (refuse_next)")
        target = parse_target(request.path)
        if isinstance(target, Rejection):
            return target
        return check_auth(request.headers, self.api_key, self.bearer_tokens)

    async def _serve_session(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None  # process_request accepted it
        target = parse_target(request.path)
        assert isinstance(target, Target)
        headers = {name.lower(): value for name, value in request.headers.raw_items()}
        session = FakeModelSession(
            connection,
            dialect=target.dialect,
            model=target.model,
            path=request.path,
            headers=headers,
            options=self.options,
            index=len(self.sessions),
        )
        if target.dialect == "ga" and "openai-beta" in headers:
            session.violations.append(f"GA connection sent OpenAI-Beta: {headers['openai-beta']}")
        self.sessions.append(session)
        await session.run()
