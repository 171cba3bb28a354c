"""A readout as of a moment (`ReadoutOptions.until`) is the readout of the evidence stamped before
it: checked against the same figures computed directly in DuckDB over the generated dataset."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ramplight.analysis import service as analysis
from ramplight.analysis.options import ReadoutOptions
from ramplight.store.duckdb import DuckDBStore
from tests.analysis.conftest import FLAG, T0
from tests.analysis.dataset import generate

CUT = T0 + timedelta(days=3)  # after the second phase began (day 2), before the third (day 4)

DIRECT = """
WITH x AS (
  SELECT unit_id, MIN(ts) AS first_ts, MIN(assigned_variation) AS variation
  FROM exposures
  WHERE flag_key = $flag AND environment = 'production' AND ts < $cut
  GROUP BY unit_id
  HAVING MIN(assigned_variation) = MAX(assigned_variation) AND MIN(ts) >= $t0
), per_unit AS (
  SELECT x.unit_id, x.variation,
         AVG(e.value) FILTER (WHERE e.name = 'latency_ms') AS latency,
         SUM(e.value) FILTER (WHERE e.name = 'cost_usd') AS cost
  FROM x JOIN events e ON e.unit_id = x.unit_id AND e.ts >= x.first_ts AND e.ts < $cut
  GROUP BY x.unit_id, x.variation
)
SELECT variation, COUNT(latency) AS latency_n, AVG(latency) AS latency, COUNT(cost) AS cost_n, AVG(cost) AS cost
FROM per_unit GROUP BY variation
"""


def entry(readout: dict, key: str) -> dict:
    return next(m for m in readout["metrics"] if m["key"] == key)


def arm(metric: dict, variation: str) -> dict:
    return next(v for v in metric["variations"] if v["variation"] == variation)


def test_a_readout_until_a_moment_reads_only_the_evidence_before_it(store: DuckDBStore) -> None:
    generate(store)
    options = ReadoutOptions(until=CUT)
    readout = analysis.report(store, FLAG, "production", ["latency", "cost"], options)
    full = analysis.report(store, FLAG, "production", ["latency", "cost"])
    rows = store.connection().execute(DIRECT, {"flag": FLAG, "cut": CUT, "t0": T0}).fetchall()
    direct = {r[0]: r[1:] for r in rows}
    assert set(direct) == {"control", "candidate"}
    for variation, (latency_n, latency, cost_n, cost) in direct.items():
        got = arm(entry(readout, "latency"), variation)
        assert got["units"] == latency_n and got["mean"] == pytest.approx(latency, rel=1e-12)
        got = arm(entry(readout, "cost"), variation)
        assert got["units"] == cost_n and got["mean"] == pytest.approx(cost, rel=1e-12)
    # Strictly less than everything: the cutoff is not a no-op on this data.
    assert sum(v["units"] for v in entry(readout, "latency")["variations"]) < sum(
        v["units"] for v in entry(full, "latency")["variations"]
    )
    # The phases begun by then (the third began on day 4), and the readout is stamped at the cutoff.
    assert [p["phase"] for p in readout["phases"]] == [0, 1]
    assert len(full["phases"]) == 3
    assert readout["generated_at"] == CUT.isoformat()


def test_a_cutoff_after_all_the_evidence_changes_no_figure(store: DuckDBStore) -> None:
    generate(store)
    late = ReadoutOptions(until=T0 + timedelta(days=60))
    readout = analysis.report(store, FLAG, "production", ["latency", "resolved"], late)
    full = analysis.report(store, FLAG, "production", ["latency", "resolved"])
    assert [m["variations"] for m in readout["metrics"]] == [m["variations"] for m in full["metrics"]]
    assert [m["comparisons"][0]["fixed"] for m in readout["metrics"]] == [
        m["comparisons"][0]["fixed"] for m in full["metrics"]
    ]
