"""The process-wide memories stay small: what is past its window is forgotten, not kept until a cap."""

from __future__ import annotations

from voiceagent.limits import RateLimit, RecentKeys


def test_a_number_that_called_once_is_forgotten_when_its_minute_is_over() -> None:
    limit = RateLimit(3, seconds=60.0)
    for number in range(500):
        assert limit.allow(f"+1555{number:07d}", now=float(number) / 10)
    assert len(limit) == 500  # all within the minute: each still counts
    assert limit.allow("+15550009999", now=200.0)
    assert len(limit) == 1  # the others' calls are out of the window: nothing of them is kept


def test_forgetting_idle_numbers_keeps_the_limit_of_a_busy_one() -> None:
    limit = RateLimit(2, seconds=60.0)
    assert limit.allow("busy", now=0.0)
    assert limit.allow("once", now=1.0)
    assert limit.allow("busy", now=30.0)
    assert not limit.allow("busy", now=59.0)  # two in the last minute already
    assert limit.allow("other", now=70.0)  # "once" and busy's first call are over
    assert limit.allow("busy", now=70.0)  # its call at 0 s left the window; the one at 30 s still counts
    assert not limit.allow("busy", now=71.0)


def test_recent_keys_are_forgotten_after_their_window() -> None:
    keys = RecentKeys(60.0)
    assert keys.add("CA1", now=0.0)
    assert not keys.add("CA1", now=59.0)
    assert keys.add("CA2", now=61.0)
    assert len(keys) == 1 and "CA1" not in keys
