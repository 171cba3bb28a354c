"""The one backoff schedule the config poller and the event queue share."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from hypothesis import given
from hypothesis import strategies as st

from ramplight.sdk.retry import Backoff, retry_after_seconds

schedules = st.builds(
    Backoff,
    base=st.floats(0.001, 10),
    cap=st.floats(0.01, 600),
    max_retry_after=st.floats(0, 3600),
)


@given(schedules, st.integers(0, 1000), st.floats(0, 10_000), st.integers(0, 2**32))
def test_a_delay_is_capped_jittered_and_never_shorter_than_retry_after(
    backoff: Backoff, attempt: int, retry_after: float, seed: int
) -> None:
    delay = backoff.delay(attempt, retry_after, random.Random(seed))
    ceiling = min(backoff.cap, backoff.base * 2.0**attempt)
    asked = min(retry_after, backoff.max_retry_after)
    assert delay >= asked  # the server's Retry-After is honoured, up to its cap
    assert ceiling / 2 <= delay <= max(ceiling, asked)  # half fixed, half jitter, capped


@given(schedules, st.integers(0, 60))
def test_the_schedule_grows_until_its_cap(backoff: Backoff, attempt: int) -> None:
    lowest = [backoff.delay(a, rng=random.Random(0)) for a in (attempt, attempt + 1)]
    assert min(backoff.cap, backoff.base * 2.0**attempt) / 2 <= lowest[0] <= backoff.cap
    assert lowest[1] >= min(backoff.cap, backoff.base * 2.0 ** (attempt + 1)) / 2


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now) == 0  # in the past
    assert retry_after_seconds("soon", now) == retry_after_seconds(None, now) == 0
