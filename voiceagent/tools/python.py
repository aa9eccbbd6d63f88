"""Python tools: functions marked with ``@tool``, described to the model by their signature and docstring.

The JSON schema comes from a pydantic model built from the parameters (so the model is told exactly what
will be accepted), and the model's arguments are validated by that same pydantic model before the call.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import inspect
import json
import re
import typing
import warnings
from collections.abc import Callable
from types import ModuleType
from typing import Annotated, Any, TypeVar

import docstring_parser
import pydantic
from pydantic import ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from voiceagent.realtime.events import ToolSpec

from .base import Tool, ToolConfigError, ToolContext, ToolResult, answer_output, error_result, shorten

F = TypeVar("F", bound=Callable[..., Any])

_MARK = "__voiceagent_tool__"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the Realtime API accepts as a function name
_MAX_ERRORS = 5  # validation errors told to the model


def tool(fn: F) -> F:
    """Mark a plain or ``async`` function as a tool the model may call. The function is returned as it is
    (still callable as before). Its name is the tool's name, the first paragraph of its docstring the tool's
    description, and its type hints (with ``Annotated[T, "description"]``, ``Field(description=...)`` or a
    Google-style ``Args:`` section) the arguments' JSON schema. A sync function runs in a worker thread."""
    if not callable(fn):
        raise TypeError(f"@tool marks a function, not {type(fn).__name__}")
    setattr(fn, _MARK, True)
    return fn


def is_tool(obj: object) -> bool:
    return callable(obj) and getattr(obj, _MARK, False) is True


# ---------------------------------------------------------------- docstrings


def _parsed(doc: str) -> docstring_parser.Docstring:
    """``doc`` (from ``inspect.getdoc``: already dedented) parsed as a Google-style docstring.

    docstring_parser dedents every line after the first again (``inspect.cleandoc``), which would flatten
    a docstring that opens with ``Args:``; a first line of its own keeps ``doc`` as it is."""
    try:
        return docstring_parser.parse("-\n\n" + doc, style=docstring_parser.DocstringStyle.GOOGLE)
    except docstring_parser.ParseError:
        # sections it cannot read (e.g. "Args:" with no entries): the text before them still counts
        return docstring_parser.parse("-\n\n" + doc.split("\n\n")[0], style=docstring_parser.DocstringStyle.GOOGLE)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe(doc: str) -> str:
    """The tool's description: the docstring's first paragraph (up to a blank line or a section such as
    ``Args:``), its lines joined."""
    return _one_line((_parsed(doc).long_description or "").split("\n\n")[0])


def argument_docs(doc: str) -> dict[str, str]:
    """Descriptions of the parameters from a Google-style ``Args:`` section: ``name: text`` or
    ``name (type): text``, continued on more deeply indented lines."""
    params = _parsed(doc).params
    return {param.arg_name.lstrip("*"): _one_line(param.description) for param in params if param.description}


# ---------------------------------------------------------------- schemas

# Keys whose value is one schema, a list of schemas, or a mapping of names to schemas (JSON Schema 2020-12).
_SCHEMA_KEYS = frozenset(
    {"items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames"}
    | {"unevaluatedItems", "unevaluatedProperties", "contentSchema"}
)
_SCHEMA_LIST_KEYS = frozenset({"anyOf", "allOf", "oneOf", "prefixItems"})
_SCHEMA_MAP_KEYS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})  # values, not schemas: left as they are


def strip_titles(schema: Any) -> Any:
    """``schema`` without pydantic's ``title`` keys (a property *named* "title" stays)."""
    if not isinstance(schema, dict):
        return schema
    lean: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title":
            continue
        if key in _SCHEMA_KEYS:
            lean[key] = strip_titles(value)
        elif key in _SCHEMA_LIST_KEYS and isinstance(value, list):
            lean[key] = [strip_titles(item) for item in value]
        elif key in _SCHEMA_MAP_KEYS and isinstance(value, dict):
            lean[key] = {name: strip_titles(item) for name, item in value.items()}
        else:
            lean[key] = value
    return lean


class _Recursive(Exception):
    pass


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in seen or name not in defs:
            raise _Recursive(name)
        target = _inline(defs[name], defs, (*seen, name))
        siblings = {key: _inline(value, defs, seen) for key, value in node.items() if key != "$ref"}
        return {**target, **siblings}  # the field's own description and default win over the type's
    return {key: value if key in _DATA_KEYS else _inline(value, defs, seen) for key, value in node.items()}


def inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every ``$ref`` to its ``$defs`` replaced by the definition, so that the model sees
    plain nested objects. A recursive type cannot be inlined: then the schema keeps its ``$defs``."""
    defs = schema.get("$defs")
    if not isinstance(defs, dict):
        return schema
    body = {key: value for key, value in schema.items() if key != "$defs"}
    try:
        inlined = _inline(body, defs, ())
    except _Recursive:
        return schema
    assert isinstance(inlined, dict)
    return inlined


# ---------------------------------------------------------------- Python tools


def _split_annotated(hint: Any) -> tuple[Any, list[Any]]:
    if typing.get_origin(hint) is Annotated:
        return hint.__origin__, list(hint.__metadata__)
    return hint, []


class PythonTool(Tool):
    """A ``@tool`` function. The arguments are validated by a pydantic model made from its signature; the
    function is called with the validated values (a nested model as its instance), awaited when ``async``,
    otherwise run in a worker thread so that it never holds up the call's audio."""

    def __init__(self, fn: Callable[..., Any], *, origin: str) -> None:
        self.fn = fn
        self.origin = f"module {origin!r}"
        name = getattr(fn, "__name__", "")
        where = f"tool {name!r} in {self.origin}"
        if not NAME_PATTERN.match(name):
            raise ToolConfigError(f"{where}: a tool's name must be 1-64 letters, digits, '_' or '-'")
        doc = inspect.getdoc(fn) or ""
        description = describe(doc)
        if not description:
            raise ToolConfigError(
                f"{where} has no docstring (or it opens with a section): its first paragraph tells the model "
                "what the tool does and when to call it"
            )
        self.is_async = inspect.iscoroutinefunction(fn)
        self.model, self._positional = self._build_model(fn, name, where, argument_docs(doc))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. a default that is not JSON-able is left out of the schema
                raw = self.model.model_json_schema(by_alias=True)
        except Exception as exc:
            raise ToolConfigError(f"{where}: its parameters cannot become a JSON schema: {shorten(str(exc))}") from exc
        parameters = inline_defs(strip_titles(raw))
        parameters.setdefault("properties", {})
        parameters.setdefault("required", [])
        parameters["additionalProperties"] = False
        self.spec = ToolSpec(name=name, description=description, parameters=parameters)

    @staticmethod
    def _build_model(
        fn: Callable[..., Any], name: str, where: str, docs: dict[str, str]
    ) -> tuple[type[pydantic.BaseModel], list[tuple[str, str, bool]]]:
        try:
            signature = inspect.signature(fn)
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # NameError for a hint that names nothing importable, ValueError for builtins
            raise ToolConfigError(f"{where}: cannot read its signature: {type(exc).__name__}: {exc}") from exc
        fields: dict[str, Any] = {}
        # (field in the model, parameter name, positional-only): fields are p0, p1, ... with the parameter's
        # name as alias, so that a parameter may be called "json", "schema" or "_private" like any other
        positional: list[tuple[str, str, bool]] = []
        for index, parameter in enumerate(signature.parameters.values()):
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                raise ToolConfigError(f"{where}: *args and **kwargs cannot be described to the model")
            if parameter.name not in hints:
                raise ToolConfigError(f"{where}: parameter {parameter.name!r} has no type hint")
            base, metadata = _split_annotated(hints[parameter.name])
            described: list[str | None] = [
                item.description for item in metadata if isinstance(item, FieldInfo) and item.description
            ]
            said: list[str | None] = [item for item in metadata if isinstance(item, str)]
            description = (described or said or [docs.get(parameter.name)])[-1]
            others = [item for item in metadata if not isinstance(item, str)]
            ours = Field(alias=parameter.name, description=description)
            annotation = Annotated[(base, *others, ours)]  # type: ignore[valid-type]
            default = ... if parameter.default is parameter.empty else parameter.default
            field = f"p{index}"
            fields[field] = (annotation, default)
            positional.append((field, parameter.name, parameter.kind is parameter.POSITIONAL_ONLY))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = pydantic.create_model(
                    name, __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=False), **fields
                )
        except Exception as exc:
            raise ToolConfigError(f"{where}: its parameters cannot become a JSON schema: {shorten(str(exc))}") from exc
        assert isinstance(model, type) and issubclass(model, pydantic.BaseModel)
        for field, parameter_name, _ in positional:
            if model.model_fields[field].alias != parameter_name:
                raise ToolConfigError(f"{where}: parameter {parameter_name!r}: Field(alias=...) is not supported")
        return model, positional

    def _call_arguments(self, validated: pydantic.BaseModel) -> tuple[list[Any], dict[str, Any]]:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for field, parameter_name, positional_only in self._positional:
            value = getattr(validated, field)
            if positional_only:
                args.append(value)
            else:
                kwargs[parameter_name] = value
        return args, kwargs

    async def invoke(self, arguments: str, context: ToolContext) -> ToolResult:
        parsed = parse_arguments(arguments)
        if isinstance(parsed, ToolResult):
            return parsed
        try:
            validated = self.model.model_validate(parsed)
        except ValidationError as exc:
            return invalid_arguments(self.spec, _describe_errors(exc))
        args, kwargs = self._call_arguments(validated)
        if self.is_async:
            answer = await self.fn(*args, **kwargs)
        else:
            call = functools.partial(contextvars.copy_context().run, self.fn, *args, **kwargs)
            answer = await asyncio.get_running_loop().run_in_executor(context.threads, call)
            if inspect.isawaitable(answer):  # a plain function that hands back a coroutine
                answer = await answer
        return ToolResult(output=answer_output(answer), ok=True)


