"""`flags stale` on a real store: settled, unexposed, and decided flags whose cleanup is due."""

from __future__ import annotations

from datetime import timedelta

from ramplight import control, release
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import T0
from tests.factories import flag_doc

NOW = T0 + timedelta(days=60)


def test_stale_flags_name_why_they_are_stale(store: DuckDBStore) -> None:
    days_ago = lambda d: lambda: NOW - timedelta(days=d)  # noqa: E731
    control.create_flag(store, flag_doc("rolled_back"), "t", clock=days_ago(59))
    control.ramp(store, "rolled_back", "production", "candidate", 0, "t", clock=days_ago(40))
    control.create_flag(store, flag_doc("just_shipped"), "t", clock=days_ago(59))
    control.ramp(store, "just_shipped", "production", "candidate", 100, "t", clock=days_ago(2))
    control.create_flag(store, flag_doc("fresh"), "t", clock=days_ago(1))
    control.create_flag(store, flag_doc("promoted"), "t", clock=days_ago(25))
    release.decide_action(
        store, "promoted", "production", "promote", "alice", "shipped early", force=True, can_force=True,
        clock=days_ago(20),
    )  # fmt: skip

    stale = {(r["flag_key"], r["environment"]): r["reasons"] for r in release.stale_flags(store, 30, NOW)}
    assert stale[("rolled_back", "production")] == [
        "rolled back for 40 days",
        "no exposures since it was created 59 days ago",
    ]
    assert stale[("just_shipped", "production")] == ["no exposures since it was created 59 days ago"]
    assert ("fresh", "production") not in stale
    assert stale[("promoted", "production")] == ["promote decided 20 days ago; cleanup is due"]
    # Without a plan there is no schedule to skip: promoting at 5 % is not against it.
    (decision,) = store.decisions("promoted")
    assert not decision.forced and decision.state == "promote"
    assert store.get_flag("promoted").environments["production"].default_variation == "candidate"
