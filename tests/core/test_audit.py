"""The flag-change audit log: a SHA-256 hash chain that detects edits, reordering and deletion."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ramplight.core.audit import GENESIS_HASH, FlagChange, broken_links, change_hash

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def change(n: int, **overrides: Any) -> FlagChange:
    fields: dict[str, Any] = {
        "change_id": f"c{n}",
        "ts": T0 + timedelta(minutes=n),
        "environment": "production",
        "flag_key": "checkout_copy",
        "version": n,
        "actor": "ana@example.com",
        "action": "ramp",
        "before": {"weights": {"control": 100 - n, "candidate": n}},
        "after": {"weights": {"control": 99 - n, "candidate": n + 1}},
        "reason": f"step {n}",
    }
    fields.update(overrides)
    return FlagChange(**fields)


def chained(changes: list[FlagChange]) -> list[FlagChange]:
    """Link changes as a store does: each carries the previous hash and its own."""
    out = []
    prev = GENESIS_HASH
    for c in changes:
        linked = dataclasses.replace(c, prev_hash=prev, hash=change_hash(c, prev))
        out.append(linked)
        prev = linked.hash
    return out


@pytest.fixture
def log() -> list[FlagChange]:
    return chained([change(1, action="create", before=None), *(change(n) for n in range(2, 6))])


def test_an_untouched_chain_verifies(log: list[FlagChange]) -> None:
    assert broken_links(log) == []
    assert log[0].prev_hash == GENESIS_HASH
    assert all(len(c.hash) == 64 for c in log)


def test_the_hash_covers_prev_hash_so_the_same_change_hashes_differently_elsewhere() -> None:
    assert change_hash(change(1), GENESIS_HASH) != change_hash(change(1), "f" * 64)


def test_the_hash_ignores_key_order_inside_before_and_after() -> None:
    a = change(1, after={"x": 1, "y": [1, 2]})
    b = change(1, after={"y": [1, 2], "x": 1})
    assert change_hash(a, GENESIS_HASH) == change_hash(b, GENESIS_HASH)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("change_id", "c-forged"),
        ("ts", T0 + timedelta(hours=5)),
        ("environment", "staging"),
        ("environment", None),
        ("flag_key", "other_flag"),
        ("version", 99),
        ("actor", "mallory@example.com"),
        ("action", "kill"),
        ("before", {"weights": {"control": 0, "candidate": 100}}),
        ("after", {"weights": {"control": 50, "candidate": 50}}),
        ("after", None),
        ("reason", "nothing to see"),
        ("reason", None),
    ],
)
def test_editing_any_field_of_a_row_is_detected_at_that_row(
    log: list[FlagChange], field: str, value: Any
) -> None:
    tampered = list(log)
    tampered[2] = dataclasses.replace(log[2], **{field: value})
    assert broken_links(tampered) == [tampered[2].change_id]


def test_rewriting_a_rows_hash_to_match_its_edit_breaks_the_next_link(log: list[FlagChange]) -> None:
    edited = dataclasses.replace(log[2], reason="approved by nobody")
    edited = dataclasses.replace(edited, hash=change_hash(edited, edited.prev_hash))
    tampered = [*log[:2], edited, *log[3:]]
    assert broken_links(tampered) == ["c4"]


@pytest.mark.parametrize("index", [0, 2, 3])
def test_deleting_a_row_is_detected_at_the_row_after_it(log: list[FlagChange], index: int) -> None:
    remaining = log[:index] + log[index + 1 :]
    assert broken_links(remaining) == [log[index + 1].change_id]


def test_swapping_two_rows_is_detected(log: list[FlagChange]) -> None:
    swapped = [log[0], log[2], log[1], *log[3:]]
    assert broken_links(swapped) == ["c3", "c2", "c4"]


def test_inserting_a_forged_row_is_detected(log: list[FlagChange]) -> None:
    forged = chained([change(9, action="promote")])[0]
    assert broken_links([*log[:3], forged, *log[3:]]) == ["c9", "c4"]
