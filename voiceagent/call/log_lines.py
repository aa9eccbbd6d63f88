"""The one place an observation becomes a log line: the same event names and fields the call's log has
always had, so logs read the same while nothing else depends on them."""

from __future__ import annotations

from typing import assert_never

from voiceagent.call.actions import Log
from voiceagent.call.observations import (
    AgentClosing,
    BargeIn,
    CallEnded,
    ConnectFailed,
    Observation,
    ReasonDropped,
    ReasonsAnswered,
    Refused,
    ResponseRefused,
    ToolCalled,
    ToolNotRun,
)

__all__ = ["log_line"]


def log_line(fact: Observation) -> Log:
    match fact:
        case BargeIn(item_id=item_id, heard_ms=heard_ms, produced_ms=None):
            return Log("info", "barge_in", {"item_id": item_id, "heard_ms": heard_ms, "previous_session": True})
        case BargeIn(item_id=item_id, heard_ms=heard_ms, produced_ms=produced_ms):
            return Log("info", "barge_in", {"item_id": item_id, "heard_ms": heard_ms, "produced_ms": produced_ms})
        case ToolCalled(name=name, ok=ok, duration_ms=duration_ms, error=error):
            facts = {"name": name, "ok": ok, "duration_ms": duration_ms}
            return Log("info", "tool_called", facts | ({"error": error} if error else {}))
        case AgentClosing(farewell=farewell):
            return Log("info", "agent_closing", {"farewell": farewell.value})
        case ConnectFailed(attempt=attempt, of=of, error=error):
            return Log("warning", "model_connect_failed", {"attempt": attempt, "of": of, "error": error})
        case Refused(request=request, phase=phase):
            return Log("warning", f"{request}_refused", {"phase": phase})
        case ReasonsAnswered(reasons=reasons, by=by, attempt=attempt):
            return Log("info", "response_reasons", {"reasons": list(reasons), "by": by, "attempt": attempt})
        case ReasonDropped(reason=reason, why=why):
            return Log("info", "response_reason_dropped", {"reason": reason, "why": why})
        case ResponseRefused(message=message):
            return Log("error", "response_refused", {"message": message})
        case ToolNotRun(name=name, status=status):
            return Log("info", "tool_not_run", {"name": name, "status": status})
        case CallEnded(summary=summary):
            return Log("info", "call_ended", summary)
        case _:
            assert_never(fact)
