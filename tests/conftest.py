from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from voiceagent.logs import CONFIGURED_LOGGERS, configure_logging


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
