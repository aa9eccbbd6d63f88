"""HTTP tools against hostile backends and a model that is not trusted: a secret never comes back out in
any encoding, arguments cannot override what the operator fixed, and broken text is made valid."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from voiceagent.testing import serve_asgi
from voiceagent.tools import ToolBox, ToolConfigError, load_toolbox

SECRET = "sk/live+Key=0123456789abcdef"  # '/' and '+' and '=' make every encoding of it differ
ENV = {"BACKEND_KEY": SECRET}
on_the_module_loop = pytest.mark.asyncio(loop_scope="module")


class Backend:
    """What reached it, and answers a careless or hostile backend gives."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def record(self, request: Request) -> None:
        body = await request.body()
        self.requests.append({"query": list(request.query_params.multi_items()), "body": body or None})

    async def echo_key_escaped(self, request: Request) -> Response:
        """The key in every form an echoing backend may give it back in."""
        await self.record(request)
        key = request.headers["x-api-key"]
        php_style = json.dumps(key).replace("/", "\\/")  # PHP's json_encode escapes slashes by default
        every_unicode = '"' + "".join(f"\\u{ord(c):04x}" for c in key) + '"'
        body = (
            f'{{"php": {php_style}, "unicode": {every_unicode}, "url": "{quote(key, safe="")}", '
            f'"form": "{quote_plus(key)}", "basic": "{base64.b64encode(key.encode()).decode()}"}}'
        )
        return Response(body, media_type="application/json")

    async def echo(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"ok": True})

    async def lone_surrogate(self, request: Request) -> Response:
        await self.record(request)  # a JavaScript backend that cut a string inside an emoji
        return Response('{"result": "Table for caf\\ud83d, see you"}', media_type="application/json")

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/escaped", self.echo_key_escaped, methods=["GET", "POST"]),
                Route("/echo", self.echo, methods=["GET", "POST"]),
                Route("/surrogate", self.lone_surrogate, methods=["GET", "POST"]),
            ]
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend() -> AsyncIterator[tuple[Backend, str]]:
    state = Backend()
    async with serve_asgi(state.app()) as base_url:
        yield state, base_url


def tools_file(tmp_path: Path, *entries: dict[str, Any]) -> str:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps({"tools": list(entries)}), encoding="utf-8")
    return str(path)


def entry(url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "lookup",
        "description": "Look a booking up.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        "url": url,
        "method": "POST",
        "headers": {"X-Api-Key": "${BACKEND_KEY}"},
    } | overrides


async def run(tmp_path: Path, tool: dict[str, Any], arguments: str) -> tuple[ToolBox, Any]:
    box = load_toolbox(tools_file=tools_file(tmp_path, tool), env=ENV, timeout_seconds=30)
    try:
        return box, await box.run(tool["name"], arguments)
    finally:
        await box.aclose()


@on_the_module_loop
async def test_a_backend_echoing_its_key_in_any_encoding_gets_it_redacted(
    backend: tuple[Backend, str], tmp_path: Path
) -> None:
    _, base_url = backend
    box, result = await run(tmp_path, entry(f"{base_url}/escaped"), '{"q": "x"}')
    assert result.ok, result
    answer = json.loads(result.output)
    assert set(answer) == {"php", "unicode", "url", "form", "basic"}
    assert set(answer.values()) == {"[redacted]"}, answer
    decoded = json.dumps(answer) + result.output
    for form in (SECRET, quote(SECRET, safe=""), quote_plus(SECRET), base64.b64encode(SECRET.encode()).decode()):
        assert form not in decoded
    assert SECRET in box.secrets()  # and the log scrubber is given it


@on_the_module_loop
async def test_arguments_cannot_override_the_urls_fixed_parameters(
    backend: tuple[Backend, str], tmp_path: Path
) -> None:
    state, base_url = backend
    state.requests.clear()
    tool = entry(f"{base_url}/echo?account=42&key=${{BACKEND_KEY}}", method="GET")
    _, result = await run(tmp_path, tool, '{"q": "x", "account": "999", "key": "attacker"}')
    assert not result.ok
    assert "account, key are fixed by the operator" in json.loads(result.output)["error"]
    assert state.requests == []  # nothing was sent

    _, result = await run(tmp_path, tool, '{"q": "tables"}')
    assert result.ok, result
    query = dict(state.requests[-1]["query"])
    assert query["account"] == "42" and query["key"] != "attacker" and query["q"] == "tables"


@on_the_module_loop
async def test_arguments_the_schema_does_not_declare_are_refused(backend: tuple[Backend, str], tmp_path: Path) -> None:
    state, base_url = backend
    state.requests.clear()
    box, result = await run(tmp_path, entry(f"{base_url}/echo"), '{"q": "x", "is_admin": true}')
    assert not result.ok and "is_admin" in result.output
    assert state.requests == []
    assert box.specs[0].parameters["additionalProperties"] is False  # the model is told so too

    opened = entry(f"{base_url}/echo", parameters={"type": "object", "additionalProperties": True})
    _, result = await run(tmp_path, opened, '{"anything": 1}')  # an operator who asks for it gets it
    assert result.ok and json.loads(state.requests[-1]["body"]) == {"anything": 1}


def test_a_parameter_that_the_url_fixes_is_a_configuration_error(tmp_path: Path) -> None:
    tool = entry("https://bookings.example.com/find?q=fixed", method="GET")
    with pytest.raises(ToolConfigError, match=r"\['q'\] are fixed in the URL and cannot be parameters too"):
        load_toolbox(tools_file=tools_file(tmp_path, tool), env=ENV)


@on_the_module_loop
async def test_a_lone_surrogate_in_an_answer_is_made_valid_text(backend: tuple[Backend, str], tmp_path: Path) -> None:
    _, base_url = backend
    _, result = await run(tmp_path, entry(f"{base_url}/surrogate"), '{"q": "x"}')
    assert result.ok
    result.output.encode("utf-8")  # would raise UnicodeEncodeError on the lone surrogate
    assert json.loads(result.output) == {"result": "Table for caf\ufffd, see you"}


def test_a_secret_over_plain_http_to_another_host_is_warned_about(tmp_path: Path) -> None:
    remote = entry("http://bookings.example.com/find", name="remote")
    local = entry("http://127.0.0.1:9/find", name="local")
    tls = entry("https://bookings.example.com/find", name="tls")
    box = load_toolbox(tools_file=tools_file(tmp_path, remote, local, tls), env=ENV)
    assert box.warnings() == [
        ("tool_secrets_in_clear", "tool 'remote' sends a secret over plain http:// to another host: use https://")
    ]
