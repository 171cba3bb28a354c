"""Invariants of bucketing: determinism, even splits, ramp monotonicity and rollback of `reallocate`."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from itertools import pairwise

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from ramplight.core.bucketing import (
    SLOTS,
    Allocation,
    SlotRange,
    contiguous_allocation,
    reallocate,
    slot_of,
    slot_threshold,
    slots_by_variation,
    unit_hash,
    variation_for_slot,
)
from tests.core.builders import checked, compiled, flag_doc, rollout

VARIATIONS = ("control", "candidate", "fallback", "holdout", "variant_d")
INDEX = {v: i for i, v in enumerate(VARIATIONS)}
MAX_POSITION = 2**64 - 1

fast = settings(max_examples=60, deadline=None)


@st.composite
def slot_counts(draw: st.DrawFn, min_variations: int = 1) -> dict[str, int]:
    """Slot counts for 1-5 variations (in random order) summing to SLOTS; zeros allowed."""
    keys = draw(st.permutations(VARIATIONS))[: draw(st.integers(min_variations, len(VARIATIONS)))]
    cuts = sorted(draw(st.lists(st.integers(0, SLOTS), min_size=len(keys) - 1, max_size=len(keys) - 1)))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, SLOTS], strict=True)]
    return dict(zip(keys, sizes, strict=True))


@st.composite
def allocations(draw: st.DrawFn) -> Allocation:
    """A current allocation: an initial layout, possibly fragmented by a few earlier changes."""
    allocation = contiguous_allocation(draw(slot_counts()))
    for target in draw(st.lists(slot_counts(), max_size=3)):
        allocation = reallocate(allocation, target)
    return allocation


def slot_map(allocation: Allocation) -> npt.NDArray[np.int8]:
    """The variation index serving each slot (-1: none)."""
    out = np.full(SLOTS, -1, dtype=np.int8)
    for r in allocation:
        assert (out[r.start : r.end] == -1).all(), f"{r} overlaps another range"
        out[r.start : r.end] = INDEX[r.variation]
    return out


def assert_tiles(allocation: Allocation, target: Mapping[str, int]) -> None:
    """Sorted by start, the ranges tile 0..SLOTS; in list (age) order, no range continues its
    predecessor of the same variation unmerged; each variation has its target size."""
    ordered = sorted(allocation, key=lambda r: r.start)
    assert [r.start for r in ordered] == [0] + [r.end for r in ordered[:-1]]
    assert ordered[-1].end == SLOTS
    assert all(r.size > 0 for r in allocation)
    assert not any(a.variation == b.variation and a.end == b.start for a, b in pairwise(allocation)), (
        "list neighbours of one variation left unmerged"
    )
    assert slots_by_variation(allocation) == {k: v for k, v in target.items() if v > 0}


def transfer(allocation: Allocation, taker: str, giver: str, delta: int) -> Allocation:
    """Move `delta` slots from `giver` to `taker`, every other variation unchanged."""
    target = slots_by_variation(allocation)
    target[giver] -= delta
    target[taker] = target.get(taker, 0) + delta
    return reallocate(allocation, target)


# -- hashing ------------------------------------------------------------------------------


@fast
@given(salt=st.text(max_size=40), unit_id=st.text(max_size=80))
def test_a_units_position_depends_only_on_salt_and_unit_id(salt: str, unit_id: str) -> None:
    position = unit_hash(salt, unit_id)
    assert 0 <= position <= MAX_POSITION
    assert unit_hash(salt, unit_id) == position
    assert 0 <= slot_of(position) < SLOTS


@fast
@given(
    counts=slot_counts(),
    salt=st.text(min_size=1, max_size=20),
    unit_ids=st.lists(st.text(max_size=30), max_size=30),
)
def test_compiled_evaluation_serves_the_variation_whose_range_holds_the_units_slot(
    counts: dict[str, int], salt: str, unit_ids: list[str]
) -> None:
    weights = {k: v / 1000 for k, v in counts.items()}
    variations = [{"key": k, "value": k} for k in counts]
    flag = checked(
        flag_doc(
            variations=variations,
            default_variation=variations[0]["key"],
            off_variation=variations[0]["key"],
            salt=salt,
            rollout=rollout(**weights),
        )
    )
    allocation = contiguous_allocation(counts)
    config = compiled(flag)
    again = compiled(flag)
    for unit_id in unit_ids:
        expected = variation_for_slot(allocation, slot_of(unit_hash(salt, unit_id)))
        first = config.evaluate(flag.key, unit_id)
        assert first.variation == expected
        assert again.evaluate(flag.key, unit_id) == first


@settings(max_examples=12, deadline=None, derandomize=True)
@given(counts=slot_counts(min_variations=2), salt=st.text(min_size=1, max_size=12))
def test_split_matches_the_weights_within_five_sigma(counts: dict[str, int], salt: str) -> None:
    n = 20_000
    allocation = contiguous_allocation(counts)
    served = Counter(variation_for_slot(allocation, slot_of(unit_hash(salt, f"unit-{i}"))) for i in range(n))
    for variation, slots in counts.items():
        p = slots / SLOTS
        bound = 5 * math.sqrt(n * p * (1 - p)) + 1
        assert abs(served[variation] - n * p) <= bound, (variation, served[variation], n * p)


# -- thresholds ---------------------------------------------------------------------------

EDGE_POSITIONS = st.sampled_from([0, 1, 2**63 - 1, 2**63, MAX_POSITION - 1, MAX_POSITION])


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(0, MAX_POSITION) | EDGE_POSITIONS,
    slot=st.integers(0, SLOTS) | st.sampled_from([0, 1, SLOTS - 1, SLOTS]),
)
def test_position_reaches_a_threshold_exactly_when_its_slot_does(position: int, slot: int) -> None:
    assert (position >= slot_threshold(slot)) == (slot_of(position) >= slot)


@fast
@given(slot=st.integers(0, SLOTS))
def test_slot_threshold_and_the_position_before_it_straddle_the_slot_boundary(slot: int) -> None:
    threshold = slot_threshold(slot)
    if slot < SLOTS:
        assert slot_of(threshold) == slot
    else:
        assert threshold == 2**64
    if slot > 0:
        assert slot_of(threshold - 1) == slot - 1


def test_every_slot_has_the_same_number_of_positions_up_to_one() -> None:
    widths = {slot_threshold(s + 1) - slot_threshold(s) for s in range(SLOTS)}
    assert widths <= {2**64 // SLOTS, 2**64 // SLOTS + 1}


# -- ramp monotonicity --------------------------------------------------------------------


@fast
@given(current=allocations(), target=slot_counts())
def test_reallocate_tiles_every_slot_and_gives_each_variation_its_target(
    current: Allocation, target: dict[str, int]
) -> None:
    assert_tiles(reallocate(current, target), target)


@fast
@given(current=allocations(), target=slot_counts())
def test_only_units_of_shrinking_variations_move_and_only_into_growing_ones(
    current: Allocation, target: dict[str, int]
) -> None:
    have = slots_by_variation(current)
    before, after = slot_map(current), slot_map(reallocate(current, target))
    shrinking = [INDEX[v] for v, n in have.items() if target.get(v, 0) < n]
    growing = [INDEX[v] for v, n in target.items() if n > have.get(v, 0)]
    moved = before != after
    assert not (moved & ~np.isin(before, shrinking)).any(), "a unit of a variation that did not shrink moved"
    assert np.isin(after[moved], growing).all(), "a unit moved into a variation that did not grow"


@fast
@given(current=allocations(), target=slot_counts())
def test_reallocate_moves_no_more_units_than_the_weights_change_requires(
    current: Allocation, target: dict[str, int]
) -> None:
    have = slots_by_variation(current)
    moved = int((slot_map(current) != slot_map(reallocate(current, target))).sum())
    assert moved == sum(max(0, n - have.get(v, 0)) for v, n in target.items())


@fast
@given(current=allocations(), data=st.data())
def test_a_single_transfer_moves_only_the_givers_units_and_only_to_the_taker(
    current: Allocation, data: st.DataObject
) -> None:
    have = slots_by_variation(current)
    giver = data.draw(st.sampled_from(sorted(have)))
    taker = data.draw(st.sampled_from([v for v in VARIATIONS if v != giver]))
    delta = data.draw(st.integers(1, have[giver]))
    target = dict(have)
    target[giver] -= delta
    target[taker] = target.get(taker, 0) + delta
    before, after = slot_map(current), slot_map(reallocate(current, target))
    moved = before != after
    assert int(moved.sum()) == delta
    assert (before[moved] == INDEX[giver]).all()
    assert (after[moved] == INDEX[taker]).all()


@fast
@given(start=allocations(), fallback=st.integers(0, 20_000), data=st.data())
def test_raising_the_candidate_never_moves_its_units_or_the_fallbacks(
    start: Allocation, fallback: int, data: st.DataObject
) -> None:
    room = SLOTS - fallback
    steps = sorted(data.draw(st.lists(st.integers(1, room), min_size=1, max_size=6, unique=True)))
    allocation = reallocate(start, {"control": room, "fallback": fallback})
    previous = slot_map(allocation)
    for candidate in steps:
        allocation = reallocate(
            allocation, {"control": room - candidate, "candidate": candidate, "fallback": fallback}
        )
        now = slot_map(allocation)
        assert (now[previous == INDEX["candidate"]] == INDEX["candidate"]).all()
        assert ((previous == INDEX["fallback"]) == (now == INDEX["fallback"])).all()
        previous = now


def test_ramp_schedule_1_5_20_50_100_never_moves_a_unit_out_of_the_candidate() -> None:
    units = [f"conversation-{i}" for i in range(5_000)]
    flag = checked(flag_doc(rollout=rollout(control=100)))
    in_candidate: set[str] = set()
    for percent in (1, 5, 20, 50, 100):
        flag = checked(flag_doc(rollout=rollout(control=100 - percent, candidate=percent)), previous=flag)
        config = compiled(flag)
        now = {u for u in units if config.evaluate(flag.key, u).variation == "candidate"}
        assert in_candidate <= now, f"{len(in_candidate - now)} units left the candidate at {percent} %"
        assert abs(len(now) - len(units) * percent / 100) <= 5 * math.sqrt(len(units) * 0.25) + 1
        in_candidate = now
    assert in_candidate == set(units)


# -- rollback -----------------------------------------------------------------------------


@fast
@given(current=allocations(), data=st.data())
def test_reversing_a_single_transfer_restores_every_units_variation(
    current: Allocation, data: st.DataObject
) -> None:
    have = slots_by_variation(current)
    giver = data.draw(st.sampled_from(sorted(have)))
    taker = data.draw(st.sampled_from([v for v in VARIATIONS if v != giver]))
    delta = data.draw(st.integers(1, have[giver]))
    forward = transfer(current, taker, giver, delta)
    back = transfer(forward, giver, taker, delta)
    assert_tiles(back, have)
    assert (slot_map(back) == slot_map(current)).all(), "the reverse transfer did not return the same units"
    # The units the giver got back are its newest: taking them again moves the same units.
    assert (slot_map(transfer(back, taker, giver, delta)) == slot_map(forward)).all()


@st.composite
def ramp_schedules(draw: st.DrawFn) -> tuple[int, list[int]]:
    """A fallback size and strictly increasing candidate sizes (the first is where the ramp starts)."""
    fallback = draw(st.integers(0, 20_000))
    steps = draw(st.lists(st.integers(0, SLOTS - fallback), min_size=2, max_size=7, unique=True))
    return fallback, sorted(steps)


@fast
@given(start=allocations(), schedule=ramp_schedules())
def test_ramping_up_then_down_the_same_steps_restores_each_earlier_assignment(
    start: Allocation, schedule: tuple[int, list[int]]
) -> None:
    fallback, steps = schedule
    room = SLOTS - fallback

    def target(candidate: int) -> dict[str, int]:
        return {"control": room - candidate, "candidate": candidate, "fallback": fallback}

    allocation = reallocate(start, target(steps[0]))
    seen = [slot_map(allocation)]
    for candidate in steps[1:]:
        allocation = reallocate(allocation, target(candidate))
        seen.append(slot_map(allocation))
    for candidate, expected in zip(reversed(steps[:-1]), reversed(seen[:-1]), strict=True):
        allocation = reallocate(allocation, target(candidate))
        assert_tiles(allocation, target(candidate))
        assert (slot_map(allocation) == expected).all(), (
            f"ramping down to {candidate} slots moved other units"
        )
    # Ramping up again after the rollback exposes exactly the units the first ramp exposed.
    for candidate, expected in zip(steps[1:], seen[1:], strict=True):
        allocation = reallocate(allocation, target(candidate))
        assert (slot_map(allocation) == expected).all(), f"ramping up again to {candidate} slots differs"


def test_ramp_5_20_5_returns_the_units_it_took_and_keeps_the_original_cohort() -> None:
    original = contiguous_allocation({"control": 95_000, "candidate": 5_000})
    ramped = reallocate(original, {"control": 80_000, "candidate": 20_000})
    assert ramped == (
        SlotRange("control", 0, 80_000),
        SlotRange("candidate", 95_000, SLOTS),
        SlotRange("candidate", 80_000, 95_000),
    )
    back = reallocate(ramped, {"control": 95_000, "candidate": 5_000})
    assert back == (
        SlotRange("control", 0, 80_000),
        SlotRange("candidate", 95_000, SLOTS),
        SlotRange("control", 80_000, 95_000),
    )
    assert (slot_map(back) == slot_map(original)).all()
    assert reallocate(back, {"control": 80_000, "candidate": 20_000}) == ramped