Problem = tuple[tuple[str | int, ...], str, str]  # (where in the arguments, kind of error, message)


def _describe_errors(exc: ValidationError) -> list[Problem]:
    return [
        (tuple(error["loc"]), error["type"], error["msg"])
        for error in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def property_names(schema: Any) -> frozenset[str]:
    """Every property name declared anywhere in a JSON schema."""
    found: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                found.update(name for name in properties if isinstance(name, str))
            stack.extend(value for key, value in node.items() if key not in _DATA_KEYS)
        elif isinstance(node, list):
            stack.extend(node)
    return frozenset(found)


def _loggable(path: tuple[str | int, ...], known: frozenset[str]) -> str:
    """``path`` up to its first part that the schema does not name: the key of a free-form object, or an
    argument the model made up, is something it sent (a value), which stays out of the logs."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        elif part in known:
            parts.append(f".{part}" if parts else part)
        else:
            parts.append(".?" if parts else "?")
            break
    return "".join(parts) or "(arguments)"


def invalid_arguments(spec: ToolSpec, problems: list[Problem]) -> ToolResult:
    """The model is told where and what (a message may quote what it sent: it knows that already); the logs
    get where (as far as the schema names it) and the kind of error only."""
    known = property_names(spec.parameters)
    shown = problems[:_MAX_ERRORS]
    more = f" (and {len(problems) - len(shown)} more)" if len(problems) > len(shown) else ""
    told = "; ".join(f"{'.'.join(str(p) for p in path) or '(arguments)'}: {message}" for path, _, message in shown)
    logged = ", ".join(f"{_loggable(path, known)} ({kind})" for path, kind, _ in shown)
    return error_result(
        shorten(f"invalid arguments for {spec.name}: {told}{more}", 1000),
        error=shorten(f"invalid arguments: {logged}{more}"),
    )


def parse_arguments(arguments: str) -> dict[str, Any] | ToolResult:
    """The model's arguments as a JSON object (empty text counts as ``{}``), or the error result."""
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return error_result("the arguments are not valid JSON", error="arguments are not valid JSON")
    if not isinstance(parsed, dict):
        return error_result("the arguments must be a JSON object", error="arguments are not a JSON object")
    return parsed


def tools_in_module(module_name: str) -> list[PythonTool]:
    """The ``@tool`` functions of a module, in the order the module defines them."""
    try:
        module: ModuleType = importlib.import_module(module_name)
    except Exception as exc:
        raise ToolConfigError(
            f"cannot import tools module {module_name!r}: {type(exc).__name__}: {shorten(str(exc))}"
        ) from exc
    found = [value for value in vars(module).values() if is_tool(value)]
    if not found:
        raise ToolConfigError(f"tools module {module_name!r} has no @tool function")
    return [PythonTool(fn, origin=module_name) for fn in found]
