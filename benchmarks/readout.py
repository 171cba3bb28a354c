"""A readout at scale: Ramplight vs the bare DuckDB query (the floor) vs pandas, same data, one run.

    python benchmarks/readout.py                          # 10 M exposed units, 50 M events
    python benchmarks/readout.py --quick                  # 200 k units, 1 M events (smoke run)
    python benchmarks/readout.py --units N --events M     # any size
    python benchmarks/readout.py --db /tmp/r.duckdb       # keep the store and reuse it next time
    python benchmarks/readout.py --small                  # only the small flag: 20 k units, 100 k events
    python benchmarks/readout.py --no-pandas --no-chdb    # only the floor and Ramplight on DuckDB
    python benchmarks/readout.py --memory-gib 14 --chdb-settings 'max_threads=2'   # memory cap, chdb settings

The data is generated inside DuckDB (the real schema, primary keys included) for one JSON flag
`checkout_assistant` (conversation units) created at 10 % candidate and ramped to 20 % a week
later, so the readout has two phases. Units are exposed once (5 % twice, 0.05 % under both
variations, which the readout drops); events are turns (latency), LLM calls (cost),
resolutions (0/1) and page views (unused), 20 % of them before the unit's first exposure.
Seven metric definitions: a mean (resolved), a mean with CUPED (latency_ms), a sum with CUPED
(cost_usd), a count (turns), a sum (resolved_count), a ratio (cost_per_resolution) and an
event-level p95 (latency_p95).

Each contender runs in its own fresh process against the same file (read into the OS page cache
first), so its peak RSS is its own; wall and CPU time (all threads) are both reported, CPU time
being steadier on a shared machine:

- Ramplight: `analysis.service.report` end to end — every query plus the stats engine.
- floor: what a competent engineer writes by hand for the same numbers — one join and aggregate
  for the per-variation sums and sums of squares, one for the p95 per variation; no statistics.
- pandas: load exposures and events into data frames (timed apart), then the per-unit relation
  with groupby/merge, per-variation means, variances and p95, Welch tests (scipy), CUPED and the
  delta method, as in a notebook. Above 2 M units it runs on a prefix of the units
  (`--pandas-fraction`) and its time and memory growth are scaled linearly, marked "extrapolated".

The numbers are cross-checked against the floor (unit counts, means, the ratio, p95, CUPED
differences); pandas on a fraction is checked against the floor over the same units.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FLAG_KEY = "checkout_assistant"
ENVIRONMENT = "production"
UNIT = "conversation"
CREATED_DAYS_AGO = 16
RAMPED_DAYS_AGO = 9
EXPOSURE_SPAN_DAYS = 14  # first exposures are spread over [created, created + 14 d)
CUPED_DAYS = 7
UNEXPOSED_SHARE = 0.05  # events of conversations that never saw the flag
ID_DIGITS = 9  # unit ids are `conv_000000042`; zero padding keeps a prefix of units a range of ids

MEMORY_GIB = 12.0  # DuckDB's memory_limit and chdb's max_memory_usage per process (--memory-gib)
# Extra ClickHouse settings for the chdb session, "name=value&name=value" (--chdb-settings).
CHDB_SETTINGS = ""
PANDAS_MAX_UNITS = 2_000_000  # beyond this pandas runs on a prefix of the units (memory, time)
TOLERANCE = 1e-6
TARGET_VS_FLOOR = 2.0
TARGET_VS_PANDAS = 10.0

METRICS: list[dict[str, Any]] = [
    {"key": "resolved", "type": "event", "event": "resolution", "aggregation": "mean"},
    {
        "key": "latency_ms",
        "type": "event",
        "event": "turn",
        "aggregation": "mean",
        "direction": "decrease",
        "cuped_days": CUPED_DAYS,
    },
    {
        "key": "cost_usd",
        "type": "event",
        "event": "llm_call",
        "aggregation": "sum",
        "direction": "decrease",
        "cuped_days": CUPED_DAYS,
    },
    {"key": "turns", "type": "event", "event": "turn", "aggregation": "count"},
    {"key": "resolved_count", "type": "event", "event": "resolution", "aggregation": "sum"},
    {
        "key": "cost_per_resolution",
        "type": "ratio",
        "numerator": "cost_usd",
        "denominator": "resolved_count",
        "direction": "decrease",
    },
    {"key": "latency_p95", "type": "quantile", "event": "turn", "quantile": 0.95, "direction": "decrease"},
]


# -- process plumbing -------------------------------------------------------------------------


def rss_mb(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident set in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpus = len(os.sched_getaffinity(0))
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import duckdb
    import pandas

    return (
        f"Python {sys.version.split()[0]} on {platform.machine()}, {cpus} cores, {mem:.0f} GiB; "
        f"DuckDB {duckdb.__version__}, pandas {pandas.__version__}"
    )


def warm_page_cache(path: Path) -> None:
    """Read the store file once so every contender starts with it in the OS page cache (pandas'
    memory can evict it, and a cold first reader would pay the disk for the others)."""
    with path.open("rb", buffering=0) as file:
        while file.read(64 * 2**20):
            pass


def progress(message: str) -> None:
    """A progress line on stderr (children's stderr passes through to the terminal)."""
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def configure(gib: float, chdb_settings: str) -> None:
    """Cap DuckDB's memory in this process: every `duckdb.connect` (the store's included, which
    locks its configuration once open) gets `memory_limit`; past it DuckDB spills to disk. The
    default, 80 % of RAM, is more than a shared machine can give one process. chdb sessions take
    the same cap and `chdb_settings` (see `chdb_session`)."""
    global MEMORY_GIB, CHDB_SETTINGS
    MEMORY_GIB, CHDB_SETTINGS = gib, chdb_settings
    import duckdb

    connect = duckdb.connect

    def capped(*args: Any, **kwargs: Any) -> Any:
        kwargs["config"] = {"memory_limit": f"{gib:g}GiB", **(kwargs.get("config") or {})}
        return connect(*args, **kwargs)

    duckdb.connect = capped


def in_child(phase: str, args: argparse.Namespace, fraction: float = 1.0) -> dict[str, Any]:
    """Run one phase of this program in a fresh interpreter; its last stdout line is JSON."""
    if phase != "build":
        warm_page_cache(args.db)
    command = [sys.executable, __file__, "--phase", phase, "--db", str(args.db)]
    command += ["--units", str(args.units), "--events", str(args.events), "--pandas-fraction", repr(fraction)]
    command += ["--memory-gib", repr(args.memory_gib), "--chdb-settings", args.chdb_settings]
    progress(f"phase {phase} started")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {phase} failed (exit {done.returncode})")
    progress(f"phase {phase} done")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the data ----------------------------------------------------------------------------------


def flag_doc() -> dict[str, Any]:
    return {
        "key": FLAG_KEY,
        "type": "json",
        "assignment_unit": UNIT,
        "variations": [
            {"key": "control", "value": {"prompt_profile": "checkout_v3", "model_route": "stable"}},
            {"key": "candidate", "value": {"prompt_profile": "checkout_v4", "model_route": "candidate"}},
        ],
        "environments": {
            ENVIRONMENT: {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"control": 90, "candidate": 10}},
            }
        },
    }


# Deterministic pseudo-random numbers from hashes, so every run builds the same data.
_MACROS = """
CREATE OR REPLACE TEMP MACRO u01(a, b) AS (hash(a, b) % 1000000007) / 1000000007.0;
CREATE OR REPLACE TEMP MACRO gauss(a, b) AS
    sqrt(-2 * ln(greatest(u01(a, b), 1e-12))) * cos(2 * pi() * u01(a, b + 1000));
CREATE OR REPLACE TEMP MACRO unit_id(i) AS 'conv_' || lpad(CAST(i AS VARCHAR), {digits}, '0');
CREATE OR REPLACE TEMP MACRO first_ts(i) AS
    to_timestamp({t0}) + to_microseconds(CAST(u01(i, 1) * {span} AS BIGINT));
CREATE OR REPLACE TEMP MACRO phase(i) AS CASE WHEN first_ts(i) < to_timestamp({t1}) THEN 0 ELSE 1 END;
CREATE OR REPLACE TEMP MACRO variation(i) AS
    CASE WHEN u01(i, 2) < CASE WHEN phase(i) = 0 THEN 0.10 ELSE 0.20 END THEN 'candidate' ELSE 'control' END;
"""

