"""The process-wide memories stay small: what is past its window is forgotten, not kept until a cap."""

from __future__ import annotations

from voiceagent.limits import RateLimit, RecentKeys, RecentValues


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


def test_recent_values_are_answered_within_their_window_and_then_forgotten() -> None:
    ends: RecentValues[str] = RecentValues(900.0, max_keys=1_000)
    for number in range(100):
        ends.put(f"CA{number}", f"end {number}", now=float(number))
    assert ends.get("CA5", now=904.0) == "end 5"  # 899 s old: the <Dial action> may still ask
    assert ends.get("CA5", now=905.0) is None  # 900 s old: nobody can ask any more
    ends.put("CA-late", "late end", now=2_000.0)
    assert len(ends) == 1  # the day's earlier calls are not kept until a cap: memory stays level


def test_recent_values_keep_at_most_their_cap_and_a_popped_value_is_gone() -> None:
    ends: RecentValues[int] = RecentValues(900.0, max_keys=3)
    for number in range(5):
        ends.put(f"CA{number}", number, now=0.0)
    assert len(ends) == 3 and ends.get("CA1", now=0.0) is None and ends.get("CA4", now=0.0) == 4
    assert ends.pop("CA4", now=1.0) == 4
    assert ends.get("CA4", now=1.0) is None and len(ends) == 2
