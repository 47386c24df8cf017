"""The rate floor: whole windows with too few bytes fail; the running window never does."""

from __future__ import annotations

from bgchallenge.domain.rate import RateFloor


def test_enough_bytes_in_every_window_passes() -> None:
    floor = RateFloor(1000, 1.0)
    for step in range(1, 50):
        assert floor.received(400, step * 0.25)


def test_a_whole_window_with_too_few_bytes_fails() -> None:
    floor = RateFloor(1000, 1.0)
    assert floor.received(999, 0.9)
    assert not floor.received(5000, 1.0)  # bytes after the window do not count for it


def test_a_trickle_fails_at_the_first_window_end() -> None:
    floor = RateFloor(1000, 0.3)
    now = 0.0
    while floor.received(1, now):
        now = round(now + 0.01, 2)
    assert now == 0.3


def test_an_empty_window_fails_even_after_a_full_one() -> None:
    floor = RateFloor(1000, 1.0)
    assert floor.received(10_000, 0.5)
    assert not floor.received(10_000, 2.5)  # the window [1, 2) received nothing


def test_the_running_window_is_not_judged() -> None:
    floor = RateFloor(1000, 1.0)
    assert floor.received(1, 0.99)  # a short body ending here is not too slow


def test_the_clock_starts_where_told() -> None:
    floor = RateFloor(1000, 1.0, now=100.0)
    assert floor.received(1, 100.5)
    assert not floor.received(1, 101.0)


def test_zero_disables_the_check() -> None:
    assert RateFloor(0, 1.0).received(0, 1e9)
    assert RateFloor(1000, 0.0).received(0, 1e9)
