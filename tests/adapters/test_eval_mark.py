"""The eval mark: only the auth token's holder can make one, for one call; nothing without a token."""

from __future__ import annotations

import pytest

from voiceagent.store.records import kind_filter
from voiceagent.testing import FakeTwilioCaller, new_sid
from voiceagent.twilio.eval_mark import EVAL_PARAMETER, STREAM_PARAMETER, EvalMarks

TOKEN = "auth-token-0123456789abcdef0123456"


def test_a_mark_is_good_for_its_call_under_its_token_only() -> None:
    marks = EvalMarks(TOKEN)
    call, other = new_sid("CA"), new_sid("CA")
    mark = marks.sign(call)
    assert marks.valid(call, mark) and marks.kind(call, {EVAL_PARAMETER: mark}) == "eval"
    assert not marks.valid(other, mark)  # seen on one call, worth nothing on another
    assert not EvalMarks(TOKEN + "x").valid(call, mark)  # nor under another account's token
    for given in ({}, {EVAL_PARAMETER: ""}, {EVAL_PARAMETER: "1"}, {EVAL_PARAMETER: mark + "x"}, {"eval": mark}):
        assert marks.kind(call, given) == "live", given
    assert (
        marks.forged(call, {EVAL_PARAMETER: "1"})
        and not marks.forged(call, {})
        and not marks.forged(call, {EVAL_PARAMETER: mark})
    )
    assert marks.stream_parameters(call, "eval") == {STREAM_PARAMETER: mark}
    assert marks.stream_parameters(call, "live") == {}
    assert marks.kind(call, marks.stream_parameters(call, "eval"), STREAM_PARAMETER) == "eval"


def test_without_an_auth_token_no_mark_is_made_or_honoured() -> None:
    call = new_sid("CA")
    assert not EvalMarks(None).valid(call, EvalMarks(TOKEN).sign(call))
    with pytest.raises(ValueError, match="auth token"):
        EvalMarks(None).sign(call)
    with pytest.raises(ValueError, match="auth_token"):
        FakeTwilioCaller("http://127.0.0.1:9", eval_mark=True)


def test_a_listing_asks_for_live_eval_or_all_calls() -> None:
    assert [kind_filter(raw) for raw in (None, "", "live", " EVAL ", "all")] == ["live", "live", "live", "eval", None]
    with pytest.raises(ValueError, match="kind must be live, eval or all"):
        kind_filter("test")