_EXPOSURES = """
INSERT INTO exposures (event_id, ts, received_at, environment, flag_key, flag_version, assignment_unit, unit_id,
        assigned_variation, served_variation, fallback_reason, behavior, ids, attributes, trace_id, sdk,
        identity, payload_hash)
SELECT 'x' || i || '_' || k, ts, ts, '{env}', '{flag}', 1 + phase(i), '{unit}', unit_id(i),
       assigned, served, CASE WHEN served <> assigned THEN 'timeout' END, NULL, NULL,
       CAST('{{"plan": "' || (['free', 'pro', 'team', 'enterprise'])[1 + CAST(hash(i, 9) % 4 AS BIGINT)] || '"}}' AS JSON),
       NULL, 'ramplight-python/0.1', NULL, NULL
FROM (
    SELECT i, k,
           CASE WHEN k = 0 THEN first_ts(i)
                ELSE first_ts(i) + to_microseconds(CAST(u01(i, 6) * 172800e6 AS BIGINT)) END AS ts,
           CASE WHEN k = 1 AND u01(i, 5) < 0.0005
                THEN CASE variation(i) WHEN 'control' THEN 'candidate' ELSE 'control' END
                ELSE variation(i) END AS assigned,
           CASE WHEN assigned = 'candidate' AND u01(i, 7 + k) < 0.02 THEN 'control' ELSE assigned END AS served
    FROM range({n}) AS r(i), range(2) AS s(k)
    WHERE k = 0 OR u01(i, 5) < 0.05
)
"""

_EVENTS = """
INSERT INTO events
SELECT 'evt_' || k, ts, ts, '{env}', name, unit_id(j), '{unit}', NULL,
       CASE name
           WHEN 'turn' THEN 800 * exp(0.5 * gauss(j, 3) + 0.4 * gauss(k, 14)) * CASE WHEN treated THEN 0.95 ELSE 1 END
           WHEN 'llm_call' THEN 0.002 * exp(0.6 * gauss(j, 3) + 0.5 * gauss(k, 14)) * CASE WHEN treated THEN 1.10 ELSE 1 END
           WHEN 'resolution' THEN CASE WHEN u01(k, 16) < 0.6 + CASE WHEN treated THEN 0.03 ELSE 0 END THEN 1.0 ELSE 0.0 END
       END,
       NULL, NULL, NULL, NULL, NULL, NULL
FROM (
    SELECT k, j, name, ts, post AND variation(j) = 'candidate' AS treated
    FROM (
        SELECT k, j,
               CASE WHEN r < 0.57 THEN 'turn' WHEN r < 0.81 THEN 'llm_call'
                    WHEN r < 0.95 THEN 'resolution' ELSE 'page_view' END AS name,
               u01(k, 13) >= 0.2 AS post,
               first_ts(j) + to_microseconds(CAST(
                   CASE WHEN post THEN u01(k, 17) * 172800e6 ELSE -(u01(k, 17) * 691200e6 + 1) END AS BIGINT)) AS ts
        FROM (SELECT k, hash(k, 11) % {units_with_events} AS j, u01(k, 12) AS r FROM range({m}) AS t(k))
    )
)
"""


def build(path: Path, n_units: int, n_events: int) -> dict[str, Any]:
    """Create the store: environments, flag (created, then ramped), metrics, exposures, events."""
    from ramplight import control
    from ramplight.store.duckdb import DuckDBStore

    now = datetime.now(UTC).replace(microsecond=0)
    created = now - timedelta(days=CREATED_DAYS_AGO)
    ramped = now - timedelta(days=RAMPED_DAYS_AGO)
    store = DuckDBStore(path)
    control.ensure_default_environments(store, clock=lambda: created)
    control.create_flag(store, flag_doc(), "bench", clock=lambda: created)
    control.ramp(store, FLAG_KEY, ENVIRONMENT, "candidate", 20, "bench", clock=lambda: ramped)
    for doc in METRICS:
        control.save_metric(store, doc, None)
    con = store.connection()
    con.execute(
        _MACROS.format(
            digits=ID_DIGITS,
            t0=int(created.timestamp()),
            t1=int(ramped.timestamp()),
            span=EXPOSURE_SPAN_DAYS * 86400e6,
        )
    )
    names = {"env": ENVIRONMENT, "flag": FLAG_KEY, "unit": UNIT}
    started = time.perf_counter()
    con.execute(_EXPOSURES.format(n=n_units, **names))
    exposures_s = time.perf_counter() - started
    started = time.perf_counter()
    units_with_events = max(n_units + 1, round(n_units * (1 + UNEXPOSED_SHARE)))
    con.execute(_EVENTS.format(m=n_events, units_with_events=units_with_events, **names))
    events_s = time.perf_counter() - started
    started = time.perf_counter()
    con.execute("CHECKPOINT")
    checkpoint_s = time.perf_counter() - started
    exposures = store.count("exposures")
    events = store.count("events")
    store.close()
    return {
        "exposures_s": exposures_s,
        "events_s": events_s,
        "checkpoint_s": checkpoint_s,
        "exposures": exposures,
        "events": events,
        "file_mb": path.stat().st_size / 2**20,
        "peak_mb": rss_mb(),
    }


def ramp_time(con: Any) -> datetime:
    """The ramp's timestamp: the start of phase 1."""
    row = con.execute(
        "SELECT max(ts) FROM flag_changes WHERE flag_key = ? AND action = 'ramp'", [FLAG_KEY]
    ).fetchone()
    return row[0]


# -- Ramplight ----------------------------------------------------------------------------------


class _TimedCursor:
    """Times each statement the readout sends (labels from the SQL), passing everything through."""

    def __init__(self, cursor: Any, log: list[tuple[str, float]], labels: Callable[[str], str]) -> None:
        self._cursor, self._log, self._labels = cursor, log, labels

    def execute(self, sql: str, *params: Any) -> Any:
        started = time.perf_counter()
        result = self._cursor.execute(sql, *params)
        self._log.append((self._labels(sql), time.perf_counter() - started))
        return result


def run_ramplight(db: Path) -> dict[str, Any]:
    from ramplight.analysis.options import ReadoutOptions
    from ramplight.analysis.service import report
    from ramplight.store.duckdb import DuckDBStore

    def label(sql: str) -> str:
        if "fallback_reason" in sql and "dq_" not in sql:
            return "v1 fallback reasons"
        if "sum_x2" in sql:
            return "v1 per-event-name metrics"
        if "QUANTILE_CONT" in sql:
            return "quantile: values and clustered variance"
        if "FROM flag" in sql or "FROM metrics" in sql or "SET " in sql:
            return "control plane"
        return (
            "sufficient statistics and data quality"
            if "dq_joinable_events" in sql
            else "sufficient statistics"
        )

    base_mb = rss_mb("VmRSS")
    started = time.perf_counter()
    store = DuckDBStore(db)
    open_s = time.perf_counter() - started
    log: list[tuple[str, float]] = []
    cursor = store.connection()
    store.connection = lambda: _TimedCursor(cursor, log, label)  # type: ignore[method-assign]
    read = store.read

    def timed_read(sql: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = read(sql, *args, **kwargs)
        log.append((label(sql), time.perf_counter() - started))
        return result

    store.read = timed_read  # type: ignore[method-assign]
    started, cpu = time.perf_counter(), cpu_s()
    readout = report(store, FLAG_KEY, ENVIRONMENT, None, ReadoutOptions())
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    metrics = {m["key"]: m for m in readout["metrics"]}

    def arm(key: str, variation: str, field: str = "mean") -> Any:
        return next(v[field] for v in metrics[key]["variations"] if v["variation"] == variation)

    numbers: dict[str, float] = {}
    for variation in ("control", "candidate"):
        numbers[f"units {variation}"] = sum(p["units"][variation] for p in readout["phases"])
        numbers[f"latency units {variation}"] = arm("latency_ms", variation, "units")
        for key in ("resolved", "latency_ms", "cost_usd", "turns", "resolved_count", "cost_per_resolution"):
            numbers[f"{key} mean {variation}"] = arm(key, variation)
        numbers[f"latency_p95 {variation}"] = arm("latency_p95", variation, "value")
    for key in ("latency_ms", "cost_usd"):
        numbers[f"{key} CUPED difference"] = metrics[key]["comparisons"][0]["cuped"]["difference"]
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "open_s": open_s,
        "queries": log,
        "numbers": numbers,
        "base_mb": base_mb,
        "peak_mb": rss_mb(),
    }


