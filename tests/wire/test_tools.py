"""voiceagent.tools: the schemas the model is told, how calls run and fail, the start-up checks, HTTP tools
against a real loopback server, secrets, and the restaurant example."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

import tests.tool_samples as tool_samples
from voiceagent.testing import serve_asgi
from voiceagent.tools import Tool, ToolBox, ToolConfigError, ToolResult, load_toolbox, tool
from voiceagent.tools.base import MAX_OUTPUT_CHARS, REDACTED

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "restaurant"
WAIT = 5.0  # the bound on anything a test waits for
SECRET = "s3cr3t-booking-token-6f1d2a"  # a header value: must never come back out
URL_SECRET = "url-key-93be0c7d4411"  # an API key put into a URL from the environment

on_the_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def samples() -> ToolBox:
    return load_toolbox(modules=["tests.tool_samples"], env={})


def spec_of(box: ToolBox, name: str) -> dict[str, Any]:
    [spec] = [spec for spec in box.specs if spec.name == name]
    return {"name": spec.name, "description": spec.description, "parameters": spec.parameters}


def output_of(result: ToolResult) -> dict[str, Any]:
    parsed = json.loads(result.output)
    assert isinstance(parsed, dict), result.output  # always a JSON object
    return parsed


def keys_anywhere(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in keys_anywhere(value)}
    if isinstance(node, list):
        return {key for item in node for key in keys_anywhere(item)}
    return set()


# ---------------------------------------------------------------- schemas


def test_the_readme_example_becomes_this_exact_tool(samples: ToolBox) -> None:
    assert spec_of(samples, "check_availability") == {
        "name": "check_availability",
        "description": "Check which tables are free tonight for a party of this size around this time.",
        "parameters": {
            "type": "object",
            "properties": {"party_size": {"type": "integer"}, "time": {"type": "string"}},
            "required": ["party_size", "time"],
            "additionalProperties": False,
        },
    }


def test_the_description_is_the_first_paragraph_of_the_docstring(samples: ToolBox) -> None:
    assert spec_of(samples, "book_table")["description"] == "Book a table tonight."
    assert spec_of(samples, "sleep_for")["description"] == "Sleep, then answer."


def test_parameter_descriptions_from_annotated_field_and_args_section(samples: ToolBox) -> None:
    properties = spec_of(samples, "book_table")["parameters"]["properties"]
    assert properties["guest"]["description"] == "Who the table is for."  # Args:
    assert properties["party_size"]["description"] == "How many people, children included."  # Annotated str wins
    assert properties["time"]["description"] == "Tonight, 24-hour HH:MM."  # Annotated Field
    assert properties["occasion"]["description"] == "Anything to celebrate."  # continued on the next line
    assert "description" not in properties["notes"]
    deliver = spec_of(samples, "deliver")["parameters"]["properties"]  # "Arguments:", with "(type)"
    assert deliver["address"]["description"] == "Where to send it."
    assert deliver["express"]["description"] == "Whether to send it today."


def test_parameters_with_defaults_are_optional(samples: ToolBox) -> None:
    parameters = spec_of(samples, "book_table")["parameters"]
    assert parameters["required"] == ["guest", "party_size", "time"]
    assert parameters["properties"]["seating"]["default"] == "inside"
    assert parameters["properties"]["notes"]["default"] is None
    assert spec_of(samples, "wait_for_gate")["parameters"] == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }


def test_literal_and_enum_become_enums(samples: ToolBox) -> None:
    properties = spec_of(samples, "book_table")["parameters"]["properties"]
    assert properties["seating"]["enum"] == ["inside", "terrace"]
    assert properties["occasion"]["enum"] == ["birthday", "business", "none"]


def test_nested_models_and_typed_dicts_are_inlined_objects_without_titles(samples: ToolBox) -> None:
    parameters = spec_of(samples, "book_table")["parameters"]
    guest = parameters["properties"]["guest"]
    assert guest["type"] == "object"
    assert set(guest["properties"]) == {"name", "phone", "title"}  # the property called "title" stays
    assert guest["required"] == ["name"]
    assert guest["properties"]["title"] == {"type": "string", "default": ""}
    address = spec_of(samples, "deliver")["parameters"]["properties"]["address"]
    assert address["properties"] == {"street": {"type": "string"}, "number": {"type": "integer"}}
    assert address["required"] == ["street", "number"]
    for spec in samples.specs:
        keys = keys_anywhere({k: v for k, v in spec.parameters.items() if k != "properties"}) | keys_anywhere(
            [{k: v for k, v in prop.items() if k != "properties"} for prop in spec.parameters["properties"].values()]
        )
        assert "title" not in keys, spec.name
    assert "$defs" not in keys_anywhere(parameters) and "$ref" not in keys_anywhere(parameters)


def test_a_recursive_model_keeps_its_defs(samples: ToolBox) -> None:
    parameters = spec_of(samples, "count_categories")["parameters"]
    assert parameters["properties"]["root"] == {"$ref": "#/$defs/Category"}
    assert "Category" in parameters["$defs"]


def test_every_schema_is_a_valid_json_schema_object(samples: ToolBox) -> None:
    assert len(samples.specs) >= 10
    for spec in samples.specs:
        Draft202012Validator.check_schema(spec.parameters)
        assert spec.parameters["type"] == "object"
        assert spec.parameters["additionalProperties"] is False
        assert isinstance(spec.parameters["required"], list)
    assert "not_a_tool" not in samples.names()


def test_specs_keep_the_order_of_the_module(samples: ToolBox) -> None:
    names = [spec.name for spec in samples.specs]
    assert names[:4] == ["check_availability", "book_table", "deliver", "wait_for_gate"]
    assert [spec.name for spec in load_toolbox(modules=["tests.tool_samples"], env={}).specs] == names


def test_the_decorator_returns_the_function_itself() -> None:
    def double(x: int) -> int:
        """Double."""
        return 2 * x

    assert tool(double) is double
    assert double(4) == 8
    assert tool_samples.shout("ab", 2) == "abab"


# ---------------------------------------------------------------- calls


async def test_arguments_are_coerced_as_pydantic_does_in_lax_mode(samples: ToolBox) -> None:
    result = await samples.run("check_availability", '{"party_size": "2", "time": "19:30"}')
    assert result == ToolResult(output='{"tables":2,"party_size":2,"time":"19:30"}', ok=True)


@pytest.mark.parametrize(
    ("arguments", "told", "logged"),
    [
        ('{"party_size": "two", "time": "19:30"}', "party_size: Input should be a valid integer", "party_size"),
        ('{"party_size": 2}', "time: Field required", "time (missing)"),
        ('{"party_size": 2, "time": "19:30", "hat": 1}', "hat: Extra inputs are not permitted", "? (extra_forbidden)"),
        ('{"party_size": 2, "time": ', "not valid JSON", "not valid JSON"),
        ("[2, 3]", "must be a JSON object", "not a JSON object"),
    ],
)
async def test_bad_arguments_are_an_error_the_model_can_read(
    samples: ToolBox, arguments: str, told: str, logged: str
) -> None:
    result = await samples.run("check_availability", arguments)
    assert not result.ok
    assert told in output_of(result)["error"]
    assert result.error is not None and logged in result.error
    for sent in ("two", "19:30", "hat"):  # what the model sent stays out of the logs
        assert sent not in result.error


async def test_nested_values_arrive_as_their_types_and_answers_become_json(samples: ToolBox) -> None:
    arguments = {"guest": {"name": "Rossi"}, "party_size": 4, "time": "19:30", "seating": "terrace"}
    result = await samples.run("book_table", json.dumps(arguments))
    assert result.ok, result  # the tool itself asserts that guest is a Guest and seating a Seating
    assert output_of(result) == {"booking_id": 7, "day": "2025-01-31", "seating": "terrace"}  # a dataclass


async def test_an_invalid_nested_value_names_where(samples: ToolBox) -> None:
    arguments = {"guest": {"phone": "1"}, "party_size": 4, "time": "19:30", "occasion": "wedding"}
    result = await samples.run("book_table", json.dumps(arguments))
    assert not result.ok
    assert result.error == "invalid arguments: guest.name (missing), occasion (literal_error)"
    assert "Input should be 'birthday', 'business' or 'none'" in output_of(result)["error"]


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("shout", '{"text": "hi", "times": 2}', {"result": "hihi"}),  # a str answer
        ("no_answer", "", {"result": None}),  # empty arguments count as {}
        ("listing", "{}", {"result": [1, 2, 3]}),
        ("odd_value", "{}", {"nan": None, "when": "2025-01-31T19:30:00", "thing": "<unserialisable>"}),
        ("only_positional", '{"party_size": 2, "time": "19:30"}', {"result": "2@19:30"}),
        ("deliver", '{"address": {"street": "Via Roma", "number": "3"}}', {"result": "sent to Via Roma 3"}),
        ("count_categories", '{"root": {"name": "a", "children": [{"name": "b"}]}}', {"result": 2}),
    ],
)
async def test_answers_are_json_objects(samples: ToolBox, name: str, arguments: str, expected: Any) -> None:
    result = await samples.run(name, arguments)
    assert result.ok, result
    assert output_of(result) == expected


async def test_a_long_answer_is_cut_and_says_so(samples: ToolBox) -> None:
    result = await samples.run("shout", json.dumps({"text": 'a"\\', "times": 10_000}))
    assert result.ok
    assert len(result.output) <= MAX_OUTPUT_CHARS
    cut = output_of(result)
    assert "only the first part" in cut["truncated"]
    assert cut["result"].startswith('{"result":"a\\"\\\\a')


async def test_a_sync_tool_runs_in_a_thread_while_the_loop_keeps_going(samples: ToolBox) -> None:
    tool_samples.GATE.clear()
    running = asyncio.create_task(samples.run("wait_for_gate", "{}"))
    ticks = 0
    for _ in range(5):  # the loop turns while the tool blocks its thread...
        await asyncio.sleep(0.01)
        ticks += 1
    assert not running.done()
    tool_samples.GATE.set()  # ...and only the loop can open the gate: a tool on the loop's thread never sees it
    result = await asyncio.wait_for(running, WAIT)
    answer = output_of(result)
    assert ticks == 5
    assert answer["opened"] is True
    assert answer["thread"] != threading.get_ident()


async def test_an_async_tool_is_awaited_on_the_loop(samples: ToolBox) -> None:
    assert output_of(await samples.run("sleep_for", '{"seconds": 0}')) == {"result": "awake"}


@pytest.mark.parametrize("name", ["sleep_for", "hang_until_released"])
async def test_a_tool_that_takes_too_long_is_an_error(name: str) -> None:
    box = load_toolbox(modules=["tests.tool_samples"], env={}, timeout_seconds=0.05)
    tool_samples.RELEASE.clear()
    started = time.monotonic()
    try:
        result = await box.run(name, '{"seconds": 30}' if name == "sleep_for" else "{}")
    finally:
        tool_samples.RELEASE.set()  # the worker thread of a sync tool cannot be stopped, only let go
    assert time.monotonic() - started < 2.0
    assert result == ToolResult(
        output='{"error":"the tool did not answer within 0.05 s"}', ok=False, error="timed out after 0.05 s"
    )


async def test_an_exception_is_an_error_with_its_type_and_a_short_message(samples: ToolBox) -> None:
    result = await samples.run("fail", '{"party_size": 9}')
    assert not result.ok
    message = output_of(result)["error"]
    assert message.startswith("ValueError: no table for 9 people xxx")
    assert len(message) < 400
    assert result.error == "raised ValueError"  # the message may hold what the caller said: not logged


async def test_an_unknown_tool_is_an_error(samples: ToolBox) -> None:
    result = await samples.run("launch_rocket", "{}")
    assert not result.ok
    assert output_of(result) == {"error": "there is no tool named 'launch_rocket'"}


async def test_cancelling_a_run_cancels_the_tool(samples: ToolBox) -> None:
    running = asyncio.create_task(samples.run("sleep_for", '{"seconds": 30}'))
    await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, WAIT)


async def test_a_tool_of_ones_own_goes_in_a_toolbox() -> None:
    from voiceagent.realtime.events import ToolSpec

    class Clock(Tool):
        spec = ToolSpec(name="clock", description="The time.", parameters={"type": "object", "properties": {}})

        async def invoke(self, arguments: str, context: Any) -> ToolResult:
            return ToolResult(output='{"time": "19:30"}', ok=True)

    box = ToolBox([Clock()])
    assert box.names() == frozenset({"clock"})
    assert (await box.run("clock", "{}")).ok
    with pytest.raises(ToolConfigError, match="two tools are named 'clock'"):
        ToolBox([Clock(), Clock()])


# ---------------------------------------------------------------- start-up errors


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def write_module(directory: Path, source: str) -> str:
    name = f"tools_{uuid.uuid4().hex[:12]}"
    (directory / f"{name}.py").write_text("from voiceagent.tools import tool\n" + source, encoding="utf-8")
    return name


@pytest.mark.parametrize(
    ("source", "complaint"),
    [
        ("raise RuntimeError('no database')\n", "cannot import tools module '{m}': RuntimeError: no database"),
        ("def helper(x: int) -> int:\n    return x\n", "tools module '{m}' has no @tool function"),
        (
            "@tool\ndef many(*names: str) -> str:\n    '''Many.'''\n    return ''\n",
            "tool 'many' in module '{m}': *args and **kwargs",
        ),
        (
            "@tool\ndef loose(x) -> str:\n    '''Loose.'''\n    return ''\n",
            "tool 'loose' in module '{m}': parameter 'x' has no type hint",
        ),
        (
            "@tool\ndef ghost(x: 'Nowhere') -> str:\n    '''Ghost.'''\n    return ''\n",
            "tool 'ghost' in module '{m}': cannot read its signature: NameError",
        ),
        (
            "class Thing:\n    pass\n\n@tool\ndef odd(x: Thing) -> str:\n    '''Odd.'''\n    return ''\n",
            "tool 'odd' in module '{m}': its parameters cannot become a JSON schema",
        ),
        (
            "from typing import TypedDict\nclass A(TypedDict):\n    a: int\n\n"
            "@tool\ndef td(x: A) -> str:\n    '''Typed dict from typing.'''\n    return ''\n",
            "tool 'td' in module '{m}': its parameters cannot become a JSON schema",
        ),
        (
            "@tool\ndef silent(x: int) -> str:\n    return ''\n",
            "tool 'silent' in module '{m}' has no docstring",
        ),
    ],
)
def test_a_python_tool_that_cannot_be_offered_stops_the_start(module_dir: Path, source: str, complaint: str) -> None:
    name = write_module(module_dir, source)
    with pytest.raises(ToolConfigError) as raised:
        load_toolbox(modules=[name], env={})
    assert complaint.replace("{m}", name) in str(raised.value)


def test_a_module_that_does_not_exist_stops_the_start() -> None:
    with pytest.raises(ToolConfigError, match="cannot import tools module 'no_such_tools_module'"):
        load_toolbox(modules=["no_such_tools_module"], env={})


def test_two_tools_of_one_name_stop_the_start(module_dir: Path) -> None:
    other = write_module(module_dir, "@tool\ndef shout(x: int) -> int:\n    '''Another shout.'''\n    return x\n")
    with pytest.raises(ToolConfigError) as raised:
        load_toolbox(modules=["tests.tool_samples", other], env={})
    assert str(raised.value) == (
        f"two tools are named 'shout': tool 'shout' in module 'tests.tool_samples' and tool 'shout' in module '{other}'"
    )


def test_one_function_imported_into_two_listed_modules_is_one_tool(module_dir: Path) -> None:
    other = write_module(module_dir, "from tests.tool_samples import shout\n")
    box = load_toolbox(modules=["tests.tool_samples", other], env={})
    assert [spec.name for spec in box.specs].count("shout") == 1
    assert load_toolbox(modules=f"{other}, ", env={}).names() == frozenset({"shout"})  # a comma-separated str


def test_a_tool_may_not_take_a_built_in_name(module_dir: Path, tmp_path: Path) -> None:
    python = write_module(module_dir, "@tool\ndef end_call() -> str:\n    '''Hang up.'''\n    return ''\n")
    with pytest.raises(ToolConfigError, match=f"tool 'end_call' in module '{python}': the name 'end_call' is taken"):
        load_toolbox(modules=[python], env={}, reserved_names=("end_call", "transfer_call"))
    tools_file = write_tools_file(tmp_path, [http_entry(name="transfer_call")])
    with pytest.raises(ToolConfigError, match="tool 'transfer_call' in file .*tools.json.*taken by a built-in"):
        load_toolbox(tools_file=tools_file, env=ENV, reserved_names=("end_call", "transfer_call"))


def write_tools_file(directory: Path, tools: Any) -> str:
    path = directory / "tools.json"
    path.write_text(json.dumps(tools if isinstance(tools, dict) else {"tools": tools}), encoding="utf-8")
    return str(path)


ENV = {"BOOKING_API_TOKEN": SECRET, "API_KEY": URL_SECRET}


def http_entry(**overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "update_booking",
        "description": "Change a booking.",
        "parameters": {
            "type": "object",
            "properties": {"party_size": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["party_size"],
        },
        "url": "http://127.0.0.1:9/update",
        "method": "POST",
        "headers": {"Authorization": "Bearer ${BOOKING_API_TOKEN}"},
    }
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not None}


@pytest.mark.parametrize(
    ("tools", "complaint"),
    [
        ({"tool": []}, 'must hold {"tools": [...]}'),
        ({"tools": {}}, 'must hold {"tools": [...]}'),
        ([["update_booking"]], "tool #1 in '{f}' is not a JSON object"),
        ([http_entry(name="update booking!")], "tool #1 in '{f}': 'name' must be 1-64 letters"),
        ([http_entry(url=None)], "tool 'update_booking' in '{f}': 'url' must be a non-empty string"),
        ([http_entry(header={})], "tool 'update_booking' in '{f}': unknown keys ['header']"),
        ([http_entry(parameters={"type": "array"})], "'parameters' must be a JSON schema of type 'object'"),
        (
            [http_entry(parameters={"type": "object", "properties": {"party_size": {"type": "integre"}}})],
            "tool 'update_booking' in '{f}': 'parameters' is not a valid JSON schema",
        ),
        (
            [http_entry(parameters={"type": "object", "required": "party_size"})],
            "tool 'update_booking' in '{f}': 'parameters' is not a valid JSON schema",
        ),
        ([http_entry(method="HEAD")], "tool 'update_booking' in '{f}': method 'HEAD' is not one of GET, POST"),
        ([http_entry(url="ftp://bookings.example.com/update")], "must be an http:// or https:// URL"),
        ([http_entry(url="file:///etc/passwd")], "must be an http:// or https:// URL"),
        ([http_entry(url="http:///update")], "must be an http:// or https:// URL"),
        ([http_entry(timeout_seconds=0)], "'timeout_seconds' must be a positive number"),
        ([http_entry(headers={"X-Key": 7})], "'headers' must be an object of strings"),
        (
            [http_entry(headers={"Authorization": "Bearer ${MISSING_TOKEN}"})],
            "tool 'update_booking' in '{f}': header 'Authorization' uses ${MISSING_TOKEN}, which is not set",
        ),
        (
            [http_entry(url="https://${BOOKING_HOST}/update")],
            "tool 'update_booking' in '{f}': the URL uses ${BOOKING_HOST}, which is not set",
        ),
        ([http_entry(), http_entry()], "two tools are named 'update_booking'"),
    ],
)
def test_a_tools_file_that_is_wrong_stops_the_start(tmp_path: Path, tools: Any, complaint: str) -> None:
    path = write_tools_file(tmp_path, tools)
    with pytest.raises(ToolConfigError) as raised:
        load_toolbox(tools_file=path, env=ENV)
    assert complaint.replace("{f}", path) in str(raised.value)


def test_a_tools_file_that_cannot_be_read_or_parsed_stops_the_start(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.json")
    with pytest.raises(ToolConfigError, match=f"cannot read the tools file '{missing}': FileNotFoundError"):
        load_toolbox(tools_file=missing, env={})
    broken = tmp_path / "broken.json"
    broken.write_text('{"tools": [', encoding="utf-8")
    with pytest.raises(ToolConfigError, match=f"the tools file '{broken}' is not JSON"):
        load_toolbox(tools_file=str(broken), env={})


def test_an_empty_variable_counts_as_not_set(tmp_path: Path) -> None:
    path = write_tools_file(tmp_path, [http_entry()])
    with pytest.raises(ToolConfigError, match=r"uses \$\{BOOKING_API_TOKEN\}, which is not set"):
        load_toolbox(tools_file=path, env={"BOOKING_API_TOKEN": ""})


def test_a_bad_url_is_shown_as_written_not_as_filled_in(tmp_path: Path) -> None:
    path = write_tools_file(tmp_path, [http_entry(url="ftp://${API_KEY}@bookings.example.com/")])
    with pytest.raises(ToolConfigError) as raised:
        load_toolbox(tools_file=path, env=ENV)
    assert "ftp://${API_KEY}@bookings.example.com/" in str(raised.value)
    assert URL_SECRET not in str(raised.value) and URL_SECRET not in repr(raised.value)


# ---------------------------------------------------------------- HTTP tools against a loopback server


class Service:
    """A small HTTP service on 127.0.0.1 that records what reached it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.base_url = ""

    async def record(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        seen = {
            "method": request.method,
            "path": request.url.path,
            "query": request.query_params.multi_items(),
            "body": json.loads(body) if body else None,
            "content_type": request.headers.get("content-type"),
            "authorization": request.headers.get("authorization"),
        }
        self.requests.append(seen)
        return seen

    async def echo(self, request: Request) -> Response:
        seen = await self.record(request)
        return JSONResponse({"method": seen["method"], "query": seen["query"], "got": seen["body"]})

    async def echo_secret(self, request: Request) -> Response:  # a careless service that echoes credentials
        seen = await self.record(request)
        return PlainTextResponse(f"you sent {seen['authorization']} to {request.url}")

    async def text(self, request: Request) -> Response:
        await self.record(request)
        return PlainTextResponse("Table 4 is yours.")

    async def status(self, request: Request) -> Response:
        await self.record(request)
        return PlainTextResponse("down for maintenance " + "z" * 2000, status_code=int(request.path_params["code"]))

    async def empty(self, request: Request) -> Response:
        await self.record(request)
        return Response(status_code=204)

    async def big(self, request: Request) -> Response:
        await self.record(request)
        return JSONResponse({"rows": list(range(50_000))})

    async def redirect(self, request: Request) -> Response:
        await self.record(request)
        return RedirectResponse(f"{self.base_url}/echo", status_code=302)

    async def slow(self, request: Request) -> Response:
        await self.record(request)
        await asyncio.wait_for(self.release.wait(), WAIT)
        return JSONResponse({"late": True})

    def app(self) -> Starlette:
        every = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        return Starlette(
            routes=[
                Route("/echo", self.echo, methods=every),
                Route("/echo-secret", self.echo_secret, methods=every),
                Route("/text", self.text, methods=every),
                Route("/status/{code:int}", self.status, methods=every),
                Route("/empty", self.empty, methods=every),
                Route("/big", self.big, methods=every),
                Route("/redirect", self.redirect, methods=every),
                Route("/slow", self.slow, methods=every),
            ]
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service() -> AsyncIterator[Service]:
    running = Service()
    async with serve_asgi(running.app()) as running.base_url:
        yield running
        running.release.set()


@pytest.fixture
def fresh(service: Service) -> Iterator[Service]:
    service.requests.clear()
    service.release.clear()
    yield service
    service.release.set()


@asynccontextmanager
async def http_box(tmp_path: Path, *entries: dict[str, Any], timeout_seconds: float = WAIT) -> AsyncIterator[ToolBox]:
    box = load_toolbox(tools_file=write_tools_file(tmp_path, list(entries)), env=ENV, timeout_seconds=timeout_seconds)
    try:
        yield box
    finally:
        await box.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@on_the_module_loop
async def test_post_sends_the_arguments_as_json_with_the_header_from_the_environment(
    fresh: Service, tmp_path: Path
) -> None:
    async with http_box(tmp_path, http_entry(url=f"{fresh.base_url}/echo")) as box:
        result = await box.run("update_booking", '{"party_size": 4, "tags": ["window"]}')
    assert result.ok, result
    assert output_of(result) == {"method": "POST", "query": [], "got": {"party_size": 4, "tags": ["window"]}}
    [seen] = fresh.requests
    assert seen["authorization"] == f"Bearer {SECRET}"
    assert seen["content_type"] == "application/json"


@on_the_module_loop
async def test_get_sends_the_arguments_as_the_query_string(fresh: Service, tmp_path: Path) -> None:
    entry = http_entry(url=f"{fresh.base_url}/echo?key=${{API_KEY}}", method="get")
    async with http_box(tmp_path, entry) as box:
        result = await box.run("update_booking", '{"party_size": 4, "tags": ["window", "quiet"]}')
    assert result.ok, result
    [seen] = fresh.requests
    assert seen["method"] == "GET"
    assert seen["body"] is None
    assert seen["query"] == [("key", URL_SECRET), ("party_size", "4"), ("tags", "window"), ("tags", "quiet")]
    assert URL_SECRET not in result.output  # the service echoed the query: the key is redacted
    assert output_of(result)["query"][0] == ["key", REDACTED]


@on_the_module_loop
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_other_methods_send_a_json_body(fresh: Service, tmp_path: Path, method: str) -> None:
    async with http_box(tmp_path, http_entry(url=f"{fresh.base_url}/echo", method=method)) as box:
        result = await box.run("update_booking", '{"party_size": 2}')
    assert result.ok, result
    assert output_of(result) == {"method": method, "query": [], "got": {"party_size": 2}}


@on_the_module_loop
async def test_text_and_empty_answers(fresh: Service, tmp_path: Path) -> None:
    text = http_entry(name="text", url=f"{fresh.base_url}/text")
    empty = http_entry(name="empty", url=f"{fresh.base_url}/empty")
    async with http_box(tmp_path, text, empty) as box:
        assert output_of(await box.run("text", '{"party_size": 2}')) == {"result": "Table 4 is yours."}
        assert output_of(await box.run("empty", '{"party_size": 2}')) == {"status": 204}


@on_the_module_loop
async def test_a_big_answer_is_cut(fresh: Service, tmp_path: Path) -> None:
    async with http_box(tmp_path, http_entry(url=f"{fresh.base_url}/big")) as box:
        result = await box.run("update_booking", '{"party_size": 2}')
    assert result.ok
    assert len(result.output) <= MAX_OUTPUT_CHARS
    assert output_of(result)["result"].startswith('{"result":"{\\"rows\\":[0,1,2,')


@on_the_module_loop
@pytest.mark.parametrize("code", [400, 404, 500, 503])
async def test_an_error_status_is_an_error_with_the_start_of_the_body(
    fresh: Service, tmp_path: Path, code: int
) -> None:
    async with http_box(tmp_path, http_entry(url=f"{fresh.base_url}/status/{code}")) as box:
        result = await box.run("update_booking", '{"party_size": 2}')
    assert not result.ok
    assert result.error == f"HTTP {code} from update_booking"
    answer = output_of(result)
    assert answer["error"] == f"HTTP {code} from update_booking"
    assert answer["body"].startswith("down for maintenance zzz")
    assert len(answer["body"]) <= 500


@on_the_module_loop
async def test_a_redirect_is_not_followed(fresh: Service, tmp_path: Path) -> None:
    async with http_box(tmp_path, http_entry(url=f"{fresh.base_url}/redirect")) as box:
        result = await box.run("update_booking", '{"party_size": 2}')
    assert not result.ok
    assert output_of(result)["error"] == "HTTP 302 from update_booking (redirects are not followed)"
    assert [seen["path"] for seen in fresh.requests] == ["/redirect"]  # the credentials went nowhere else


@on_the_module_loop
async def test_a_slow_service_is_a_timeout_of_the_tools_own_length(fresh: Service, tmp_path: Path) -> None:
    entry = http_entry(url=f"{fresh.base_url}/slow", timeout_seconds=0.2)
    async with http_box(tmp_path, entry, timeout_seconds=WAIT) as box:
        started = time.monotonic()
        result = await box.run("update_booking", '{"party_size": 2}')
        elapsed = time.monotonic() - started
    assert result == ToolResult(
        output='{"error":"the tool did not answer within 0.2 s"}', ok=False, error="timed out after 0.2 s"
    )
    assert 0.15 < elapsed < 2.0


@on_the_module_loop
async def test_invalid_arguments_never_reach_the_service(fresh: Service, tmp_path: Path) -> None:
    async with http_box(tmp_path, http_entry(url=f"{fresh.base_url}/echo")) as box:
        result = await box.run("update_booking", '{"party_size": "two", "tags": "window"}')
    assert not result.ok
    assert result.error == "invalid arguments: party_size (type), tags (type)"
    assert "'two' is not of type 'integer'" in output_of(result)["error"]
    assert fresh.requests == []


@on_the_module_loop
async def test_one_client_for_all_http_tools_closed_with_the_box(fresh: Service, tmp_path: Path) -> None:
    first = http_entry(name="first", url=f"{fresh.base_url}/echo")
    second = http_entry(name="second", url=f"{fresh.base_url}/text", method="GET")
    async with http_box(tmp_path, first, second) as box:
        assert (await box.run("first", '{"party_size": 1}')).ok
        client = box._context.http
        assert (await box.run("second", '{"party_size": 1}')).ok
        assert box._context.http is client
    assert client.is_closed


async def test_a_service_that_is_not_there_is_an_error(tmp_path: Path) -> None:
    entry = http_entry(url=f"http://127.0.0.1:{closed_port()}/update?key=${{API_KEY}}")
    async with http_box(tmp_path, entry) as box:
        result = await box.run("update_booking", '{"party_size": 2}')
    assert result == ToolResult(
        output='{"error":"could not reach update_booking: ConnectError"}',
        ok=False,
        error="ConnectError calling update_booking",
    )


@on_the_module_loop
async def test_no_secret_comes_back_out(fresh: Service, tmp_path: Path) -> None:
    entries = [
        http_entry(name="echo", url=f"{fresh.base_url}/echo-secret?key=${{API_KEY}}"),
        http_entry(name="fails", url=f"{fresh.base_url}/status/500?key=${{API_KEY}}"),
        http_entry(name="unreachable", url=f"http://127.0.0.1:{closed_port()}/?key=${{API_KEY}}"),
        http_entry(name="slow", url=f"{fresh.base_url}/slow?key=${{API_KEY}}", timeout_seconds=0.05),
        http_entry(name="redirects", url=f"{fresh.base_url}/redirect?key=${{API_KEY}}"),
    ]
    async with http_box(tmp_path, *entries) as box:
        results = [await box.run(entry["name"], '{"party_size": 2}') for entry in entries]
        results.append(await box.run("echo", '{"party_size": "x"}'))
        results.append(await box.run("echo", "{"))
        texts = [repr(box), *(repr(spec) for spec in box.specs), *(repr(item) for item in box._tools.values())]
    assert fresh.requests[0]["authorization"] == f"Bearer {SECRET}"  # it was sent...
    echoed = output_of(results[0])["result"]
    assert echoed == f"you sent {REDACTED} to {fresh.base_url}/echo-secret?key={REDACTED}"  # ...not returned
    assert [result.ok for result in results] == [True, False, False, False, False, False, False]
    for text in [*texts, *(result.output for result in results), *(str(result.error) for result in results)]:
        assert SECRET not in text and URL_SECRET not in text, text


# ---------------------------------------------------------------- the restaurant example


@pytest.fixture
def restaurant(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    database = tmp_path / "restaurant.sqlite3"
    monkeypatch.setenv("RESTAURANT_DB", str(database))
    monkeypatch.setenv("BOOKING_API_TOKEN", SECRET)  # booking_service.py reads it per request
    return database


def test_the_example_loads_as_the_readme_says(restaurant: Path) -> None:
    box = load_toolbox(
        modules=["restaurant_tools"],
        tools_file=str(EXAMPLE / "tools.json"),
        env={"BOOKING_API_TOKEN": SECRET},
        reserved_names=("end_call", "transfer_call"),
    )
    assert [spec.name for spec in box.specs] == ["check_availability", "book_table", "update_booking"]
    check = spec_of(box, "check_availability")
    assert check["description"] == "Check which tables are free tonight for a party of this size around this time."
    assert check["parameters"]["properties"]["party_size"]["maximum"] == 8
    assert check["parameters"]["required"] == ["party_size", "time"]
    prompt = (EXAMPLE / "prompt.txt").read_text(encoding="utf-8")
    readme = (EXAMPLE / "README.md").read_text(encoding="utf-8")
    for name in box.names():
        assert name in prompt
    for setting in [
        "PYTHONPATH=examples/restaurant",
        "VOICEAGENT_TOOLS=restaurant_tools",
        "VOICEAGENT_TOOLS_FILE=examples/restaurant/tools.json",
        "VOICEAGENT_INSTRUCTIONS_FILE=examples/restaurant/prompt.txt",
    ]:
        assert setting in readme


async def test_the_example_books_and_changes_a_table(restaurant: Path, tmp_path: Path) -> None:
    import booking_service  # the example's own service, from examples/restaurant

    async with serve_asgi(booking_service.app) as base_url:
        tools_file = tmp_path / "tools.json"
        tools_file.write_text(
            (EXAMPLE / "tools.json").read_text(encoding="utf-8").replace("http://127.0.0.1:8099", base_url),
            encoding="utf-8",
        )
        box = load_toolbox(modules=["restaurant_tools"], tools_file=str(tools_file), env={"BOOKING_API_TOKEN": SECRET})
        try:
            free = await box.run("check_availability", '{"party_size": 8, "time": "19:30"}')
            booked = await box.run("book_table", '{"name": "Rossi", "party_size": "8", "time": "19:30"}')
            full = await box.run("book_table", '{"name": "Bianchi", "party_size": 7, "time": "20:00"}')
            late = await box.run("check_availability", '{"party_size": 2, "time": "23:30"}')
            too_many = await box.run("check_availability", '{"party_size": 12, "time": "19:30"}')
            moved = await box.run("update_booking", '{"booking_id": 1, "time": "21:30"}')
            unknown = await box.run("update_booking", '{"booking_id": 99, "party_size": 2}')
        finally:
            await box.aclose()
    assert output_of(free) == {
        "time": "19:30",
        "party_size": 8,
        "available": True,
        "free_tables": 1,
        "other_times": [],
    }
    assert output_of(booked) == {"booked": True, "booking_id": 1, "time": "19:30", "party_size": 8}
    assert output_of(full) == {
        "booked": False,
        "reason": "no table is free then",
        "other_times": ["21:30", "22:00", "17:30"],
    }
    assert output_of(late) == {"error": "ValueError: we seat guests from 17:00 to 22:00"}
    assert not too_many.ok and "less than or equal to 8" in output_of(too_many)["error"]
    assert output_of(moved) == {
        "updated": True,
        "booking": {"booking_id": 1, "name": "Rossi", "party_size": 8, "time": "21:30"},
    }
    assert not unknown.ok and output_of(unknown)["error"] == "HTTP 404 from update_booking"
    with sqlite3.connect(restaurant) as db:
        assert db.execute("SELECT name, party_size, minutes FROM bookings").fetchall() == [("Rossi", 8, 21 * 60 + 30)]
