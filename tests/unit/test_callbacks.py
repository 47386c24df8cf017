from bgchallenge.domain.callbacks import answer_error, max_callback_attempts, retry_delay

DELAYS = (5.0, 30.0, 120.0, 600.0, 3600.0)


def test_six_attempts_with_the_default_delays() -> None:
    assert max_callback_attempts(DELAYS) == 6
    assert [retry_delay(n, DELAYS) for n in range(1, 7)] == [*DELAYS, None]


def test_only_a_2xx_answer_is_a_delivery() -> None:
    assert answer_error(200) is None and answer_error(204) is None
    assert answer_error(301) == "the callback URL answered 301"
    assert answer_error(500) == "the callback URL answered 500"
