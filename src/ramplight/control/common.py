"""What every control use case shares: the clock and plain-data conversion."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)