# -- the floor: the bare DuckDB query ---------------------------------------------------------

# `{units}` narrows the units to an id prefix when checking pandas on a fraction; empty otherwise.
FLOOR_UNITS = """
units AS (
    SELECT unit_id, min(ts) AS first_ts, min(assigned_variation) AS variation
    FROM exposures
    WHERE environment = $env AND flag_key = $flag{units}
    GROUP BY unit_id
    HAVING count(DISTINCT assigned_variation) = 1
)"""

FLOOR_STATS = """
WITH {units_cte},
per_unit AS (
    SELECT e.unit_id,
           avg(e.value) FILTER (e.name = 'resolution' AND e.ts >= u.first_ts) AS resolved,
           avg(e.value) FILTER (e.name = 'turn' AND e.ts >= u.first_ts) AS latency,
           avg(e.value) FILTER (e.name = 'turn' AND e.ts < u.first_ts) AS latency_pre,
           sum(e.value) FILTER (e.name = 'llm_call' AND e.ts >= u.first_ts) AS cost,
           sum(e.value) FILTER (e.name = 'llm_call' AND e.ts < u.first_ts) AS cost_pre,
           count(*) FILTER (e.name = 'turn' AND e.ts >= u.first_ts) AS turns,
           sum(e.value) FILTER (e.name = 'resolution' AND e.ts >= u.first_ts) AS resolved_count
    FROM events AS e
    JOIN units AS u ON e.unit_id = u.unit_id
    WHERE e.environment = $env AND e.assignment_unit = $unit AND e.name IN ('resolution', 'turn', 'llm_call')
      AND e.ts >= u.first_ts - INTERVAL 168 HOUR
    GROUP BY e.unit_id
),
all_units AS (
    SELECT u.variation, u.first_ts >= $ramped AS phase, p.resolved, p.latency,
           p.latency_pre, coalesce(p.cost, 0) AS cost, p.cost_pre, coalesce(p.turns, 0) AS turns,
           coalesce(p.resolved_count, 0) AS resolved_count
    FROM units AS u
    LEFT JOIN per_unit AS p USING (unit_id)
)
SELECT phase, variation, count(*) AS units,
       count(resolved) AS resolved_n, sum(resolved) AS resolved_sum, sum(resolved * resolved) AS resolved_sum_sq,
       count(latency) AS latency_n, sum(latency) AS latency_sum, sum(latency * latency) AS latency_sum_sq,
       {cuped_strata}
       sum(cost) AS cost_sum, sum(cost * cost) AS cost_sum_sq,
       sum(turns) AS turns_sum, sum(turns * turns) AS turns_sum_sq,
       sum(resolved_count) AS resolved_count_sum, sum(resolved_count * resolved_count) AS resolved_count_sum_sq,
       sum(cost * resolved_count) AS cost_resolved_cross
FROM all_units
GROUP BY ALL
ORDER BY ALL
"""

# CUPED per phase and pre-period presence: units with a pre-period value (regression moments)
# and units without one (no covariate), as the product stratifies them.
_CUPED_STRATUM = """
       count(*) FILTER ({y} IS NOT NULL AND {x} IS NOT NULL) AS {p}_with_n,
       sum({y}) FILTER ({x} IS NOT NULL) AS {p}_with_sum, sum({y} * {y}) FILTER ({x} IS NOT NULL) AS {p}_with_sum_sq,
       sum({x}) FILTER ({y} IS NOT NULL) AS {p}_with_pre_sum,
       sum({x} * {x}) FILTER ({y} IS NOT NULL) AS {p}_with_pre_sum_sq, sum({y} * {x}) AS {p}_with_post_pre,
       count(*) FILTER ({y} IS NOT NULL AND {x} IS NULL) AS {p}_without_n,
       sum({y}) FILTER ({x} IS NULL) AS {p}_without_sum, sum({y} * {y}) FILTER ({x} IS NULL) AS {p}_without_sum_sq,"""
CUPED_STRATA = "".join(
    _CUPED_STRATUM.format(p=p, y=y, x=x)
    for p, y, x in (("latency", "latency", "latency_pre"), ("cost", "cost", "cost_pre"))
).strip()

FLOOR_P95 = """
WITH {units_cte}
SELECT u.variation, count(*) AS events, quantile_cont(e.value, 0.95) AS p95
FROM events AS e
JOIN units AS u ON e.unit_id = u.unit_id
WHERE e.environment = $env AND e.assignment_unit = $unit AND e.name = 'turn'
  AND e.ts >= u.first_ts AND e.value IS NOT NULL
GROUP BY ALL
ORDER BY ALL
"""


def unit_bound(n_units: int, fraction: float) -> str | None:
    """The id below which lie the first `fraction` of the units (ids are zero-padded), or None."""
    return f"conv_{round(n_units * fraction):0{ID_DIGITS}d}" if fraction < 1 else None


def cpu_s() -> float:
    """CPU seconds of this process, all threads (DuckDB's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_floor(db: Path, bound: str | None) -> dict[str, Any]:
    import duckdb

    base_mb = rss_mb("VmRSS")
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    params: dict[str, Any] = {"env": ENVIRONMENT, "flag": FLAG_KEY, "unit": UNIT}
    if bound is not None:
        params["bound"] = bound
    units_cte = FLOOR_UNITS.format(units=" AND unit_id < $bound" if bound else "").strip()
    ramped = ramp_time(con)
    started, cpu = time.perf_counter(), cpu_s()
    cursor = con.execute(
        FLOOR_STATS.format(units_cte=units_cte, cuped_strata=CUPED_STRATA), {**params, "ramped": ramped}
    )
    names = [d[0] for d in cursor.description]
    stats = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    p95 = {v: q for v, _, q in con.execute(FLOOR_P95.format(units_cte=units_cte), params).fetchall()}
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "numbers": floor_numbers(stats, p95),
        "base_mb": base_mb,
        "peak_mb": rss_mb(),
    }


def floor_numbers(stats: list[dict[str, Any]], p95: dict[str, float]) -> dict[str, float]:
    """The cross-checked figures from the floor's sums (not timed: a few additions)."""

    def total(variation: str, column: str) -> float:
        return sum(float(r[column] or 0) for r in stats if r["variation"] == variation)

    numbers: dict[str, float] = {}
    for variation in ("control", "candidate"):
        units = total(variation, "units")
        numbers[f"units {variation}"] = units
        numbers[f"latency units {variation}"] = total(variation, "latency_n")
        numbers[f"resolved mean {variation}"] = total(variation, "resolved_sum") / total(
            variation, "resolved_n"
        )
        numbers[f"latency_ms mean {variation}"] = total(variation, "latency_sum") / total(
            variation, "latency_n"
        )
        numbers[f"cost_usd mean {variation}"] = total(variation, "cost_sum") / units
        numbers[f"turns mean {variation}"] = total(variation, "turns_sum") / units
        numbers[f"resolved_count mean {variation}"] = total(variation, "resolved_count_sum") / units
        numbers[f"cost_per_resolution mean {variation}"] = total(variation, "cost_sum") / total(
            variation, "resolved_count_sum"
        )
        numbers[f"latency_p95 {variation}"] = p95[variation]
    for key, prefix in (("latency_ms", "latency"), ("cost_usd", "cost")):
        strata = []
        for phase in sorted({r["phase"] for r in stats}):
            rows = {r["variation"]: r for r in stats if r["phase"] == phase}
            for part, columns in (
                ("with", ("n", "sum", "sum_sq", "pre_sum", "pre_sum_sq", "post_pre")),
                ("without", ("n", "sum", "sum_sq")),
            ):
                arms = [
                    [float(rows[v][f"{prefix}_{part}_{c}"] or 0) for c in columns]
                    + [0.0] * (6 - len(columns))
                    for v in ("control", "candidate")
                ]
                strata.append((arms[0], arms[1]))
        numbers[f"{key} CUPED difference"] = cuped_difference(strata)
    return numbers


