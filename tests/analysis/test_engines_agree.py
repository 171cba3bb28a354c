"""The same statements, rendered from one tree per dialect, give the same numbers on DuckDB,
PostgreSQL and ClickHouse (chdb) over the same generated evidence: counts exactly, sums and
quantiles to 1e-9 relative."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from ramplight import control
from ramplight.analysis import service
from ramplight.analysis import sql as q
from ramplight.analysis.drift import drift_query
from ramplight.analysis.sql import ReadoutSpec, render
from ramplight.core.drift import DriftProperty
from ramplight.core.metrics import Metric
from ramplight.store.duckdb import DuckDBStore
from tests.analysis import engines
from tests.analysis.conftest import FLAG, T0, Evidence
from tests.analysis.dataset import PLANS, generate

RELATIVE = 1e-9
RULE_UNITS = 24


def ramplight(*args: str) -> str:
    """The command's standard output (run as a user would, in a process of its own)."""
    done = subprocess.run(
        [sys.executable, "-m", "ramplight", *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@dataclass
class Engines:
    duckdb: DuckDBStore
    postgres: engines.Postgres
    clickhouse: engines.ClickHouse
    spec: ReadoutSpec
    known: dict[str, Metric]
    printed: dict[str, str]
    """What `ramplight sql FLAG --dialect X` printed, per dialect."""

    def run(self, statement: exp.Expr) -> dict[str, list[dict[str, Any]]]:
        names, rows = self.duckdb.read(render(statement, "duckdb"))
        return {
            "duckdb": [dict(zip(names, row, strict=True)) for row in rows],
            "postgres": self.postgres.run(render(statement, "postgres")),
            "clickhouse": self.clickhouse.run(render(statement, "clickhouse")),
        }


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engines]:
    root: Path = tmp_path_factory.mktemp("engines")
    path = root / "evidence.duckdb"
    store = DuckDBStore(path)
    control.ensure_default_environments(store, clock=lambda: T0 - timedelta(days=30))
    generate(store)
    # Every SDK reason on the engines too: most exposures say `rollout` (the rest none, as older
    # SDKs), a kill's `off` on a randomized unit, and staff a targeting rule sent to the
    # candidate, with outcomes, whom every engine must leave out of the comparison alike.
    store.connection().execute(
        "UPDATE exposures SET evaluation_reason = 'rollout' WHERE hash(event_id) % 3 <> 0"
    )
    staff = Evidence()
    for i in range(RULE_UNITS):
        unit = f"staff{i:03d}"
        start = T0 + timedelta(hours=5 * i, microseconds=7 + i)
        staff.expose(unit, "candidate", start, reason="rule", plan=PLANS[i % 3], tier=i % 5)
        staff.event(unit, "latency_ms", start + timedelta(minutes=1), 100.0)
    staff.expose("u0003", "candidate", T0 + timedelta(days=1, hours=1), reason="off")
    staff.load(store)
    store.close()
    printed = {
        dialect: ramplight("sql", FLAG, "--db", str(path), "--dialect", dialect, "--segment", "plan")
        for dialect in q.DIALECTS
    }
    store = DuckDBStore(path)
    columns = engines.schema(store)
    rows = engines.evidence(store, columns)
    postgres = engines.Postgres(columns, rows)
    clickhouse = engines.ClickHouse(columns, rows, root / "chdb")
    spec, known = service.spec_for(store, FLAG, "production")
    yield Engines(store, postgres, clickhouse, spec, known, printed)
    postgres.close()
    clickhouse.close()
    store.close()


def _normal(value: Any) -> Any:
    """One Python type per kind of value, whichever driver returned it."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    return value


def _agree(a: Any, b: Any) -> bool:
    a, b = _normal(a), _normal(b)
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_agree(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int) and isinstance(b, int):
        return a == b  # counts: exactly
    if isinstance(a, float | int) and isinstance(b, float | int):
        return math.isclose(a, b, rel_tol=RELATIVE, abs_tol=1e-12)
    return bool(a == b)


def _sorted(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def key(row: dict[str, Any]) -> str:
        return json.dumps([str(_normal(v)) if not isinstance(v, float) else "" for v in row.values()])

    return sorted(rows, key=key)


def assert_engines_agree(results: dict[str, list[dict[str, Any]]]) -> None:
    reference = _sorted(results.pop("duckdb"))
    assert reference, "the statement returned no rows: nothing would be compared"
    for engine, rows in results.items():
        rows = _sorted(rows)
        assert len(rows) == len(reference), engine
        for want, got in zip(reference, rows, strict=True):
            assert list(got) == list(want), f"{engine}: columns differ"
            differ = {k: (want[k], got[k]) for k in want if not _agree(want[k], got[k])}
            assert not differ, f"{engine} differs from DuckDB: {differ}"


SPECS: dict[str, Callable[[ReadoutSpec], ReadoutSpec]] = {
    "intent_to_treat": lambda spec: spec,
    "as_served": lambda spec: replace(spec, served=True),
    "segment": lambda spec: replace(spec, segment="plan"),
    "numeric_segment": lambda spec: replace(spec, segment="tier"),
    "no_phases": lambda spec: replace(spec, phase_starts=()),
    # As of a moment (the difference-over-time checkpoints): between the second and third phase.
    "until": lambda spec: replace(spec, until=T0 + timedelta(days=3)),
}


def test_units_a_targeting_rule_assigned_are_left_out_alike_on_every_engine(loaded: Engines) -> None:
    results = loaded.run(q.readout_query(loaded.spec, loaded.known))
    for engine, rows in results.items():
        assert {int(r["dq_rule_assigned_units"]) for r in rows} == {RULE_UNITS}, engine
    assert_engines_agree(results)
    # …and none of them is among the units compared.
    units = loaded.run(q.per_unit_query(loaded.spec, loaded.known))
    for engine, rows in units.items():
        assert rows and not [r for r in rows if str(r["unit_id"]).startswith("staff")], engine


@pytest.mark.parametrize("variant", list(SPECS))
def test_the_readout_statement_gives_the_same_statistics_on_every_engine(
    loaded: Engines, variant: str
) -> None:
    spec = SPECS[variant](loaded.spec)
    results = loaded.run(q.readout_query(spec, loaded.known))
    assert len(results["duckdb"]) > 1
    assert_engines_agree(results)


def _quantile(loaded: Engines) -> exp.Expr:
    metric = next(m for m in loaded.known.values() if m.type == "quantile")
    return q.quantile_query(loaded.spec, metric, [0.05, 0.5, 0.875, 0.9, 0.925], 0.9)


STATEMENTS: dict[str, Callable[[Engines], exp.Expr]] = {
    "quantiles_and_clustered_moments": _quantile,
    "per_unit_relation": lambda e: q.per_unit_query(e.spec, e.known),
    "span_quantile_counts": lambda e: q.quantile_count_query(e.spec, e.known["llm_p95"]),
    "span_quantiles": lambda e: q.quantile_query(e.spec, e.known["llm_p95"], [0.9, 0.95, 0.99], 0.95),
    "assigned_counts": lambda e: q.assigned_counts_query(replace(e.spec, served=True)),
    "fallback_reasons": lambda e: q.fallback_reasons_query(FLAG, "production"),
    "v1_event_name_metrics": lambda e: q.event_name_metrics_query(FLAG, "production", "conversation"),
    "timeline_units": lambda e: q.timeline_units_query(FLAG, "production"),
    "evidence_bounds": lambda e: q.evidence_bounds_query(FLAG, "production", "conversation"),
    "eval_names": lambda e: q.eval_names_query("production"),
    "representative_traces": lambda e: q.representative_traces_query(e.spec),
    "trace_spans": lambda e: q.trace_spans_query("production", ["c3", "c4", "t5"]),
    # Attributes as text: each engine returns its JSON type differently (str, dict).
    "attributes_sample": lambda e: exp.select(exp.func("COUNT", exp.Star()).as_("n")).from_(
        q.attributes_sample_query(FLAG, "production").subquery("a")
    ),
    "trace_summary_until": lambda e: q.trace_summary_query(replace(e.spec, until=T0 + timedelta(days=3))),
    "timeline_event_series": lambda e: q.timeline_series_query(FLAG, "production", "events", "latency_ms"),
    "timeline_eval_series": lambda e: q.timeline_series_query(FLAG, "production", "evals", "faithfulness"),
    "trace_summary": lambda e: q.trace_summary_query(replace(e.spec, prices=(("gpt-5", 1.25, 10.0),))),
    "critical_path": lambda e: q.critical_path_query(e.spec),
    "routes": lambda e: q.route_query(e.spec),
    "traced_units": lambda e: q.traced_units_query(e.spec),
    "cancellation_tax": lambda e: q.cancellation_query(replace(e.spec, prices=(("gpt-5", 1.25, 10.0),))),
    "evals_joined_through_spans": lambda e: q.per_unit_query(
        replace(e.spec, metrics=(e.known["faithfulness"],)), e.known
    ),
    "span_joinability": lambda e: q.span_joinability_query(
        FLAG, "production", "conversation", (("gpt", 1.0, 2.0),)
    ),
}


@pytest.mark.parametrize("statement", list(STATEMENTS))
def test_every_other_analysis_statement_agrees_across_engines(loaded: Engines, statement: str) -> None:
    assert_engines_agree(loaded.run(STATEMENTS[statement](loaded)))


DRIFT: dict[str, DriftProperty] = {
    "numeric_attribute_with_ties_by_day": DriftProperty(
        key="tier", source="exposures", property="attributes.tier", type="numeric"
    ),
    "categorical_attribute_by_phase": DriftProperty(
        key="plan", source="exposures", property="attributes.plan", type="categorical", over="phase"
    ),
    "event_value_by_phase": DriftProperty(
        key="latency", source="events", property="value", type="numeric", event="latency_ms", over="phase"
    ),
    "event_property_by_day": DriftProperty(
        key="tokens", source="events", property="properties.usage.tokens", type="numeric", event="turn"
    ),
    "span_model_folded": DriftProperty(
        key="model", source="spans", property="gen_ai_model", type="categorical", max_categories=2
    ),
    "span_duration_by_phase": DriftProperty(
        key="ms", source="spans", property="duration_ms", type="numeric", span_name="llm.call", over="phase"
    ),
    "eval_score": DriftProperty(
        key="score", source="evals", property="score", type="numeric", eval="faithfulness"
    ),
}


@pytest.mark.parametrize("case", list(DRIFT))
def test_the_drift_statements_agree_across_engines(loaded: Engines, case: str) -> None:
    results = loaded.run(drift_query(loaded.spec, DRIFT[case], "control"))
    periods = {row["period"] for row in results["duckdb"]}
    assert None in periods and len(periods) > 2  # between variations, and over time
    assert_engines_agree(results)


def test_the_product_readout_matches_the_statistics_postgres_and_clickhouse_compute(loaded: Engines) -> None:
    """The readout the product builds on DuckDB reads the same sufficient statistics that the
    statement rendered for the other engines returns there."""
    report = service.report(loaded.duckdb, FLAG, "production")
    latency = next(m for m in report["metrics"] if m["key"] == "latency")
    rows = loaded.run(q.readout_query(loaded.spec, loaded.known))
    index = [m.key for m in q.per_unit_metrics(loaded.spec.metrics, loaded.known)].index("latency")
    for engine in ("postgres", "clickhouse"):
        for arm in latency["variations"]:
            mine = [r for r in rows[engine] if r["variation"] == arm["variation"]]
            n = sum(int(r[f"m{index}_n"]) for r in mine)
            assert n == arm["units"]
            if n:
                mean = sum(float(r[f"m{index}_sum"]) for r in mine) / n
                assert math.isclose(mean, arm["mean"], rel_tol=RELATIVE)


@pytest.mark.parametrize("dialect", ["postgres", "clickhouse"])
def test_ramplight_sql_prints_what_runs_on_that_engine(loaded: Engines, dialect: str) -> None:
    printed = loaded.printed[dialect]
    assert printed != loaded.printed["duckdb"]
    engine = loaded.postgres if dialect == "postgres" else loaded.clickhouse
    names, rows = loaded.duckdb.read(loaded.printed["duckdb"].rstrip().rstrip(";"))
    assert_engines_agree(
        {
            "duckdb": [dict(zip(names, row, strict=True)) for row in rows],
            dialect: engine.run(printed.rstrip().rstrip(";")),
        }
    )


def test_a_readout_over_a_source_is_the_same_on_every_engine_and_equals_the_own_tables(
    loaded: Engines,
) -> None:
    """A source mirroring the flag's exposures under another flag key (its time and JSON columns
    cast and passed through as each engine renders them): the mirror flag's readout, run on
    DuckDB, PostgreSQL and ClickHouse, agrees across them and with the flag's own readout."""
    from ramplight.analysis.sources import with_sources
    from ramplight.core.sources import Source

    mirror = Source(
        key="mirror",
        kind="exposures",
        sql=f"SELECT * FROM exposures WHERE flag_key = '{FLAG}'",
        fields={name: name for name in ("ts", "unit_id", "assigned_variation", "served_variation",
                                        "fallback_reason", "evaluation_reason", "attributes", "environment",
                                        "assignment_unit")},
        constants={"flag_key": "mirror_flag"},
    )  # fmt: skip
    spec = replace(loaded.spec, flag_key="mirror_flag")
    through_source = loaded.run(with_sources(q.readout_query(spec, loaded.known), [mirror]))
    via_source = through_source["duckdb"]
    assert_engines_agree(through_source)
    own = loaded.run(q.readout_query(loaded.spec, loaded.known))["duckdb"]
    assert_engines_agree({"duckdb": own, "the mirror flag through its source": via_source})
