"""Readout entry points shared by the server, the CLI and notebooks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlglot import exp

from ramplight import control
from ramplight.analysis.execute import (
    check_sql_metrics,
    evidence_sources,
    fetch,
    naming_user_sql,
    read,
    sql_of,
    user_sql_metrics,
)
from ramplight.analysis.options import ReadoutOptions
from ramplight.analysis.readout import build_readout, price_table
from ramplight.analysis.sql import (
    DIALECTS,
    ReadoutSpec,
    per_unit_metrics,
    per_unit_query,
    readout_query,
)
from ramplight.core.errors import NotFoundError, ValidationError
from ramplight.core.metrics import Metric
from ramplight.core.phases import phases_from_changes
from ramplight.store.base import Store


def select_metrics(store: Store, keys: Sequence[str] | None) -> tuple[list[Metric], dict[str, Metric]]:
    known = {m.key: m for m in store.list_metrics()}
    if not keys:
        return list(known.values()), known
    missing = [k for k in keys if k not in known]
    if missing:
        raise NotFoundError(f"no metric {missing[0]!r} (define it with `ramplight apply` under metrics:)")
    return [known[k] for k in keys], known


def report(
    store: Store,
    flag_key: str,
    environment: str,
    metric_keys: Sequence[str] | None = None,
    options: ReadoutOptions | None = None,
) -> dict[str, Any]:
    flag = control.get_flag(store, flag_key)
    metrics, known = select_metrics(store, metric_keys)
    options = options or ReadoutOptions()
    if metric_keys and options.family is None:
        # Metrics named explicitly are the family, ratio components included: the user asked.
        options = replace(options, family=tuple(dict.fromkeys(metric_keys)))
    return build_readout(store, flag, environment, metrics, known, options)


def spec_for(
    store: Store,
    flag_key: str,
    environment: str,
    metric_keys: Sequence[str] | None = None,
    segment: str | None = None,
    served: bool = False,
) -> tuple[ReadoutSpec, dict[str, Metric]]:
    flag = control.get_flag(store, flag_key)
    if environment not in flag.environments:
        raise NotFoundError(f"flag {flag_key!r} is not configured in environment {environment!r}")
    metrics, known = select_metrics(store, metric_keys)
    phases = phases_from_changes(store.flag_changes(flag_key), environment)
    spec = ReadoutSpec(
        flag_key=flag.key,
        environment=environment,
        assignment_unit=flag.assignment_unit,
        metrics=tuple(m for m in metrics if m.type != "quantile"),
        phase_starts=tuple(p.start for p in phases),
        segment=segment,
        served=served,
        variations=tuple(flag.variation_keys()),
        quantiles=tuple(m for m in metrics if m.type == "quantile"),
        prices=price_table(store),
    )
    return spec, known


def readout_sql(
    store: Store,
    flag_key: str,
    environment: str,
    metric_keys: Sequence[str] | None = None,
    dialect: str = "duckdb",
    segment: str | None = None,
) -> str:
    """The exact statement the readout runs, rendered for `dialect`."""
    if dialect not in DIALECTS:
        raise ValidationError.at("dialect", f"one of {', '.join(DIALECTS)}")
    spec, known = spec_for(store, flag_key, environment, metric_keys, segment)
    return sql_of(store, readout_query(spec, known), dialect, pretty=True) + ";"


def export_units(
    store: Store,
    flag_key: str,
    environment: str,
    path: str,
    fmt: str,
    metric_keys: Sequence[str] | None = None,
    segment: str | None = None,
) -> int:
    """Write the per-unit relation to `path` as parquet or csv; returns the number of units."""
    if fmt != "parquet" and fmt != "csv":
        raise ValidationError.at("format", "parquet or csv")
    spec, known = spec_for(store, flag_key, environment, metric_keys, segment)
    user = user_sql_metrics(per_unit_metrics(spec.metrics, known))
    check_sql_metrics(store, user)
    statement = per_unit_query(spec, known)
    with naming_user_sql([*user, *evidence_sources(store)]):
        store.export(sql_of(store, statement), Path(path), "parquet" if fmt == "parquet" else "csv")
    count = exp.select(exp.alias_(exp.Count(this=exp.Star()), "n")).from_(statement.subquery("per_unit"))
    return int(fetch(store, count, user)[0]["n"])


def unit_frame(
    store: Store,
    flag_key: str,
    environment: str,
    metric_keys: Sequence[str] | None = None,
    segment: str | None = None,
    kind: str = "pandas",
) -> Any:
    """The per-unit relation as a pandas (or polars) data frame, for notebooks."""
    spec, known = spec_for(store, flag_key, environment, metric_keys, segment)
    user = user_sql_metrics(per_unit_metrics(spec.metrics, known))
    check_sql_metrics(store, user)
    names, rows = read(store, per_unit_query(spec, known), user)
    if kind == "polars":
        import polars as pl

        return pl.DataFrame(rows, schema=names, orient="row")
    import pandas as pd

    return pd.DataFrame(rows, columns=names)


def readout_frame(readout: dict[str, Any]) -> Any:
    """One row per (metric, variation vs control) of a readout, as a pandas data frame."""
    import pandas as pd

    rows = []
    for metric in readout["metrics"]:
        means = {v["variation"]: v for v in metric["variations"]}
        for comparison in metric["comparisons"]:
            fixed = comparison.get("fixed", comparison)
            rows.append(
                {
                    "metric": metric.get("key", metric.get("name")),
                    "segment": metric.get("segment"),
                    "variation": comparison["variation"],
                    "vs": comparison["vs"],
                    "units": means.get(comparison["variation"], {}).get("units"),
                    "mean": means.get(comparison["variation"], {}).get("mean"),
                    "control_mean": means.get(comparison["vs"], {}).get("mean"),
                    **{k: fixed.get(k) for k in ("difference", "ci_low", "ci_high", "relative", "p_value")},
                }
            )
    return pd.DataFrame(rows)


def unit_relation_sql(
    store: Store,
    flag_key: str,
    environment: str,
    metric_keys: Sequence[str] | None = None,
    segment: str | None = None,
) -> str:
    """The per-unit relation (one row per exposed unit, one column per metric), in the store's SQL."""
    spec, known = spec_for(store, flag_key, environment, metric_keys, segment)
    return sql_of(store, per_unit_query(spec, known))
