"""The suite's tiers are its folders, and each folder is a marker of the same name (``pytest -m core``):

- ``core``: the sans-I/O call core, driven with lists of inputs and an injected clock (milliseconds);
- ``adapters``: pure translations (dialects, Twilio messages, TwiML, settings, logs, metrics);
- ``bridge``: the asyncio driver against in-memory seams, no sockets;
- ``kit``: the fakes themselves, checked against the vendors' documented behaviour;
- ``wire``: whole calls over real sockets (uvicorn on loopback, the fake Twilio caller and model).

``kit`` tests speak over sockets too, so they carry ``wire`` as well: ``pytest -m "not wire"`` is the fast tier.
A tier's folder that ``-m`` rules out whatever its tests' own marks is not even imported, so the fast tier
never pays for the wire tests' imports.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from voiceagent.logs import CONFIGURED_LOGGERS, configure_logging

TIERS = ("core", "adapters", "bridge", "kit", "wire")
OVER_SOCKETS = frozenset({"kit", "wire"})


def tier_marks(tier: str) -> frozenset[str]:
    return frozenset({tier, "wire"} if tier in OVER_SOCKETS else {tier})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip a tier's folder when ``-m`` rules out every test there, whichever other marks they carry."""
    expression = config.getoption("markexpr", "")
    if not expression or collection_path.name not in TIERS or collection_path.parent != Path(__file__).parent:
        return None
    try:
        from _pytest.mark.expression import Expression  # what pytest itself evaluates -m with

        compiled = Expression.compile(expression)
    except Exception:
        return None  # a pytest without it, or an expression pytest will report itself: collect as usual
    marks = tier_marks(collection_path.name)
    others = sorted(set(re.findall(r"[\w.:+\-\[\]\\/]+", expression)) - {"and", "or", "not"} - set(TIERS))
    for values in itertools.product((False, True), repeat=len(others)):
        carried = marks | {name for name, value in zip(others, values, strict=True) if value}
        if _selects(compiled, carried):
            return None  # some test here may be selected
    return True


def _selects(compiled: Any, carried: frozenset[str]) -> bool:
    """Whether ``-m`` selects a test that carries exactly the marks ``carried``."""
    return bool(compiled.evaluate(lambda name, /, **kwargs: name in carried))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with the tier its folder names (and ``wire`` for everything that opens sockets)."""
    for item in items:
        tier = next((part for part in item.path.parts[::-1] if part in TIERS), None)
        if tier is None:
            raise pytest.UsageError(f"{item.nodeid}: every test lives in one of the tiers' folders {TIERS}")
        for mark in sorted(tier_marks(tier)):
            item.add_marker(mark)


@pytest.fixture(autouse=True)
def _no_refused_responses(request: pytest.FixtureRequest) -> Iterator[None]:
    """The fake model refuses an overlapping ``response.create`` as the service does, and a test over
    sockets fails if any was refused: by construction the call never asks while a response is active.
    A test that asks for refusals says so (``@pytest.mark.refusals``). Only the socket tiers import it."""
    if request.node.get_closest_marker("wire") is None:
        yield
        return
    from voiceagent.testing.fake_realtime.server import FakeRealtimeServer

    forbid = request.node.get_closest_marker("refusals") is None
    saved, FakeRealtimeServer.forbid_refusals_by_default = FakeRealtimeServer.forbid_refusals_by_default, forbid
    try:
        yield
    finally:
        FakeRealtimeServer.forbid_refusals_by_default = saved


@pytest.fixture(autouse=True)
def _restore_loggers() -> Iterator[None]:
    """``configure_logging`` takes over several process-wide loggers: give them back after every test,
    so one test's handlers never decide what another test's logs look like."""
    loggers = [logging.getLogger(name) for name in CONFIGURED_LOGGERS]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


@pytest.fixture
def caplog_json() -> Callable[[], list[dict[str, Any]]]:
    """Capture voiceagent's JSON log lines; call the fixture's value to get them parsed."""
    stream = io.StringIO()
    configure_logging(secrets=(), stream=stream)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    lines.text = stream.getvalue  # type: ignore[attr-defined]
    return lines
