"""Which delay queue holds a RabbitMQ message back (bgchallenge/queues/rabbitmq.py)."""

from __future__ import annotations

from bgchallenge.queues.rabbitmq import DELAY_STEPS_MS, delay_steps, round_up_delay


def test_the_retry_delays_get_queues_of_their_own() -> None:
    steps = delay_steps((0.05, 0.3, 4.0))
    assert 300 in steps and 50 in steps and 4_000 in steps
    assert list(steps) == sorted(set(steps))
    assert set(DELAY_STEPS_MS) <= set(steps)


def test_a_delay_rounds_up_to_the_shortest_step_not_shorter() -> None:
    steps = delay_steps((1.0, 4.0, 8.0))
    assert round_up_delay(0.999, steps) == 1_000  # a retry due in 1 s, sent just after commit
    assert round_up_delay(1.0, steps) == 1_000
    assert round_up_delay(1.001, steps) == 2_000
    assert round_up_delay(0.001, steps) == 50
    assert round_up_delay(29.5, steps) == 30_000  # what is left of a 30 s lease


def test_no_delay_goes_straight_to_the_work_queue_and_a_long_one_takes_the_longest() -> None:
    steps = delay_steps()
    assert round_up_delay(0, steps) is None
    assert round_up_delay(-3, steps) is None
    assert round_up_delay(10_000, steps) == steps[-1]
