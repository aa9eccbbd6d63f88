"""JSON log lines: call SID on every line, numbers masked, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging

from voiceagent.logs import CallLog, JsonFormatter, configure_logging, mask_number
from voiceagent.transcripts import FanoutSink, LogTranscriptSink, MemoryTranscriptSink, TranscriptLine


def capture(secrets=()):
    stream = io.StringIO()
    handler = configure_logging(secrets, stream=stream)
    return stream, handler


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_every_line_is_json_with_the_call_sid():
    stream, _ = capture()
    CallLog("CA123").info("barge_in", heard_ms=120)
    [line] = lines(stream)
    assert line["event"] == "barge_in" and line["call_sid"] == "CA123" and line["heard_ms"] == 120
    assert line["level"] == "info"


def test_phone_numbers_are_masked_unless_asked():
    assert mask_number("+15551234567") == "+1555***4567"
    assert mask_number("+15551234567", full=True) == "+15551234567"
    assert mask_number("12") == "***12"
    assert mask_number(None) is None


def test_registered_secrets_and_bearer_tokens_are_scrubbed():
    stream, _ = capture(secrets=["sk-very-secret-key"])
    CallLog("CA1").error("oops", detail="header api-key: sk-very-secret-key", auth="Bearer eyJhbGciOi.abc.def")
    text = stream.getvalue()
    assert "sk-very-secret-key" not in text and "eyJhbGciOi" not in text
    assert "[redacted]" in text


def test_transcript_lines_have_the_documented_shape():
    stream, _ = capture()
    LogTranscriptSink().record(TranscriptLine("CA9", "agent", "We have a table.", True, 840))
    LogTranscriptSink().record(TranscriptLine("CA9", "caller", "Hello", False, None))
    agent, caller = lines(stream)
    assert {k: agent[k] for k in ("event", "call_sid", "role", "text", "interrupted", "heard_ms")} == {
        "event": "transcript",
        "call_sid": "CA9",
        "role": "agent",
        "text": "We have a table.",
        "interrupted": True,
        "heard_ms": 840,
    }
    assert caller["interrupted"] is False and "heard_ms" not in caller


def test_a_failing_sink_does_not_lose_the_line_for_the_others():
    class Broken:
        def record(self, line):
            raise OSError("disk full")

    memory = MemoryTranscriptSink()
    stream, _ = capture()
    FanoutSink(Broken(), memory).record(TranscriptLine("CA1", "caller", "hi"))
    assert memory.lines == [TranscriptLine("CA1", "caller", "hi")]
    assert lines(stream)[0]["event"] == "transcript_sink_failed"


def test_formatter_handles_exceptions():
    formatter = JsonFormatter()
    try:
        raise ValueError("bad")
    except ValueError:
        import sys

        record = logging.LogRecord("voiceagent", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    assert "ValueError" in json.loads(formatter.format(record))["exception"]
