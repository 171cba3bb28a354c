"""Deterministic bucketing: `salt:unit_id` → 64-bit position → slot → variation.

The algorithm is specified in `spec/bucketing.md`; `spec/vectors/*.json` pins it bit for bit.
Rollouts are allocations of slot ranges (listed oldest first), and `reallocate` changes weights
so that a variation that grows keeps every unit it had and takes units only from variations
that shrank, and a rolled-back ramp returns exactly the units it took.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import xxhash

SLOTS = 100_000
"""Rollout granularity: a weight is a whole number of slots, i.e. a multiple of 0.001 %."""

_HASH_BITS = 64


def unit_hash(salt: str, unit_id: str) -> int:
    """The unit's 64-bit position: XXH3-64 (seed 0) of the UTF-8 bytes of `salt:unit_id`."""
    return xxhash.xxh3_64_intdigest(f"{salt}:{unit_id}".encode())


def slot_of(position: int) -> int:
    """Map a 64-bit position to a slot in [0, SLOTS): floor(position * SLOTS / 2**64)."""
    return (position * SLOTS) >> _HASH_BITS


def slot_threshold(slot: int) -> int:
    """The smallest 64-bit position whose slot is >= `slot` (so comparisons skip the multiply)."""
    return -(-(slot << _HASH_BITS) // SLOTS)


def percent_to_slots(percent: float) -> int:
    """Convert a percentage (0..100, at most three decimals) to slots, exactly."""
    return round(percent * (SLOTS // 100))


def slots_to_percent(slots: int) -> float:
    return slots / (SLOTS // 100)


@dataclass(frozen=True, slots=True)
class SlotRange:
    """Slots [start, end) served `variation`."""

    variation: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


Allocation = tuple[SlotRange, ...]


def contiguous_allocation(slots_by_variation: Mapping[str, int]) -> Allocation:
    """Lay the variations out one after another in the mapping's order (the initial layout)."""
    ranges: list[SlotRange] = []
    start = 0
    for variation, size in slots_by_variation.items():
        if size > 0:
            ranges.append(SlotRange(variation, start, start + size))
            start += size
    return tuple(ranges)


def slots_by_variation(allocation: Iterable[SlotRange]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for r in allocation:
        sizes[r.variation] = sizes.get(r.variation, 0) + r.size
    return sizes


def _merge(ranges: Iterable[SlotRange]) -> Allocation:
    """Drop empty ranges; join a range to the one before it in the list when the same variation
    continues it (list order is age order, so only list neighbours may merge)."""
    merged: list[SlotRange] = []
    for r in ranges:
        if r.size == 0:
            continue
        if merged and merged[-1].variation == r.variation and merged[-1].end == r.start:
            merged[-1] = SlotRange(r.variation, merged[-1].start, r.end)
        else:
            merged.append(r)
    return tuple(merged)


def reallocate(current: Allocation, target: Mapping[str, int]) -> Allocation:
    """Move from `current` to the slot counts in `target`, moving as few units as possible.

    The list order of ranges is their age (oldest first). A shrinking variation gives up its
    newest slots first (from the top of its newest range), so a ramp that is rolled back returns
    exactly the units it took; growing variations take freed slots lowest-first, in `target`
    order, appended as their newest ranges. Unchanged variations keep their ranges, so a unit
    only ever moves from a shrinking to a growing variation.
    """
    have = slots_by_variation(current)
    give: list[int] = [0] * len(current)
    for variation, size in have.items():
        release = size - target.get(variation, 0)
        for index in range(len(current) - 1, -1, -1):
            if release <= 0:
                break
            if current[index].variation == variation:
                give[index] = min(release, current[index].size)
                release -= give[index]
    kept: list[SlotRange] = []
    freed: list[tuple[int, int]] = []
    for r, amount in zip(current, give, strict=True):
        if amount < r.size:
            kept.append(SlotRange(r.variation, r.start, r.end - amount))
        if amount:
            freed.append((r.end - amount, r.end))
    # Slots never allocated before (a fresh layout, or weights that did not sum to SLOTS).
    cursor = 0
    for start, end in sorted((r.start, r.end) for r in current):
        if start > cursor:
            freed.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < SLOTS:
        freed.append((cursor, SLOTS))
    pool = [list(interval) for interval in sorted(freed)]
    for variation, size in target.items():
        need = size - have.get(variation, 0)
        while need > 0 and pool:
            start, end = pool[0]
            take = min(need, end - start)
            kept.append(SlotRange(variation, start, start + take))
            need -= take
            if start + take == end:
                pool.pop(0)
            else:
                pool[0][0] = start + take
    return _merge(kept)


def thresholds(allocation: Sequence[SlotRange]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Upper position bounds and variations for a bisect lookup over a full allocation; equal
    allocations (many flags ramp 95/5) share one result."""
    return _thresholds(tuple(allocation))


@lru_cache(maxsize=4096)
def _thresholds(allocation: tuple[SlotRange, ...]) -> tuple[tuple[int, ...], tuple[str, ...]]:
    ordered = sorted(allocation, key=lambda r: r.start)
    uppers = tuple(slot_threshold(r.end) for r in ordered)
    return uppers, tuple(r.variation for r in ordered)


def variation_for_slot(allocation: Iterable[SlotRange], slot: int) -> str | None:
    for r in allocation:
        if r.start <= slot < r.end:
            return r.variation
    return None
