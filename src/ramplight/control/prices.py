"""The price table as code: `apply` makes the stored table match the file's `prices:` (the whole
table: an entry left out of the file is removed), with a diff; a second run changes nothing."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import msgspec

from ramplight.control.files import PlannedChange
from ramplight.core.prices import Price, convert_prices
from ramplight.store.base import ControlStore


def _lines(prices: Sequence[Price]) -> list[str]:
    return [msgspec.json.encode(p).decode() + "\n" for p in prices]


def apply_prices(
    store: ControlStore, docs: Sequence[Mapping[str, Any]] | None, dry_run: bool = False
) -> list[PlannedChange]:
    """Replace the table with `docs` (None: leave it alone, as a file without `prices:` does)."""
    if docs is None:
        return []
    prices = convert_prices(docs)
    stored = store.list_prices()
    before, after = _lines(stored), _lines(prices)
    if before == after:
        return [PlannedChange("prices", "unchanged", "", None)]
    action: Literal["create", "update"] = "update" if stored else "create"
    diff = "".join(difflib.unified_diff(before, after, "prices (stored)", "prices (file)"))
    if not dry_run:
        store.replace_prices(prices)
    return [PlannedChange("prices", action, diff, None)]
