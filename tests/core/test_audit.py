"""The audit log: SHA-256 hash chains, per-row MACs and a head kept outside the database, which
together name the first edited, deleted or reordered row."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ramplight.core.audit import (
    GENESIS_HASH,
    AuditHead,
    Decision,
    FlagChange,
    broken_links,
    change_hash,
    change_mac,
    decision_hash,
    decision_mac,
    make_head,
    verify_changes,
    verify_decisions,
    verify_flag_history,
)

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


# -- verification with MACs and a head kept outside the database ----------------------------

KEY = b"k" * 32


def sealed(changes: list[FlagChange], key: bytes = KEY) -> list[FlagChange]:
    """Link and seal rows as the store does: seq, both links, hash, MAC."""
    out: list[FlagChange] = []
    last_of_flag: dict[str, str] = {}
    prev = GENESIS_HASH
    for seq, c in enumerate(changes, start=1):
        row = dataclasses.replace(
            c, seq=seq, prev_hash=prev, flag_prev_hash=last_of_flag.get(c.flag_key, GENESIS_HASH)
        )
        row = dataclasses.replace(row, hash=change_hash(row, prev))
        row = dataclasses.replace(row, mac=change_mac(key, row))
        out.append(row)
        prev = last_of_flag[c.flag_key] = row.hash
    return out


def rehash_from(rows: list[FlagChange], start: int) -> list[FlagChange]:
    """What an attacker without the secret can do: recompute every hash and link from `start`."""
    out = list(rows[:start])
    for row in rows[start:]:
        prev = out[-1].hash if out else GENESIS_HASH
        same_flag = [r for r in out if r.flag_key == row.flag_key]
        fixed = dataclasses.replace(
            row, prev_hash=prev, flag_prev_hash=same_flag[-1].hash if same_flag else GENESIS_HASH
        )
        out.append(dataclasses.replace(fixed, hash=change_hash(fixed, prev)))
    return out


def swap_seq(rows: list[FlagChange], a: int, b: int) -> list[FlagChange]:
    out = list(rows)
    out[a], out[b] = (
        dataclasses.replace(rows[b], seq=rows[a].seq),
        dataclasses.replace(rows[a], seq=rows[b].seq),
    )
    return out


def forge(rows: list[FlagChange], at: int) -> list[FlagChange]:
    """A row Ramplight did not write, linked after rows[at - 1], later rows renumbered."""
    fake = dataclasses.replace(
        rows[at - 1], change_id="c9", seq=rows[at].seq, prev_hash=rows[at - 1].hash, mac=None
    )
    fake = dataclasses.replace(fake, hash=change_hash(fake, fake.prev_hash))
    return [*rows[:at], fake, *(dataclasses.replace(r, seq=r.seq + 1) for r in rows[at:])]


@pytest.fixture
def two_flags() -> list[FlagChange]:
    """c1..c6 alternating between two flags, sealed."""
    return sealed([change(n, flag_key="checkout_copy" if n % 2 else "model_route") for n in range(1, 7)])


def head_of(rows: list[FlagChange]) -> list[AuditHead]:
    """The head log a store keeps: its start, then a head after each write."""
    return [make_head(KEY, "flag_changes", 0, GENESIS_HASH, "start")] + [
        make_head(KEY, "flag_changes", r.seq, r.hash) for r in rows
    ]


TAMPERINGS: list[tuple[str, Callable[[list[FlagChange]], list[FlagChange]], str, str | None, int]] = [
    ("edited reason", lambda r: [*r[:2], dataclasses.replace(r[2], reason="routine"), *r[3:]], "edited", "c3", 3),
    ("edited after", lambda r: [*r[:2], dataclasses.replace(r[2], after={"weights": {"x": 1}}), *r[3:]], "edited", "c3", 3),
    ("deleted middle row", lambda r: [*r[:2], *r[3:]], "deleted", "c4", 4),
    ("deleted first row", lambda r: r[1:], "deleted", "c2", 2),
    ("swapped rows", lambda r: swap_seq(r, 1, 2), "reordered", "c3", 2),
    ("deleted newest row", lambda r: r[:-1], "truncated", None, 6),
    ("deleted two newest rows", lambda r: r[:-2], "truncated", None, 5),
    ("edited then re-hashed", lambda r: rehash_from([*r[:2], dataclasses.replace(r[2], reason="ok"), *r[3:]], 2), "rehashed", "c3", 3),
    ("deleted then re-hashed", lambda r: rehash_from([*r[:2], *r[3:]], 2), "deleted", "c4", 4),
    ("forged row inserted", lambda r: forge(r, 3), "unsealed", "c9", 4),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "tamper", "kind", "row_id", "seq"), TAMPERINGS, ids=[t[0] for t in TAMPERINGS]
)
def test_each_tampering_is_named_at_the_first_broken_row(
    two_flags: list[FlagChange],
    name: str,
    tamper: Callable[[list[FlagChange]], list[FlagChange]],
    kind: str,
    row_id: str | None,
    seq: int,
) -> None:
    report = verify_changes(tamper(two_flags), KEY, head_of(two_flags))
    assert not report.ok
    assert report.first_break is not None
    assert (report.first_break.kind, report.first_break.row_id, report.first_break.seq) == (kind, row_id, seq)


def test_a_sealed_chain_with_its_head_verifies(two_flags: list[FlagChange]) -> None:
    report = verify_changes(two_flags, KEY, head_of(two_flags))
    assert report.ok and report.first_break is None
    assert (report.rows, report.keyed, report.head_seq, report.head_hash) == (6, True, 6, two_flags[-1].hash)


def test_deleting_the_newest_rows_then_writing_again_is_caught_by_the_earlier_head(
    two_flags: list[FlagChange],
) -> None:
    later = sealed([*two_flags[:4], change(7), change(8)])
    found = verify_changes(later, KEY, [*head_of(two_flags), *head_of(later)[-1:]]).first_break
    assert found is not None and (found.kind, found.row_id, found.seq) == ("rehashed", "c7", 5)


def test_without_the_secret_a_rehashed_chain_is_caught_only_by_the_head(two_flags: list[FlagChange]) -> None:
    tampered = rehash_from(
        [*two_flags[:2], dataclasses.replace(two_flags[2], reason="ok"), *two_flags[3:]], 2
    )
    assert verify_changes(tampered).ok
    report = verify_changes(tampered, heads=head_of(two_flags))
    assert report.first_break is not None
    assert (report.first_break.kind, report.first_break.row_id) == ("rehashed", "c3")


def test_a_missing_or_forged_head_fails_verification(two_flags: list[FlagChange]) -> None:
    missing = verify_changes(two_flags, KEY, []).first_break
    assert missing is not None and missing.kind == "head_missing"
    restarted = verify_changes(two_flags, KEY, head_of(two_flags)[3:]).first_break
    assert restarted is not None and restarted.kind == "head_missing"
    forged = [*head_of(two_flags), make_head(b"another secret", "flag_changes", 7, "f" * 64)]
    invalid = verify_changes(two_flags, KEY, forged).first_break
    assert invalid is not None and invalid.kind == "head_invalid"
    assert verify_changes([], KEY, []).ok


def test_without_the_secret_a_forged_row_is_named_by_the_link_it_skips(two_flags: list[FlagChange]) -> None:
    found = verify_changes(forge(two_flags, 3)).first_break
    assert found is not None and (found.kind, found.row_id, found.seq) == ("inserted", "c9", 4)


def test_a_row_without_a_mac_is_unsealed(two_flags: list[FlagChange]) -> None:
    tampered = [*two_flags[:4], dataclasses.replace(two_flags[4], mac=None), two_flags[5]]
    found = verify_changes(tampered, KEY, head_of(two_flags)).first_break
    assert found is not None and (found.kind, found.row_id) == ("unsealed", "c5")


def test_the_mac_depends_on_the_secret(two_flags: list[FlagChange]) -> None:
    found = verify_changes(two_flags, b"wrong", None).first_break
    assert found is not None and (found.kind, found.row_id) == ("rehashed", "c1")


def test_legacy_rows_hash_without_the_flag_link_and_still_verify() -> None:
    legacy = sealed([change(n, hash_version=1) for n in range(1, 4)])
    assert change_hash(legacy[1], legacy[0].hash) == change_hash(
        dataclasses.replace(legacy[1], flag_prev_hash="f" * 64), legacy[0].hash
    )
    report = verify_changes(legacy, KEY)
    assert report.ok and report.legacy_rows == 3


# -- one flag's rows on their own -----------------------------------------------------------


def flag_rows(rows: list[FlagChange], key: str = "checkout_copy") -> list[FlagChange]:
    return [r for r in rows if r.flag_key == key]


def test_one_flags_rows_verify_on_their_own(two_flags: list[FlagChange]) -> None:
    mine = flag_rows(two_flags)
    assert [r.change_id for r in mine] == ["c1", "c3", "c5"]
    report = verify_flag_history(mine)
    assert report.ok and report.chain == "flag:checkout_copy"
    assert verify_flag_history(mine, KEY, anchor=(mine[-1].seq, mine[-1].hash)).ok
    assert verify_changes(mine).ok is False  # the global chain does not verify from one flag


FLAG_TAMPERINGS: list[tuple[str, Callable[[list[FlagChange]], list[FlagChange]], str, str | None]] = [
    ("edited", lambda r: [r[0], dataclasses.replace(r[1], reason="routine"), r[2]], "edited", "c3"),
    ("deleted middle", lambda r: [r[0], r[2]], "deleted", "c5"),
    ("swapped", lambda r: [dataclasses.replace(r[1], seq=1), dataclasses.replace(r[0], seq=3), r[2]], "reordered", "c3"),
    ("deleted newest", lambda r: r[:2], "truncated", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "tamper", "kind", "row_id"), FLAG_TAMPERINGS, ids=[t[0] for t in FLAG_TAMPERINGS]
)
def test_tampering_with_one_flags_rows_is_named_from_those_rows_alone(
    two_flags: list[FlagChange],
    name: str,
    tamper: Callable[[list[FlagChange]], list[FlagChange]],
    kind: str,
    row_id: str | None,
) -> None:
    mine = flag_rows(two_flags)
    found = verify_flag_history(tamper(mine), anchor=(mine[-1].seq, mine[-1].hash)).first_break
    assert found is not None and (found.kind, found.row_id) == (kind, row_id)


# -- decisions --------------------------------------------------------------------------------


def decision(n: int, **overrides: Any) -> Decision:
    fields: dict[str, Any] = {
        "decision_id": f"d{n}",
        "ts": T0 + timedelta(minutes=n),
        "environment": "production",
        "flag_key": "checkout_copy",
        "state": "expand",
        "actor": "ana@example.com",
        "forced": False,
        "reason": f"stage {n}",
        "recommendation": {"action": "expand"},
        "evidence": {"units": 1000 * n},
        "sql": "SELECT 1",
        "fingerprint": "f" * 16,
        "flag_version": n,
        "rollout_before": {"weights": {"control": 95, "candidate": 5}},
        "rollout_after": {"weights": {"control": 80, "candidate": 20}},
    }
    fields.update(overrides)
    return Decision(**fields)


@pytest.fixture
def decided() -> list[Decision]:
    out: list[Decision] = []
    prev = GENESIS_HASH
    for seq in range(1, 5):
        d = dataclasses.replace(decision(seq), seq=seq, prev_hash=prev)
        d = dataclasses.replace(d, hash=decision_hash(d, prev))
        out.append(dataclasses.replace(d, mac=decision_mac(KEY, d)))
        prev = d.hash
    return out


DECISION_TAMPERINGS: list[tuple[str, Callable[[list[Decision]], list[Decision]], str, str | None, int]] = [
    ("edited reason", lambda r: [r[0], dataclasses.replace(r[1], reason="approved"), *r[2:]], "edited", "d2", 2),
    ("edited evidence", lambda r: [r[0], dataclasses.replace(r[1], evidence={"units": 1}), *r[2:]], "edited", "d2", 2),
    ("deleted middle row", lambda r: [r[0], *r[2:]], "deleted", "d3", 3),
    ("swapped rows", lambda r: [r[0], dataclasses.replace(r[2], seq=2), dataclasses.replace(r[1], seq=3), r[3]], "reordered", "d3", 2),
    ("deleted newest row", lambda r: r[:-1], "truncated", None, 4),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "tamper", "kind", "row_id", "seq"), DECISION_TAMPERINGS, ids=[t[0] for t in DECISION_TAMPERINGS]
)
def test_each_tampering_with_decisions_is_named(
    decided: list[Decision],
    name: str,
    tamper: Callable[[list[Decision]], list[Decision]],
    kind: str,
    row_id: str | None,
    seq: int,
) -> None:
    head = [make_head(KEY, "decisions", 0, GENESIS_HASH, "start")]
    head += [make_head(KEY, "decisions", d.seq, d.hash) for d in decided]
    assert verify_decisions(decided, KEY, head).ok
    found = verify_decisions(tamper(decided), KEY, head).first_break
    assert found is not None and (found.kind, found.row_id, found.seq) == (kind, row_id, seq)


def test_a_decision_edited_and_rehashed_fails_its_mac(decided: list[Decision]) -> None:
    edited = dataclasses.replace(decided[1], reason="approved")
    edited = dataclasses.replace(edited, hash=decision_hash(edited, edited.prev_hash))
    found = verify_decisions([decided[0], edited], KEY).first_break
    assert found is not None and (found.kind, found.row_id) == ("rehashed", "d2")
