"""Phases from the change log: a new phase at every weight change, kill and restore, and only then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from ramplight.core.audit import ChangeAction, FlagChange
from ramplight.core.errors import ValidationError
from ramplight.core.flags import check_flag, convert_flag, stabilize
from ramplight.core.phases import Phase, phase_bounds, phase_of, phases_from_changes

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
PROD = "production"
STAGING = "staging"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def env(candidate: float | None = None, *, enabled: bool = True, default: str = "control") -> dict[str, Any]:
    """An environment config serving `candidate` percent to candidate (None: no rollout)."""
    doc: dict[str, Any] = {"default_variation": default, "off_variation": "control", "enabled": enabled}
    if candidate is not None:
        doc["rollout"] = {"weights": {"control": 100 - candidate, "candidate": candidate}}
    return doc


def document(*, description: str = "", archived: bool = False, **environments: dict[str, Any]) -> Any:
    """The flag document a change row stores: a checked, stabilized flag as builtins."""
    flag = convert_flag(
        {
            "key": "checkout_copy",
            "type": "string",
            "assignment_unit": "user",
            "variations": [{"key": "control", "value": "A"}, {"key": "candidate", "value": "B"}],
            "environments": environments,
            "description": description,
            "archived": archived,
        }
    )
    check_flag(flag)
    return msgspec.to_builtins(stabilize(flag, None))


def change(
    minutes: float,
    action: ChangeAction,
    after: Any,
    environment: str | None = None,
    flag_key: str = "checkout_copy",
) -> FlagChange:
    return FlagChange(
        change_id=f"c{minutes}",
        ts=at(minutes),
        environment=environment,
        flag_key=flag_key,
        version=1,
        actor="ana@example.com",
        action=action,
        before=None,
        after=after,
        reason=None,
    )


@pytest.fixture
def ramp_log() -> list[FlagChange]:
    """Create at 5 %, edit the description, ramp to 20 %, kill, restore, ramp to 50 %, touch staging."""
    return [
        change(0, "create", document(production=env(5), staging=env(50))),
        change(10, "update", document(description="new copy", production=env(5), staging=env(50))),
        change(20, "ramp", document(description="new copy", production=env(20), staging=env(50)), PROD),
        change(
            30,
            "kill",
            document(description="new copy", production=env(20, enabled=False), staging=env(50)),
            PROD,
        ),
        change(40, "restore", document(description="new copy", production=env(20), staging=env(50)), PROD),
        change(50, "ramp", document(description="new copy", production=env(50), staging=env(50)), PROD),
        change(60, "ramp", document(description="new copy", production=env(50), staging=env(100)), STAGING),
    ]


def test_a_ramp_log_splits_into_phases_at_each_weight_change_kill_and_restore(
    ramp_log: list[FlagChange],
) -> None:
    assert phases_from_changes(ramp_log, PROD) == [
        Phase(0, at(0), at(20), {"control": 95.0, "candidate": 5.0}, enabled=True),
        Phase(1, at(20), at(30), {"control": 80.0, "candidate": 20.0}, enabled=True),
        Phase(2, at(30), at(40), {"control": 80.0, "candidate": 20.0}, enabled=False),
        Phase(3, at(40), at(50), {"control": 80.0, "candidate": 20.0}, enabled=True),
        Phase(4, at(50), None, {"control": 50.0, "candidate": 50.0}, enabled=True),
    ]


def test_description_edits_and_other_environments_changes_do_not_start_a_phase(
    ramp_log: list[FlagChange],
) -> None:
    starts = [p.start for p in phases_from_changes(ramp_log, PROD)]
    assert at(10) not in starts
    assert at(60) not in starts


def test_each_environment_has_its_own_phases(ramp_log: list[FlagChange]) -> None:
    assert phases_from_changes(ramp_log, STAGING) == [
        Phase(0, at(0), at(60), {"control": 50.0, "candidate": 50.0}, enabled=True),
        Phase(1, at(60), None, {"control": 0.0, "candidate": 100.0}, enabled=True),
    ]


def test_the_first_phase_starts_with_the_update_that_adds_the_environment() -> None:
    log = [
        change(0, "create", document(production=env(5))),
        change(5, "update", document(production=env(5), staging=env(10)), STAGING),
        change(9, "ramp", document(production=env(5), staging=env(30)), STAGING),
    ]
    assert phases_from_changes(log, STAGING) == [
        Phase(0, at(5), at(9), {"control": 90.0, "candidate": 10.0}, enabled=True),
        Phase(1, at(9), None, {"control": 70.0, "candidate": 30.0}, enabled=True),
    ]


def test_an_environment_without_a_rollout_serves_its_default_variation_to_everyone() -> None:
    log = [
        change(0, "create", document(production=env())),
        change(5, "update", document(production=env(default="candidate")), PROD),
    ]
    assert phases_from_changes(log, PROD) == [
        Phase(0, at(0), at(5), {"control": 100.0}, enabled=True),
        Phase(1, at(5), None, {"candidate": 100.0}, enabled=True),
    ]


def test_adding_a_zero_weight_variation_is_not_a_new_phase() -> None:
    log = [
        change(0, "create", document(production=env())),
        change(5, "ramp", document(production=env(0)), PROD),
        change(9, "ramp", document(production=env(10)), PROD),
    ]
    assert phases_from_changes(log, PROD) == [
        Phase(0, at(0), at(9), {"control": 100.0}, enabled=True),
        Phase(1, at(9), None, {"control": 90.0, "candidate": 10.0}, enabled=True),
    ]


def test_a_flag_wide_change_that_rewrites_the_environment_starts_a_phase() -> None:
    log = [
        change(0, "create", document(production=env(5))),
        change(7, "update", document(description="imported", production=env(25))),
    ]
    assert [(p.start, p.weights) for p in phases_from_changes(log, PROD)] == [
        (at(0), {"control": 95.0, "candidate": 5.0}),
        (at(7), {"control": 75.0, "candidate": 25.0}),
    ]


def test_archiving_the_flag_starts_a_disabled_phase_with_the_last_weights() -> None:
    log = [
        change(0, "create", document(production=env(5))),
        change(8, "archive", document(archived=True, production=env(5))),
    ]
    assert phases_from_changes(log, PROD)[1:] == [
        Phase(1, at(8), None, {"control": 95.0, "candidate": 5.0}, enabled=False),
    ]


def test_removing_the_environment_starts_a_disabled_phase_without_weights() -> None:
    log = [
        change(0, "create", document(production=env(5), staging=env(5))),
        change(4, "update", document(staging=env(5)), PROD),
        change(6, "update", document(production=env(5), staging=env(5)), PROD),
    ]
    assert phases_from_changes(log, PROD) == [
        Phase(0, at(0), at(4), {"control": 95.0, "candidate": 5.0}, enabled=True),
        Phase(1, at(4), at(6), {}, enabled=False),
        Phase(2, at(6), None, {"control": 95.0, "candidate": 5.0}, enabled=True),
    ]


def test_changes_at_the_same_instant_make_one_boundary_with_the_last_state() -> None:
    log = [
        change(0, "create", document(production=env(5))),
        change(3, "ramp", document(production=env(10)), PROD),
        change(3, "ramp", document(production=env(20)), PROD),
    ]
    assert [(p.index, p.start, p.end, p.weights["candidate"]) for p in phases_from_changes(log, PROD)] == [
        (0, at(0), at(3), 5.0),
        (1, at(3), None, 20.0),
    ]


def test_a_change_back_at_the_same_instant_leaves_no_phase() -> None:
    log = [
        change(0, "create", document(production=env(5))),
        change(3, "ramp", document(production=env(10)), PROD),
        change(3, "ramp", document(production=env(5)), PROD),
    ]
    assert phases_from_changes(log, PROD) == [
        Phase(0, at(0), None, {"control": 95.0, "candidate": 5.0}, enabled=True),
    ]


def test_a_change_stamped_before_its_predecessor_starts_at_the_predecessors_time() -> None:
    log = [
        change(0, "create", document(production=env(5))),
        change(3, "ramp", document(production=env(10)), PROD),
        change(2, "ramp", document(production=env(20)), PROD),
    ]
    assert [(p.start, p.weights["candidate"]) for p in phases_from_changes(log, PROD)] == [
        (at(0), 5.0),
        (at(3), 20.0),
    ]


def test_an_environment_the_flag_never_configured_has_no_phases(ramp_log: list[FlagChange]) -> None:
    assert phases_from_changes(ramp_log, "canary") == []
    assert phases_from_changes([], PROD) == []


def test_changes_of_two_flags_are_rejected() -> None:
    log = [
        change(0, "create", document(production=env(5))),
        change(1, "create", document(production=env(5)), flag_key="other"),
    ]
    with pytest.raises(ValidationError, match="phases are per flag"):
        phases_from_changes(log, PROD)


def test_phase_of_finds_the_phase_by_start_inclusive_end_exclusive(ramp_log: list[FlagChange]) -> None:
    phases = phases_from_changes(ramp_log, PROD)
    assert phase_of(at(-1), phases) is None
    assert phase_of(at(0), phases) == 0
    assert phase_of(at(19.99), phases) == 0
    assert phase_of(at(20), phases) == 1
    assert phase_of(at(35), phases) == 2
    assert phase_of(at(10_000), phases) == 4
    assert phase_of(at(0), []) is None


def test_phase_of_a_selection_of_phases_is_none_in_the_gaps(ramp_log: list[FlagChange]) -> None:
    phases = phases_from_changes(ramp_log, PROD)
    selection = [phases[1], phases[3]]
    assert phase_of(at(25), selection) == 1
    assert phase_of(at(35), selection) is None
    assert phase_of(at(45), selection) == 3
    assert phase_of(at(55), selection) is None


def test_phase_bounds_are_index_start_end_rows(ramp_log: list[FlagChange]) -> None:
    assert phase_bounds(phases_from_changes(ramp_log, PROD)) == [
        (0, at(0), at(20)),
        (1, at(20), at(30)),
        (2, at(30), at(40)),
        (3, at(40), at(50)),
        (4, at(50), None),
    ]
