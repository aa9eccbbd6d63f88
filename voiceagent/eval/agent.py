"""The agent under test, in process: the real service on a loopback port with a scenario's settings, and
(with no model configured) the bundled fake model following the scenario's rules. One serves every run of
its scenario, at once if asked; what each call did is kept per CallSid (``CallWatch``).

The service's settings are built here from the scenario and the model variables passed in, never from the
process environment. Calls are not recorded in any store: an eval never enters the operator's history.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from voiceagent.eval.scenario import Scenario
from voiceagent.testing.fake_realtime.director import ConfiguredModel, Rule
from voiceagent.testing.speech import Speech
from voiceagent.tools import ToolBox, load_toolbox
from voiceagent.transcripts import TranscriptLine

MODEL_VARIABLES = (
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_API_VERSION",
)
OPENAI_VARIABLES = ("OPENAI_API_KEY", "OPENAI_REALTIME_MODEL", "OPENAI_BASE_URL")
FAKE_MODEL_LEAD = 4.0  # the fake generates this much faster than the caller listens, as real ones do


def model_variables(env: Mapping[str, str]) -> dict[str, str]:
    """The model's variables among ``env`` (empty: no model configured, the fake stands in)."""
    return {name: env[name] for name in (*MODEL_VARIABLES, *OPENAI_VARIABLES) if env.get(name)}


@dataclass
class ToolCallSeen:
    name: str
    arguments: dict[str, Any]
    turn: int  # the caller's turns begun when it was called (0: before the first)
    output: str = ""


@dataclass
class CallWatch:
    """What one call did, as the service saw it."""

    turn: int = 0
    lines: list[tuple[int, TranscriptLine]] = field(default_factory=list)  # (turn, line)
    tools: list[ToolCallSeen] = field(default_factory=list)


class _Sink:
    def __init__(self, watches: dict[str, CallWatch]) -> None:
        self.watches = watches

    def record(self, line: TranscriptLine) -> None:
        watch = self.watches.setdefault(line.call_sid or "", CallWatch())
        watch.lines.append((watch.turn, line))
        if line.role == "tool" and line.text.startswith(("end_call()", "transfer_call()")):
            name, _, rest = line.text.partition("()")
            arguments = {"destination": rest.removeprefix(" to ")} if rest else {}
            watch.tools.append(ToolCallSeen(name, arguments, watch.turn))


class _WatchedTools:
    """The operator's tools, each call noted on its call's watch (the bridge runs a tool in a task named
    ``CallSid:…``)."""

    def __init__(self, box: ToolBox, watches: dict[str, CallWatch]) -> None:
        self._box, self._watches = box, watches

    def __getattr__(self, name: str) -> Any:
        return getattr(self._box, name)

    async def run(self, name: str, arguments: str) -> Any:
        task = asyncio.current_task()
        call_sid = task.get_name().split(":")[0] if task is not None else ""
        watch = self._watches.setdefault(call_sid, CallWatch())
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = {"(not JSON)": arguments}
        seen = ToolCallSeen(name, parsed if isinstance(parsed, dict) else {"(value)": parsed}, watch.turn)
        watch.tools.append(seen)
        result = await self._box.run(name, arguments)
        seen.output = result.output
        return result


@dataclass
class InProcessAgent:
    """See the module docstring. ``director`` is the fake model's (None with a real model)."""

    base_url: str
    auth_token: str
    director: ConfiguredModel | None
    fake: Any  # the FakeRealtimeServer, when the fake stands in
    watches: dict[str, CallWatch]
    speed: float
    app: Any = None


def agent_environment(
    scenario: Scenario, model: Mapping[str, str], auth_token: str, port: int, out: Path
) -> dict[str, str]:
    """The service's settings for ``scenario``: nothing is read from the process environment."""
    agent = scenario.agent
    env = {
        **model,
        "TWILIO_AUTH_TOKEN": auth_token,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "VOICEAGENT_GREETING": agent.greeting,
        "VOICEAGENT_VOICE": agent.voice,
        "VOICEAGENT_MAX_CALL_SECONDS": str(max(1.0, scenario.time_limit_seconds + 30)),
    }
    if agent.prompt_file is not None:
        env["VOICEAGENT_INSTRUCTIONS_FILE"] = str(scenario.resolve(agent.prompt_file))
    elif agent.prompt is not None:
        env["VOICEAGENT_INSTRUCTIONS"] = agent.prompt
    if agent.tools:
        env["VOICEAGENT_TOOLS"] = ",".join(agent.tools)
    if agent.tools_file is not None:
        env["VOICEAGENT_TOOLS_FILE"] = str(scenario.resolve(agent.tools_file))
    if agent.transfer_to:
        env["VOICEAGENT_TRANSFER_TO"] = ",".join(f"{name}={number}" for name, number in agent.transfer_to.items())
    env.update({name: value.replace("{out}", str(out)) for name, value in agent.tool_environment.items()})
    return env


@contextlib.asynccontextmanager
async def serve_scenario(
    scenario: Scenario, model: Mapping[str, str], out: Path, *, speed: float, speech: Speech
) -> AsyncIterator[InProcessAgent]:
    """The service (and, with no ``model``, the fake) for ``scenario``, until the block ends."""
    from voiceagent.app import create_app
    from voiceagent.config import load_settings
    from voiceagent.server import uvicorn_config
    from voiceagent.testing import FakeRealtimeServer
    from voiceagent.testing.serving import loopback_socket, serve_asgi

    for folder in scenario.agent.python_path:  # where the scenario's tool modules are
        if str(scenario.resolve(folder)) not in sys.path:
            sys.path.insert(0, str(scenario.resolve(folder)))
    for name, value in scenario.agent.tool_environment.items():  # tools read their own variables
        os.environ[name] = value.replace("{out}", str(out))
    auth_token, model_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    watches: dict[str, CallWatch] = {}
    async with contextlib.AsyncExitStack() as stack:
        director, fake = None, None
        if not model:
            rules = tuple(Rule(r.when, r.call, dict(r.arguments), r.say) for r in scenario.rules)
            director = ConfiguredModel(rules, speech=speech)
            fake = await stack.enter_async_context(
                FakeRealtimeServer(api_key=model_key, speed=FAKE_MODEL_LEAD * speed, director=director)
            )
            model = {
                "AZURE_OPENAI_ENDPOINT": fake.endpoint,
                "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
                "AZURE_OPENAI_API_KEY": model_key,
            }
        sock = loopback_socket()
        port = sock.getsockname()[1]
        environment = agent_environment(scenario, model, auth_token, port, out)
        environment["VOICEAGENT_CALLER_AUDIO_PACE"] = str(min(100.0, max(1.25, 2 * speed)))
        settings = load_settings(environment)
        box = load_toolbox(
            modules=settings.tool_modules,
            tools_file=settings.tools_file,
            env=settings.environment,
            timeout_seconds=settings.tool_timeout_seconds,
            reserved_names=("end_call", "transfer_call"),
        )
        tools = cast(ToolBox, _WatchedTools(box, watches))
        app = create_app(settings, sink=_Sink(watches), tools=tools, records=None)
        await stack.enter_async_context(serve_asgi(app, config=uvicorn_config(app, settings, lifespan="on"), sock=sock))
        yield InProcessAgent(settings.public_base_url or "", auth_token, director, fake, watches, speed, app)
