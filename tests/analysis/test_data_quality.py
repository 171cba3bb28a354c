"""Data quality in the readout: counts that say whether the evidence can be trusted."""

from __future__ import annotations

from datetime import timedelta

from ramplight.analysis import service as analysis
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0, Evidence, make_flag, save_metrics


def test_events_before_exposure_are_counted_when_every_unit_has_pre_period_events(
    store: DuckDBStore,
) -> None:
    make_flag(store)
    save_metrics(store, {"key": "spend", "type": "event", "event": "spend", "aggregation": "sum"})
    ev = Evidence()
    for i in range(20):
        ev.expose(f"c{i}", ("control", "candidate")[i % 2], T0)
        ev.event(f"c{i}", "spend", T0 - timedelta(days=2), 1.0)  # before everyone's first exposure
        ev.event(f"c{i}", "spend", T0 + timedelta(hours=1), 2.0)
    ev.load(store)
    quality = analysis.report(store, FLAG, "production")["data_quality"]
    assert quality["events_before_exposure"] == 20
    assert quality["events"] == 20  # the outcomes that should join: those after the first exposure
    assert quality["joinable_events"] == 20
