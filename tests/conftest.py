from __future__ import annotations

import io
import json
import logging

import pytest

from voiceagent.logs import LOGGER_NAME, configure_logging


@pytest.fixture
def caplog_json():
    """Capture voiceagent's JSON log lines; call the fixture's value to get them parsed."""
    stream = io.StringIO()
    logger = logging.getLogger(LOGGER_NAME)
    saved = (logger.handlers[:], logger.level, logger.propagate)
    configure_logging(secrets=(), stream=stream)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]

    lines.text = stream.getvalue  # type: ignore[attr-defined]
    yield lines
    logger.handlers[:], logger.level, logger.propagate = saved
