"""The caller model of a persona scenario: where its Realtime session goes. The client code
(``caller.play_persona``, the service's own ``ModelConnection``) is the same either way; only the
endpoint differs."""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from voiceagent.eval.agent import FAKE_MODEL_LEAD
from voiceagent.eval.scenario import Scenario
from voiceagent.eval.voices import model_target
from voiceagent.realtime.target import ModelTarget
from voiceagent.testing.fake_realtime.persona import PersonaCaller
from voiceagent.testing.fake_realtime.server import FakeRealtimeServer
from voiceagent.testing.speech import Speech

__all__ = ["CallerModel"]


class CallerModel:
    """``async with CallerModel(...) as target``: the configured model (a second session on it), or with
    none configured the fake caller model (``fake``: a ``FakeRealtimeServer`` with a ``PersonaCaller``)
    saying the persona's ``fake_lines``, ahead of the call as a real model is."""

    def __init__(self, scenario: Scenario, model: Mapping[str, str], speed: float, speech: Speech) -> None:
        self.scenario, self.model, self.speed, self.speech = scenario, model, speed, speech
        self.fake: FakeRealtimeServer | None = None

    async def __aenter__(self) -> ModelTarget:
        configured = model_target(self.model)
        if configured is not None:
            return configured
        persona = self.scenario.caller.persona
        assert persona is not None
        key = secrets.token_urlsafe(24)
        director = PersonaCaller(tuple(persona.fake_lines), speech=self.speech)
        self.fake = FakeRealtimeServer(api_key=key, speed=FAKE_MODEL_LEAD * self.speed, director=director)
        await self.fake.start()
        return ModelTarget("azure", self.fake.endpoint, "gpt-realtime", key)

    async def __aexit__(self, *exc: object) -> None:
        if self.fake is not None:
            await self.fake.stop()
