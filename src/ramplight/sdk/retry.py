"""When to try again: one backoff schedule (exponential, jittered, capped, honouring a server's
`Retry-After`) shared by the config poller and the event queue."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number `attempt` (0-based): `base · 2^attempt` capped at `cap`, with
    "equal jitter" (half fixed, half random) so clients that failed together spread out; never
    shorter than a server's `Retry-After`, itself capped at `max_retry_after`."""

    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 300.0

    def delay(self, attempt: int, retry_after: float = 0.0, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 62))
        # AWS Architecture Blog, "Exponential Backoff And Jitter" (2015): equal jitter.
        jittered = ceiling / 2 + float((rng or random).uniform(0, ceiling / 2))
        wait: float = max(jittered, min(max(retry_after, 0.0), self.max_retry_after))
        return wait


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float:
    """Seconds a `Retry-After` header asks for: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); 0 when absent, unparsable or in the past."""
    if not value:
        return 0.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