Moments = Sequence[float]
"""(n, Σy, Σy², Σx, Σx², Σxy) of one arm in one stratum: outcome y, pre-period covariate x."""


def cuped_difference(strata: Sequence[tuple[Moments, Moments]]) -> float:
    """Adjusted mean difference (candidate - control), CUPED within each stratum (phase × pre-period
    presence) with a theta pooled over its two arms, strata weighted by their units; a stratum
    where an arm has fewer than two units is left out (docs/statistics.md §4, §15)."""

    def variance(n: float, s: float, ss: float) -> float:
        return (ss - s * s / n) / (n - 1)

    total, weighted = 0.0, 0.0
    for control, candidate in strata:
        if control[0] < 2 or candidate[0] < 2:
            continue
        n, sy, syy, sx, sxx, sxy = (a + b for a, b in zip(control, candidate, strict=True))
        var_x, var_y = variance(n, sx, sxx), variance(n, sy, syy)
        theta = (sxy - sx * sy / n) / (n - 1) / var_x if var_x > 0 and var_y > 0 else 0.0

        control_mean, candidate_mean = (
            arm[1] / arm[0] - theta * arm[3] / arm[0] for arm in (control, candidate)
        )
        weight = control[0] + candidate[0]
        total += weight
        weighted += weight * (candidate_mean - control_mean)
    return weighted / total


# -- pandas, as in a notebook --------------------------------------------------------------------


def run_pandas(db: Path, bound: str | None) -> dict[str, Any]:
    import warnings

    import duckdb
    import numpy as np
    import pandas as pd
    from scipy import stats

    # DuckDB's .df() calls DataFrame.drop(inplace=...), which pandas 3.1 warns about on stderr.
    warnings.filterwarnings("ignore", message="The inplace keyword in DataFrame.drop is deprecated")
    base_mb = rss_mb("VmRSS")
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    ramped = pd.Timestamp(ramp_time(con))
    prefix = " AND unit_id < ?" if bound else ""
    started, cpu = time.perf_counter(), cpu_s()
    exposures = con.execute(
        "SELECT unit_id, ts, assigned_variation FROM exposures WHERE environment = ? AND flag_key = ?"
        + prefix,
        [ENVIRONMENT, FLAG_KEY] + ([bound] if bound else []),
    ).df()
    events = con.execute(
        "SELECT unit_id, ts, name, value FROM events WHERE environment = ? AND assignment_unit = ?"
        " AND name IN ('resolution', 'turn', 'llm_call')" + prefix,
        [ENVIRONMENT, UNIT] + ([bound] if bound else []),
    ).df()
    con.close()
    load_s, load_cpu = time.perf_counter() - started, cpu_s() - cpu
    load_mb = rss_mb()

    started, cpu = time.perf_counter(), cpu_s()
    units = exposures.groupby("unit_id").agg(
        first_ts=("ts", "min"),
        n_assigned=("assigned_variation", "nunique"),
        variation=("assigned_variation", "min"),
    )
    units = units[units["n_assigned"] == 1].drop(columns="n_assigned")
    units["phase"] = (units["first_ts"] >= ramped).astype(int)

    df = events.merge(units[["first_ts"]], left_on="unit_id", right_index=True)
    df = df[df["ts"] >= df["first_ts"] - pd.Timedelta(days=CUPED_DAYS)]
    df["period"] = np.where(df["ts"] >= df["first_ts"], "post", "pre")
    per = (
        df.groupby(["unit_id", "name", "period"])["value"]
        .agg(["sum", "mean", "count"])
        .unstack(["name", "period"])
    )
    post_turns = df[(df["name"] == "turn") & (df["period"] == "post")].merge(
        units[["variation"]], left_on="unit_id", right_index=True
    )
    del df

    def col(stat: str, name: str, period: str) -> pd.Series:
        key = (stat, name, period)
        return per[key].reindex(units.index) if key in per.columns else pd.Series(np.nan, index=units.index)

    unit = units.assign(
        resolved=col("mean", "resolution", "post"),
        latency_ms=col("mean", "turn", "post"),
        latency_pre=col("mean", "turn", "pre"),
        cost_usd=col("sum", "llm_call", "post").fillna(0),
        cost_pre=col("sum", "llm_call", "pre"),
        turns=col("count", "turn", "post").fillna(0),
        resolved_count=col("sum", "resolution", "post").fillna(0),
    )
    summary = unit.groupby(["phase", "variation"])[
        ["resolved", "latency_ms", "cost_usd", "turns", "resolved_count"]
    ].agg(["count", "mean", "var"])
    control, candidate = unit[unit["variation"] == "control"], unit[unit["variation"] == "candidate"]
    welch = {
        key: stats.ttest_ind(candidate[key].dropna(), control[key].dropna(), equal_var=False)
        for key in ("resolved", "latency_ms", "cost_usd", "turns", "resolved_count")
    }

    def ratio(arm: pd.DataFrame) -> tuple[float, float]:
        # Delta method for Σcost / Σresolved (Deng et al. 2018).
        m, d = arm["cost_usd"], arm["resolved_count"]
        mu_m, mu_d = m.mean(), d.mean()
        var = m.var() / mu_d**2 - 2 * m.cov(d) * mu_m / mu_d**3 + mu_m**2 * d.var() / mu_d**4
        return m.sum() / d.sum(), var / len(arm)

    ratios = {"control": ratio(control), "candidate": ratio(candidate)}
    ratio_z = (ratios["candidate"][0] - ratios["control"][0]) / math.sqrt(
        ratios["candidate"][1] + ratios["control"][1]
    )
    ratio_p = 2 * stats.norm.sf(abs(ratio_z))

    def moments(frame: pd.DataFrame, post: str, pre: str) -> list[float]:
        y, x = frame[post], frame[pre].fillna(0)
        return [len(frame), y.sum(), (y * y).sum(), x.sum(), (x * x).sum(), (y * x).sum()]

    def cuped(post: str, pre: str) -> float:
        # Per phase and pre-period presence, each stratum with its own theta.
        frame = unit[unit[post].notna()]
        strata = []
        for _, part in frame.groupby(["phase", frame[pre].notna()]):
            arms = [moments(part[part["variation"] == v], post, pre) for v in ("control", "candidate")]
            strata.append((arms[0], arms[1]))
        return cuped_difference(strata)

    cuped_results = {
        "latency_ms": cuped("latency_ms", "latency_pre"),
        "cost_usd": cuped("cost_usd", "cost_pre"),
    }
    p95 = post_turns.groupby("variation")["value"].quantile(0.95)
    analysis_s, analysis_cpu = time.perf_counter() - started, cpu_s() - cpu

    numbers: dict[str, float] = {}
    for variation, arm in (("control", control), ("candidate", candidate)):
        numbers[f"units {variation}"] = len(arm)
        numbers[f"latency units {variation}"] = int(arm["latency_ms"].count())
        for key in ("resolved", "latency_ms", "cost_usd", "turns", "resolved_count"):
            numbers[f"{key} mean {variation}"] = float(arm[key].mean())
        numbers[f"cost_per_resolution mean {variation}"] = float(ratios[variation][0])
        numbers[f"latency_p95 {variation}"] = float(p95[variation])
    for key, difference in cuped_results.items():
        numbers[f"{key} CUPED difference"] = float(difference)
    assert (
        len(summary) == 4 and all(math.isfinite(w.pvalue) for w in welch.values()) and math.isfinite(ratio_p)
    )
    return {
        "load_s": load_s,
        "analysis_s": analysis_s,
        "seconds": load_s + analysis_s,
        "load_cpu_s": load_cpu,
        "analysis_cpu_s": analysis_cpu,
        "cpu_s": load_cpu + analysis_cpu,
        "rows": len(events) + len(exposures),
        "numbers": numbers,
        "base_mb": base_mb,
        "load_mb": load_mb,
        "peak_mb": rss_mb(),
    }


# -- ClickHouse (chdb): the same readout statements, against its own floor ----------------------

_CH_TS = "DateTime64(6, 'UTC')"
_CH_EVIDENCE: dict[str, tuple[list[tuple[str, str]], str]] = {
    "exposures": (
        [
            ("ts", _CH_TS),
            ("environment", "String"),
            ("flag_key", "String"),
            ("unit_id", "String"),
            ("assigned_variation", "String"),
            ("served_variation", "String"),
            ("fallback_reason", "Nullable(String)"),
            ("evaluation_reason", "Nullable(String)"),
            ("attributes", "Nullable(String)"),
        ],
        "(environment, flag_key, unit_id, ts)",
    ),
    "events": (
        [
            ("ts", _CH_TS),
            ("environment", "String"),
            ("name", "String"),
            ("unit_id", "String"),
            ("assignment_unit", "String"),
            ("value", "Nullable(Float64)"),
            ("properties", "Nullable(String)"),
            ("flag_key", "Nullable(String)"),
        ],
        "(environment, name, unit_id, ts)",
    ),
}

# The floor in ClickHouse's own terms (-If combinators; OrNull keeps "no rows" NULL, as FILTER does).
CH_FLOOR_STATS = """
WITH units AS (
    SELECT unit_id, min(ts) AS first_ts, min(assigned_variation) AS variation
    FROM exposures WHERE environment = '{env}' AND flag_key = '{flag}'
    GROUP BY unit_id HAVING uniqExact(assigned_variation) = 1
),
per_unit AS (
    SELECT e.unit_id AS unit_id,
           avgIfOrNull(e.value, e.name = 'resolution' AND e.ts >= u.first_ts) AS resolved,
           avgIfOrNull(e.value, e.name = 'turn' AND e.ts >= u.first_ts) AS latency,
           avgIfOrNull(e.value, e.name = 'turn' AND e.ts < u.first_ts) AS latency_pre,
           sumIfOrNull(e.value, e.name = 'llm_call' AND e.ts >= u.first_ts) AS cost,
           sumIfOrNull(e.value, e.name = 'llm_call' AND e.ts < u.first_ts) AS cost_pre,
           countIf(e.name = 'turn' AND e.ts >= u.first_ts) AS turns,
           sumIfOrNull(e.value, e.name = 'resolution' AND e.ts >= u.first_ts) AS resolved_count
    FROM events AS e INNER JOIN units AS u ON e.unit_id = u.unit_id
    WHERE e.environment = '{env}' AND e.assignment_unit = '{unit}' AND e.name IN ('resolution', 'turn', 'llm_call')
      AND e.ts >= u.first_ts - INTERVAL 168 HOUR
    GROUP BY e.unit_id
),
all_units AS (
    SELECT u.variation AS variation, u.first_ts >= toDateTime64('{ramped}', 6, 'UTC') AS phase,
           p.resolved AS resolved, p.latency AS latency, p.latency_pre AS latency_pre,
           coalesce(p.cost, 0) AS cost, p.cost_pre AS cost_pre, coalesce(p.turns, 0) AS turns,
           coalesce(p.resolved_count, 0) AS resolved_count
    FROM units AS u LEFT JOIN per_unit AS p ON p.unit_id = u.unit_id
)
SELECT phase, variation, count() AS units,
       count(resolved) AS resolved_n, sum(resolved) AS resolved_sum, sum(resolved * resolved) AS resolved_sum_sq,
       count(latency) AS latency_n, sum(latency) AS latency_sum, sum(latency * latency) AS latency_sum_sq,
       {cuped_strata}
       sum(cost) AS cost_sum, sum(cost * cost) AS cost_sum_sq,
       sum(turns) AS turns_sum, sum(turns * turns) AS turns_sum_sq,
       sum(resolved_count) AS resolved_count_sum, sum(resolved_count * resolved_count) AS resolved_count_sum_sq,
       sum(cost * resolved_count) AS cost_resolved_cross
FROM all_units
GROUP BY phase, variation
ORDER BY phase, variation
SETTINGS join_use_nulls = 1
"""
_CH_CUPED_STRATUM = """
       countIf({y} IS NOT NULL AND {x} IS NOT NULL) AS {p}_with_n,
       sumIf({y}, {x} IS NOT NULL) AS {p}_with_sum, sumIf({y} * {y}, {x} IS NOT NULL) AS {p}_with_sum_sq,
       sumIf({x}, {y} IS NOT NULL) AS {p}_with_pre_sum,
       sumIf({x} * {x}, {y} IS NOT NULL) AS {p}_with_pre_sum_sq, sum({y} * {x}) AS {p}_with_post_pre,
       countIf({y} IS NOT NULL AND {x} IS NULL) AS {p}_without_n,
       sumIf({y}, {x} IS NULL) AS {p}_without_sum, sumIf({y} * {y}, {x} IS NULL) AS {p}_without_sum_sq,"""
CH_CUPED_STRATA = "".join(
    _CH_CUPED_STRATUM.format(p=p, y=y, x=x)
    for p, y, x in (("latency", "latency", "latency_pre"), ("cost", "cost", "cost_pre"))
).strip()

CH_FLOOR_P95 = """
WITH units AS (
    SELECT unit_id, min(ts) AS first_ts, min(assigned_variation) AS variation
    FROM exposures WHERE environment = '{env}' AND flag_key = '{flag}'
    GROUP BY unit_id HAVING uniqExact(assigned_variation) = 1
)
SELECT u.variation AS variation, count() AS events, quantileExactInclusive(0.95)(e.value) AS p95
FROM events AS e INNER JOIN units AS u ON e.unit_id = u.unit_id
WHERE e.environment = '{env}' AND e.assignment_unit = '{unit}' AND e.name = 'turn'
  AND e.ts >= u.first_ts AND e.value IS NOT NULL
GROUP BY variation
ORDER BY variation
"""


def chdb_session(directory: Path) -> Any:
    """A chdb session stored under `directory`, its memory capped like DuckDB's (`--memory-gib`):
    one query may use `max_memory_usage`, the whole engine `max_server_memory_usage`."""
    from chdb import session

    limit = int(MEMORY_GIB * 2**30)
    extra = f"&{CHDB_SETTINGS}" if CHDB_SETTINGS else ""
    return session.Session(
        f"{directory}?max_memory_usage={limit}&max_server_memory_usage={limit + 2**30}{extra}"
    )


def load_chdb(db: Path, directory: Path) -> tuple[Any, dict[str, float]]:
    """A chdb session under `directory` holding the store's exposures and events (MergeTree, ordered
    for the readout's access path, as the product's ClickHouse schema is), loaded through one
    Parquet file per table (DuckDB's COPY and ClickHouse's `file()` both stream it), then merged
    to final parts so no background merge runs during the timings. A session already loaded from
    a store of the same sizes is reused (the directory is kept beside --db)."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    expected = {
        table: (con.execute(f"SELECT count(*) FROM {table}").fetchone() or (0,))[0] for table in _CH_EVIDENCE
    }
    latest = (con.execute("SELECT epoch_us(max(ts)) FROM exposures").fetchone() or (None,))[0]
    ch = chdb_session(directory / "chdb")
    loaded = {
        str(r["name"]): int(r["total_rows"] or 0)
        for r in ch.query(
            "SELECT name, total_rows FROM system.tables WHERE database = currentDatabase()", "ArrowTable"
        ).to_pylist()
    }
    if loaded == expected and latest == int(
        ch.query("SELECT toUnixTimestamp64Micro(max(ts)) FROM exposures", "CSV").bytes()
    ):
        con.close()
        progress(f"chdb: reusing the tables in {directory / 'chdb'}")
        return ch, {}
    seconds: dict[str, float] = {}
    for table, (columns, order) in _CH_EVIDENCE.items():
        names = [name for name, _ in columns]
        select = ", ".join(
            f"CAST({n} AS VARCHAR) AS {n}" if n in ("attributes", "properties") else n for n in names
        )
        parquet = directory / f"{table}.parquet"
        started = time.perf_counter()
        con.execute(f"COPY (SELECT {select} FROM {table}) TO '{parquet}' (FORMAT parquet)")
        seconds[f"{table}: DuckDB to Parquet"] = time.perf_counter() - started
        progress(f"chdb: {table} written to Parquet ({parquet.stat().st_size / 2**20:,.0f} MiB)")
        body = ", ".join(f"{name} {kind}" for name, kind in columns)
        ch.query(f"DROP TABLE IF EXISTS {table}")
        ch.query(f"CREATE TABLE {table} ({body}) ENGINE = MergeTree ORDER BY {order}")
        started = time.perf_counter()
        ch.query(f"INSERT INTO {table} SELECT * FROM file('{parquet}', Parquet)")
        seconds[f"{table}: insert into MergeTree"] = time.perf_counter() - started
        parquet.unlink()
        progress(f"chdb: {table} inserted ({expected[table]:,} rows)")
        started = time.perf_counter()
        ch.query(f"OPTIMIZE TABLE {table} FINAL")
        seconds[f"{table}: merge to one part"] = time.perf_counter() - started
        progress(f"chdb: {table} merged")
    con.close()
    return ch, seconds


def run_chdb(db: Path) -> dict[str, Any]:
    """Ramplight's readout statements rendered for ClickHouse (the sufficient statistics and the
    quantile's, at the levels the product derives from its counts) vs the bare ClickHouse floor,
    each timed after one warm-up run, on chdb in this process."""
    from ramplight.analysis import service
    from ramplight.analysis.sql import quantile_query, readout_query, render
    from ramplight.core.stats import density_levels
    from ramplight.store.duckdb import DuckDBStore

    store = DuckDBStore(db)
    spec, known = service.spec_for(store, FLAG_KEY, ENVIRONMENT)
    ramped = ramp_time(store.connection())
    store.close()
    directory = db.with_name(db.name + ".chdb")
    directory.mkdir(exist_ok=True)
    started = time.perf_counter()
    ch, load_steps = load_chdb(db, directory)
    load_s = time.perf_counter() - started
    log: list[tuple[str, str, float, float]] = []
    """(contender, statement, wall, CPU) of each timed statement."""
    who = [""]

    def rows(label: str, sql: str) -> list[dict[str, Any]]:
        started, cpu = time.perf_counter(), cpu_s()
        result: list[dict[str, Any]] = ch.query(sql, "ArrowTable").to_pylist()
        log.append((who[0], label, time.perf_counter() - started, cpu_s() - cpu))
        return result

    def readout() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        statistics = rows(
            "sufficient statistics and data quality", render(readout_query(spec, known), "clickhouse")
        )
        metric = spec.quantiles[0]
        counts: dict[str, int] = {}
        for row in statistics:
            counts[row["variation"]] = counts.get(row["variation"], 0) + int(row["q0_n"] or 0)
        bands = {v: density_levels(n, 0.95) for v, n in counts.items() if n}
        levels = sorted({0.95, *(x for band in bands.values() for x in band)})
        quantiles = rows(
            "quantile: values and clustered variance",
            render(quantile_query(spec, metric, levels, 0.95), "clickhouse"),
        )
        return statistics, [{**r, "p95": r["q"][levels.index(0.95)]} for r in quantiles]

    names = {
        "env": ENVIRONMENT,
        "flag": FLAG_KEY,
        "unit": UNIT,
        "ramped": ramped.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
    }
    stats_sql = CH_FLOOR_STATS.format(cuped_strata=CH_CUPED_STRATA, **names)
    p95_sql = CH_FLOOR_P95.format(**names)

    def floor() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return rows("join + aggregate", stats_sql), rows("p95", p95_sql)

    timings = {}
    results = {}
    for name, run in (("floor", floor), ("ramplight", readout)):
        who[0] = f"{name} (warm-up)"
        run()
        progress(f"chdb: {name} warmed up")
        who[0] = name
        started, cpu = time.perf_counter(), cpu_s()
        results[name] = run()
        timings[name] = (time.perf_counter() - started, cpu_s() - cpu)
        progress(f"chdb: {name} timed")
    ch.close()
    stats, p95 = results["floor"]
    statistics, quantiles = results["ramplight"]
    numbers = floor_numbers(stats, {r["variation"]: r["p95"] for r in p95})
    units = {
        v: sum(int(r["units"]) for r in statistics if r["variation"] == v) for v in ("control", "candidate")
    }
    return {
        "load_s": load_s,
        "load_steps": load_steps,
        "settings": CHDB_SETTINGS,
        "floor_s": timings["floor"][0],
        "floor_cpu_s": timings["floor"][1],
        "ramplight_s": timings["ramplight"][0],
        "ramplight_cpu_s": timings["ramplight"][1],
        "statements": log,
        "numbers": numbers,
        "ramplight_units": units,
        "ramplight_p95": {r["variation"]: r["p95"] for r in quantiles},
        "peak_mb": rss_mb(),
    }


def report_chdb(figures: dict[str, Any], duckdb_floor: dict[str, Any], ramplight: dict[str, Any]) -> None:
    f, r = figures["floor_s"], figures["ramplight_s"]
    print(
        f"\nClickHouse (chdb {_chdb_version()}, in-process; load {figures['load_s']:.1f} s not included): "
        f"floor {f:.2f} s wall / {figures['floor_cpu_s']:.2f} s CPU, Ramplight's statements {r:.2f} s wall / "
        f"{figures['ramplight_cpu_s']:.2f} s CPU ({r / f:.2f}× its floor); DuckDB: floor {duckdb_floor['seconds']:.2f} s, "
        f"Ramplight {ramplight['seconds']:.2f} s (statistics engine included)"
    )
    reused = "" if figures["load_steps"] else " (tables reused)"
    if figures.get("settings"):
        print(f"chdb session settings: {figures['settings']}")
    print(f"chdb process peak RSS {mb(figures['peak_mb'])}; load {figures['load_s']:.1f} s{reused}")
    for step, seconds in figures["load_steps"].items():
        print(f"  load, {step}: {seconds:.1f} s")
    print_table(
        ["chdb statement (in the order run)", "contender", "wall", "CPU"],
        [[label, who, f"{wall:.2f} s", f"{cpu:.2f} s"] for who, label, wall, cpu in figures["statements"]],
    )
    differ = [
        key
        for key, value in figures["numbers"].items()
        if rel(value, duckdb_floor["numbers"][key]) > TOLERANCE
    ]
    differ += [
        f"units {v}"
        for v, n in figures["ramplight_units"].items()
        if n != duckdb_floor["numbers"][f"units {v}"]
    ]
    differ += [
        f"latency_p95 {v}"
        for v, q in figures["ramplight_p95"].items()
        if rel(q, duckdb_floor["numbers"][f"latency_p95 {v}"]) > TOLERANCE
    ]
    print(
        "ClickHouse numbers (its floor's figures and Ramplight's units and p95) agree with DuckDB's: "
        + ("yes" if not differ else "NO: " + ", ".join(differ))
    )


def _chdb_version() -> str:
    import chdb

    return str(chdb.__version__)


# -- a small flag, in-process ----------------------------------------------------------------

SMALL_UNITS, SMALL_EVENTS = 20_000, 100_000
SMALL_RUNS = 21
TARGET_SMALL_MS = 100.0


def run_small(db: Path) -> dict[str, Any]:
    """One small flag's readout, repeated in one process as a server or the guardian does it
    (store open, caches warm): the median of `SMALL_RUNS` wall times after one warm-up, beside the
    floor's two bare queries timed the same way on the same file."""
    import duckdb

    from ramplight.analysis.readout import ReadoutOptions
    from ramplight.analysis.service import report
    from ramplight.store.duckdb import DuckDBStore

    def median_ms(run: Callable[[], Any]) -> float:
        run()
        walls = []
        for _ in range(SMALL_RUNS):
            started = time.perf_counter()
            run()
            walls.append(time.perf_counter() - started)
        return sorted(walls)[len(walls) // 2] * 1000

    store = DuckDBStore(db)
    ramplight_ms = median_ms(lambda: report(store, FLAG_KEY, ENVIRONMENT, None, ReadoutOptions()))
    store.close()
    con = duckdb.connect(str(db), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    params: dict[str, Any] = {"env": ENVIRONMENT, "flag": FLAG_KEY, "unit": UNIT}
    units_cte = FLOOR_UNITS.format(units="").strip()
    stats_sql = FLOOR_STATS.format(units_cte=units_cte, cuped_strata=CUPED_STRATA)
    p95_sql = FLOOR_P95.format(units_cte=units_cte)
    ramped = ramp_time(con)

    def floor() -> None:
        con.execute(stats_sql, {**params, "ramped": ramped}).fetchall()
        con.execute(p95_sql, params).fetchall()

    floor_ms = median_ms(floor)
    con.close()
    return {"ramplight_ms": ramplight_ms, "floor_ms": floor_ms}


def small_flag(args: argparse.Namespace) -> None:
    """Build (or reuse) the small store next to --db and print its in-process readout median."""
    path = args.db.with_name(args.db.stem + "-small.duckdb")
    small = argparse.Namespace(**{**vars(args), "db": path, "units": SMALL_UNITS, "events": SMALL_EVENTS})
    if reuse(small) is None:
        in_child("build", small)
    figures = in_child("small", small)
    r, f = figures["ramplight_ms"], figures["floor_ms"]
    print(
        f"\nSmall flag ({SMALL_UNITS:,} units, {SMALL_EVENTS:,} events), in-process, median of {SMALL_RUNS}: "
        f"Ramplight report() {r:.0f} ms, floor {f:.0f} ms ({r / f:.2f}×); "
        f"target under {TARGET_SMALL_MS:.0f} ms: {'met' if r < TARGET_SMALL_MS else 'NOT met'} "
        f"(load average {os.getloadavg()[0]:.1f})"
    )


# -- the run ---------------------------------------------------------------------------------


def mb(value: float) -> str:
    return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def times(value: float, reference: float) -> str:
    return "-" if reference <= 0 else f"{value / reference:.2f}×"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join((f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}") for i, w in enumerate(widths))
    print(line.format(*headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000_000, help="exposed units (default 10 M)")
    parser.add_argument("--events", type=int, default=50_000_000, help="events (default 50 M)")
    parser.add_argument("--quick", action="store_true", help="200 k units, 1 M events")
    parser.add_argument(
        "--pandas-fraction",
        type=float,
        help=f"run pandas on this share of the units and extrapolate (default: at most {PANDAS_MAX_UNITS:,} units)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of the floor and Ramplight (best is kept)"
    )
    parser.add_argument("--db", type=Path, help="keep the generated store here (reused when its sizes match)")
    parser.add_argument(
        "--small", action="store_true", help=f"only the small-flag figure ({SMALL_UNITS:,} units, in-process)"
    )
    parser.add_argument(
        "--phase", choices=["build", "ramplight", "floor", "pandas", "small", "chdb"], help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--no-pandas", action="store_true", help="skip pandas (and its floor on the same units)"
    )
    parser.add_argument(
        "--chdb-settings",
        default="",
        help="extra ClickHouse settings for the chdb session, e.g. 'join_algorithm=grace_hash&max_threads=2'",
    )
    parser.add_argument("--no-chdb", action="store_true", help="skip the ClickHouse (chdb) contender")
    parser.add_argument(
        "--memory-gib",
        type=float,
        default=MEMORY_GIB,
        help=f"DuckDB memory_limit and chdb max_memory_usage per process (default {MEMORY_GIB:g})",
    )
    args = parser.parse_args()
    configure(args.memory_gib, args.chdb_settings)
    if args.quick:
        args.units, args.events = 200_000, 1_000_000
    if args.pandas_fraction is None:
        args.pandas_fraction = min(1.0, PANDAS_MAX_UNITS / args.units)
    if not 0 < args.pandas_fraction <= 1:
        parser.error("--pandas-fraction must be within (0, 1]")

    if args.phase:
        bound = unit_bound(args.units, args.pandas_fraction)
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "build": lambda: build(args.db, args.units, args.events),
            "ramplight": lambda: run_ramplight(args.db),
            "floor": lambda: run_floor(args.db, bound),
            "pandas": lambda: run_pandas(args.db, bound),
            "small": lambda: run_small(args.db),
            "chdb": lambda: run_chdb(args.db),
        }
        print(json.dumps(runs[args.phase](), default=str))
        return

    workdir = None
    if args.db is None:
        workdir = tempfile.TemporaryDirectory(prefix="ramplight-readout-")
        args.db = Path(workdir.name) / "store.duckdb"
    if args.small:
        print(machine())
        small_flag(args)
        if workdir is not None:
            workdir.cleanup()
        return
    print(f"Readout benchmark — {args.units:,} exposed units, {args.events:,} events. {machine()}")
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    built = reuse(args)
    if built is None:
        built = in_child("build", args)
        print(
            f"built {built['exposures']:,} exposures in {built['exposures_s']:.1f} s and "
            f"{built['events']:,} events in {built['events_s']:.1f} s (primary keys included), "
            f"checkpoint {built['checkpoint_s']:.1f} s; file {mb(built['file_mb'])}, "
            f"build peak RSS {mb(built['peak_mb'])}"
        )
    else:
        print(f"reusing {args.db} ({built['exposures']:,} exposures, {built['events']:,} events)")

    floors, ramplights = [], []
    for _ in range(args.repeat):
        floors.append(in_child("floor", args, fraction=1.0))
        ramplights.append(in_child("ramplight", args))
    floor = min(floors, key=lambda run: run["seconds"])
    ramplight = min(ramplights, key=lambda run: run["seconds"])
    fraction = args.pandas_fraction
    pandas = pandas_floor = None
    if not args.no_pandas:
        pandas = in_child("pandas", args, fraction=fraction)
        pandas_floor = floor if fraction == 1 else in_child("floor", args, fraction=fraction)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    report_figures(args, floor, ramplight, pandas, pandas_floor)
    if not args.no_chdb:
        report_chdb(in_child("chdb", args), floor, ramplight)
        print(f"load average after chdb: {os.getloadavg()[0]:.1f}")
    small_flag(args)
    if workdir is not None:
        workdir.cleanup()


def report_figures(
    args: argparse.Namespace,
    floor: dict[str, Any],
    ramplight: dict[str, Any],
    pandas: dict[str, Any] | None,
    pandas_floor: dict[str, Any] | None,
) -> None:
    if pandas is None or pandas_floor is None:
        report_without_pandas(floor, ramplight)
        return
    scale = 1 / args.pandas_fraction
    extrapolated = " (extrapolated)" if scale != 1 else ""
    f, r, f_cpu = floor["seconds"], ramplight["seconds"], floor["cpu_s"]
    pandas_mb = pandas["base_mb"] + (pandas["peak_mb"] - pandas["base_mb"]) * scale
    rows = []
    for name, seconds, cpu, peak, base in (
        ("floor: bare DuckDB join + aggregate", f, f_cpu, floor["peak_mb"], floor["base_mb"]),
        ("Ramplight report()", r, ramplight["cpu_s"], ramplight["peak_mb"], ramplight["base_mb"]),
        (f"pandas load{extrapolated}", pandas["load_s"] * scale, pandas["load_cpu_s"] * scale, None, None),
        (
            f"pandas analysis{extrapolated}",
            pandas["analysis_s"] * scale,
            pandas["analysis_cpu_s"] * scale,
            None,
            None,
        ),
        (
            f"pandas total{extrapolated}",
            pandas["seconds"] * scale,
            pandas["cpu_s"] * scale,
            pandas_mb,
            pandas["base_mb"],
        ),
    ):
        rows.append(
            [
                name,
                f"{seconds:.2f} s",
                f"{cpu:.2f} s",
                times(seconds, f),
                times(cpu, f_cpu),
                times(seconds, r),
                mb(peak) if peak is not None else "",
                mb(peak - base) if peak is not None else "",
            ]
        )
    print()
    print_table(["", "wall", "CPU", "× floor", "× floor CPU", "× Ramplight", "peak RSS", "RSS growth"], rows)
    print("Each contender runs in a fresh process on the same file; RSS growth is over the process at start.")
    if args.repeat > 1:
        print(f"Floor and Ramplight: best wall time of {args.repeat} runs each.")
    if scale != 1:
        print(
            f"pandas ran on {args.pandas_fraction:.0%} of the units ({pandas['rows']:,} rows loaded); "
            f"its times and RSS growth are scaled ×{scale:.3g} to the full size."
        )
    print(f"Ramplight store open: {ramplight['open_s']:.2f} s (not included above)")
    report_statements(ramplight)

    subset = (
        ""
        if scale == 1
        else f" (pandas is checked against the floor on its {args.pandas_fraction:.0%} of the units)"
    )
    print(f"\nDo the numbers agree? Tolerance {TOLERANCE:g} relative{subset}")
    check_rows, differ = [], []
    for key, value in ramplight["numbers"].items():
        pairs = [
            ("Ramplight", value, floor["numbers"][key]),
            ("pandas", pandas["numbers"][key], pandas_floor["numbers"][key]),
        ]
        diffs = [rel(a, b) for _, a, b in pairs]
        differ += [f"{who}: {key}" for (who, _, _), d in zip(pairs, diffs, strict=True) if d > TOLERANCE]
        check_rows.append(
            [key, f"{value:.8g}", f"{floor['numbers'][key]:.8g}", f"{diffs[0]:.1e}"]
            + (
                [f"{pandas['numbers'][key]:.8g}"]
                if scale == 1
                else [f"{pandas['numbers'][key]:.8g}", f"{pandas_floor['numbers'][key]:.8g}"]
            )
            + [f"{diffs[1]:.1e}"]
        )
    headers = ["figure", "Ramplight", "floor", "rel diff", "pandas"]
    headers += ["rel diff"] if scale == 1 else ["floor (same units)", "rel diff"]
    print_table(headers, check_rows)
    if differ:
        print("DIFFER from the floor: " + "; ".join(differ))

    pandas_total = pandas["seconds"] * scale
    print(
        f"\nTargets: Ramplight within {TARGET_VS_FLOOR:.0f}× of the floor: {r / f:.2f}× wall, "
        f"{ramplight['cpu_s'] / f_cpu:.2f}× CPU ({'met' if r <= TARGET_VS_FLOOR * f else 'NOT met'}); "
        f"at least {TARGET_VS_PANDAS:.0f}× faster than pandas (load + analysis{extrapolated}): "
        f"{pandas_total / r:.1f}× ({'met' if pandas_total >= TARGET_VS_PANDAS * r else 'NOT met'}); "
        f"numbers agree: {'yes' if not differ else 'NO'}"
    )


def report_statements(ramplight: dict[str, Any]) -> None:
    r = ramplight["seconds"]
    print("\nRamplight's statements, in the order run:")
    by_label: dict[str, list[float]] = {}
    for label, seconds in ramplight["queries"]:
        by_label.setdefault(label, []).append(seconds)
    in_sql = sum(s for _, s in ramplight["queries"])
    print_table(
        ["statement", "runs", "wall", "share"],
        [[k, str(len(v)), f"{sum(v):.2f} s", f"{sum(v) / r:.0%}"] for k, v in by_label.items()]
        + [["Python (sqlglot, stats engine, JSON)", "", f"{r - in_sql:.2f} s", f"{(r - in_sql) / r:.0%}"]],
    )


def report_without_pandas(floor: dict[str, Any], ramplight: dict[str, Any]) -> None:
    """The table and checks of `report_figures` for the floor and Ramplight only (--no-pandas)."""
    f, r, f_cpu = floor["seconds"], ramplight["seconds"], floor["cpu_s"]
    rows = [
        [
            name,
            f"{run['seconds']:.2f} s",
            f"{run['cpu_s']:.2f} s",
            times(run["seconds"], f),
            times(run["cpu_s"], f_cpu),
            mb(run["peak_mb"]),
            mb(run["peak_mb"] - run["base_mb"]),
        ]
        for name, run in (("floor: bare DuckDB join + aggregate", floor), ("Ramplight report()", ramplight))
    ]
    print()
    print_table(["", "wall", "CPU", "× floor", "× floor CPU", "peak RSS", "RSS growth"], rows)
    print("Each contender runs in a fresh process on the same file; pandas skipped (--no-pandas).")
    print(f"Ramplight store open: {ramplight['open_s']:.2f} s (not included above)")
    report_statements(ramplight)
    differ = [
        key for key, value in ramplight["numbers"].items() if rel(value, floor["numbers"][key]) > TOLERANCE
    ]
    print(
        f"\nTargets: Ramplight within {TARGET_VS_FLOOR:.0f}× of the floor: {r / f:.2f}× wall, "
        f"{ramplight['cpu_s'] / f_cpu:.2f}× CPU ({'met' if r <= TARGET_VS_FLOOR * f else 'NOT met'}); "
        f"numbers agree with the floor (tolerance {TOLERANCE:g}): "
        + ("yes" if not differ else "NO: " + ", ".join(differ))
    )


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def reuse(args: argparse.Namespace) -> dict[str, Any] | None:
    """Sizes of an existing store at --db when it was built for the same --units/--events."""
    if not args.db.exists():
        return None
    import duckdb

    con = duckdb.connect(str(args.db), read_only=True)
    try:
        exposed = con.execute("SELECT count(DISTINCT unit_id) FROM exposures").fetchone()[0]
        events = con.execute("SELECT count(*) FROM events").fetchone()[0]
        exposures = con.execute("SELECT count(*) FROM exposures").fetchone()[0]
    finally:
        con.close()
    if exposed != args.units or events != args.events:
        raise SystemExit(
            f"{args.db} holds {exposed:,} units and {events:,} events; remove it or match the sizes"
        )
    return {"exposures": exposures, "events": events}


if __name__ == "__main__":
    main()
