"""Trace analysis of a flag at scale: Ramplight's readout with its trace summary vs pulling the
spans into numpy vs one query per trace, same data, one run.

    python benchmarks/traces.py                   # 1 M traces, 10 M spans
    python benchmarks/traces.py --quick           # 50 k traces, 500 k spans (smoke run)
    python benchmarks/traces.py --traces N        # any size (10 spans a trace)
    python benchmarks/traces.py --db /tmp/t.duckdb   # keep the store and reuse it next time
    python benchmarks/traces.py --memory-gib 8    # DuckDB memory_limit per process (default 12)

The data is generated inside DuckDB (the real schema) for one JSON flag `support_assistant`
(conversation units, 50/50): one exposure per conversation and one trace of 10 spans, shaped as
an OpenTelemetry GenAI agent exports it. The root `invoke_agent support_assistant` names the
unit (`feature_flag.context.id`) and begins 40 µs before the exposure the SDK records inside
it; under it run retrieval (embeddings, vector search, rerank), a tool call with its HTTP child
in parallel, the model call — control `chat gpt-5`; the candidate is a cascade, `chat
gpt-5-mini` first and `chat gpt-5` after it on the 30 % hard queries — with its HTTP child, and
a ticket tool in parallel with the model. 3 % of the roots are cancelled (they end mid-answer,
the model call runs on). Trace and span ids are random hex (md5), so a trace's rows are not
stored together. A price table prices the chat models; the embeddings model has no price.

Each contender runs in its own fresh process against the same file (read into the OS page cache
first), so its peak RSS is its own:

- Ramplight: `analysis.service.report(…, ReadoutOptions(traces=True))` end to end with two span
  metrics (root latency, priced cost): data quality, the metrics, span joinability, and the trace
  summary — per variation and span name the spans, traces, p50/p95, errors, tokens and cost, the
  routes per model, and the critical path of every trace (a recursive CTE), all in the store.
- numpy: what an engineer does without it — pull the spans and the exposures into Python (DuckDB
  `fetchnumpy`, timed apart), then vectorised numpy: ids to integer codes (fixed-width bytes,
  sorted), each span's unit from its trace's root, the variation and first exposure per unit,
  per (variation, name) counts and interpolated p50/p95, and the critical path (per parent the
  child that ends last, least span id on ties; walked level by level from the roots). No
  Python loop over traces or spans; only the percentile, one slice per (variation, name).
- per trace: what a trace viewer or a script over it does — for each trace, fetch its spans by
  trace id and its exposure, and walk the tree in Python; timed on a random sample of traces and
  scaled linearly to all of them (marked "extrapolated").

The numpy figures are cross-checked against Ramplight's: spans per (variation, name), p50/p95
and the critical path's traces per span name must agree exactly (p50/p95 to 1e-9 relative); the
program exits non-zero when they do not.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import load_average, machine

FLAG_KEY = "support_assistant"
ENVIRONMENT = "production"
UNIT = "conversation"
ROOT = "invoke_agent support_assistant"
SPANS_PER_TRACE = 10
CREATED_DAYS_AGO = 16
TRACE_SPAN_DAYS = 14  # roots start within [created + 1 h, created + 14 d)
MEMORY_GIB = 12.0
PER_TRACE_SAMPLE = 200
TOLERANCE = 1e-9

METRICS: list[dict[str, Any]] = [
    {
        "key": "answer_ms",
        "type": "span",
        "span_name": ROOT,
        "span_field": "duration_ms",
        "aggregation": "mean",
        "direction": "decrease",
    },
    {
        "key": "cost_usd",
        "type": "span",
        "span_field": "cost_usd",
        "aggregation": "sum",
        "direction": "decrease",
    },
]
PRICES = [
    {"model": "gpt-5", "input_per_million": 1.25, "output_per_million": 10.0},
    {"model": "gpt-5-mini", "input_per_million": 0.25, "output_per_million": 2.0},
]


def rss_mb(field: str = "VmHWM") -> float:
    """This process's peak (VmHWM) or current (VmRSS) resident set in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """CPU seconds of this process, all threads (DuckDB's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def progress(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def configure(gib: float) -> None:
    """Cap DuckDB's memory in this process (every `duckdb.connect`, the store's included)."""
    import duckdb

    connect = duckdb.connect

    def capped(*args: Any, **kwargs: Any) -> Any:
        kwargs["config"] = {"memory_limit": f"{gib:g}GiB", **(kwargs.get("config") or {})}
        return connect(*args, **kwargs)

    duckdb.connect = capped


def in_child(phase: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase of this program in a fresh interpreter; its last stdout line is JSON."""
    if phase != "build":
        with args.db.open("rb", buffering=0) as file:  # the page cache, warm for every contender
            while file.read(64 * 2**20):
                pass
    command = [sys.executable, __file__, "--phase", phase, "--db", str(args.db)]
    command += ["--traces", str(args.traces), "--memory-gib", repr(args.memory_gib)]
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
            {"key": "control", "value": {"model_route": "gpt-5"}},
            {"key": "candidate", "value": {"model_route": "cascade", "retrieval_profile": "citation_first"}},
        ],
        "environments": {
            ENVIRONMENT: {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"control": 50, "candidate": 50}},
            }
        },
    }


# Deterministic pseudo-random numbers from hashes, so every run builds the same data.
_MACROS = """
CREATE OR REPLACE TEMP MACRO u01(a, b) AS (hash(a, b) % 1000000007) / 1000000007.0;
CREATE OR REPLACE TEMP MACRO gauss(a, b) AS
    sqrt(-2 * ln(greatest(u01(a, b), 1e-12))) * cos(2 * pi() * u01(a, b + 1000));
CREATE OR REPLACE TEMP MACRO unit_id(i) AS 'conv_' || lpad(CAST(i AS VARCHAR), 9, '0');
CREATE OR REPLACE TEMP MACRO trace_hex(i) AS md5('t' || i);
CREATE OR REPLACE TEMP MACRO span_hex(i, k) AS substr(md5('s' || i || '/' || k), 1, 16);
CREATE OR REPLACE TEMP MACRO root_ts(i) AS
    to_timestamp({t0}) + to_microseconds(CAST(3600e6 + u01(i, 1) * {window_us} AS BIGINT));
CREATE OR REPLACE TEMP MACRO candidate(i) AS u01(i, 2) < 0.5;
"""

_EXPOSURES = """
INSERT INTO exposures BY NAME
SELECT 'x' || i AS event_id, root_ts(i) + INTERVAL 40 MICROSECOND AS ts, root_ts(i) AS received_at,
       '{env}' AS environment, '{flag}' AS flag_key, 1 AS flag_version, '{unit}' AS assignment_unit,
       unit_id(i) AS unit_id, variation AS assigned_variation, variation AS served_variation,
       trace_hex(i) AS trace_id, 'ramplight-python/0.1' AS sdk
FROM (SELECT i, CASE WHEN candidate(i) THEN 'candidate' ELSE 'control' END AS variation FROM range({n}) AS r(i))
"""

# One row per (trace i, span k); times in ms from the root's start. Children of the root: retrieval
# (1) with embeddings (2), vector search (3) and, unless the query is hard, a rerank (7); a tool (4)
# with its HTTP call (5) in parallel; the model call (6) — for a hard candidate query followed by the
# escalation (7) — whose last one has an HTTP child (9); a ticket tool (8) beside the model.
_SPANS = """
INSERT INTO spans BY NAME
WITH t AS (
    SELECT i, candidate(i) AS cand, candidate(i) AND u01(i, 7) < 0.3 AS hard, u01(i, 10) < 0.03 AS cancelled,
           120 * exp(0.4 * gauss(i, 3)) * CASE WHEN candidate(i) THEN 1.3 ELSE 1 END AS r,
           greatest(5, 150 * exp(0.6 * gauss(i, 5)) * CASE WHEN u01(i, 11) < 0.08 THEN 8 ELSE 1 END) AS tool,
           CASE WHEN candidate(i) THEN 450 ELSE 900 END * exp(0.35 * gauss(i, 6)) AS c1,
           900 * exp(0.35 * gauss(i, 8)) AS c2,
           300 * exp(0.8 * gauss(i, 9)) AS w,
           root_ts(i) AS t0
    FROM range({n}) AS q(i)
), u AS (
    SELECT *, greatest(r, tool) + 4 AS s1 FROM t
), v AS (
    SELECT *, CASE WHEN hard THEN s1 + c1 + 2 ELSE s1 END AS fs,
              CASE WHEN hard THEN s1 + c1 + 2 + c2 ELSE s1 + c1 END AS f
    FROM u
), x AS (
    SELECT *, CASE WHEN cancelled THEN s1 + 0.5 * (f - s1) ELSE greatest(f, s1 + w) + 3 END AS e FROM v
), s AS (
    SELECT x.*, k,
        CASE k WHEN 0 THEN NULL WHEN 2 THEN 1 WHEN 3 THEN 1 WHEN 5 THEN 4
               WHEN 7 THEN CASE WHEN hard THEN 0 ELSE 1 END
               WHEN 9 THEN CASE WHEN hard THEN 7 ELSE 6 END ELSE 0 END AS parent_k,
        CASE k WHEN 0 THEN '{root}' WHEN 1 THEN 'retrieval support_kb'
               WHEN 2 THEN 'embeddings text-embedding-3-small' WHEN 3 THEN 'vector_search'
               WHEN 4 THEN 'execute_tool lookup_order' WHEN 5 THEN 'GET /orders'
               WHEN 6 THEN CASE WHEN cand THEN 'chat gpt-5-mini' ELSE 'chat gpt-5' END
               WHEN 7 THEN CASE WHEN hard THEN 'chat gpt-5' ELSE 'rerank' END
               WHEN 8 THEN 'execute_tool create_ticket' ELSE 'POST /v1/responses' END AS name,
        CASE k WHEN 6 THEN CASE WHEN cand THEN 'gpt-5-mini' ELSE 'gpt-5' END
               WHEN 7 THEN CASE WHEN hard THEN 'gpt-5' END
               WHEN 2 THEN 'text-embedding-3-small' END AS model,
        CAST(1000 * CASE k WHEN 0 THEN 0 WHEN 3 THEN 2 + 0.2 * r WHEN 5 THEN 3
               WHEN 6 THEN s1 WHEN 7 THEN CASE WHEN hard THEN fs ELSE 2 + 0.7 * r END
               WHEN 8 THEN s1 WHEN 9 THEN fs + 1 ELSE 2 END AS BIGINT) AS a_us,
        CAST(1000 * CASE k WHEN 0 THEN e WHEN 1 THEN 2 + r WHEN 2 THEN 2 + 0.2 * r WHEN 3 THEN 2 + 0.7 * r
               WHEN 4 THEN 2 + tool WHEN 5 THEN greatest(4, 1 + tool) WHEN 6 THEN s1 + c1
               WHEN 7 THEN CASE WHEN hard THEN f ELSE 2 + r END
               WHEN 8 THEN s1 + w ELSE f - 1 END AS BIGINT) AS b_us
    FROM x, range({spans_per_trace}) AS p(k)
)
SELECT trace_hex(i) AS trace_id, span_hex(i, k) AS span_id,
       CASE WHEN parent_k IS NOT NULL THEN span_hex(i, parent_k) END AS parent_span_id,
       name, CASE WHEN k IN (2, 5, 6, 9) OR (k = 7 AND hard) THEN 'client' ELSE 'internal' END AS kind,
       t0 + to_microseconds(a_us) AS start_ts, t0 + to_microseconds(b_us) AS end_ts,
       (b_us - a_us) / 1000.0 AS duration_ms,
       CASE WHEN k = 0 AND cancelled THEN 'error'
            WHEN k IN (6, 7) AND model IS NOT NULL AND u01(i * 16 + k, 12) < 0.01 THEN 'error'
            WHEN k IN (4, 8) AND u01(i * 16 + k, 12) < 0.02 THEN 'error' ELSE 'unset' END AS status,
       'support-assistant' AS service, '{env}' AS environment,
       CASE WHEN k = 0 THEN unit_id(i) END AS unit_id,
       model AS gen_ai_model,
       CASE WHEN k = 2 THEN 40 WHEN model IS NOT NULL
            THEN CAST(3000 * exp(0.3 * gauss(i * 16 + k, 13)) + CASE WHEN cand THEN 1500 ELSE 0 END AS BIGINT)
       END AS input_tokens,
       CASE WHEN model LIKE 'gpt%' THEN CAST(250 * exp(0.5 * gauss(i * 16 + k, 14)) AS BIGINT) END AS output_tokens,
       CAST(json_object('gen_ai.operation.name',
            CASE WHEN k = 0 THEN 'invoke_agent' WHEN model LIKE 'gpt%' THEN 'chat' WHEN k = 2 THEN 'embeddings'
                 WHEN k IN (4, 8) THEN 'execute_tool' WHEN k = 1 THEN 'retrieval' ELSE 'internal' END,
            'error.type', CASE WHEN k = 0 AND cancelled THEN 'cancelled' END) AS JSON) AS attributes,
       t0 + to_microseconds(b_us) AS received_at,
       trace_hex(i) || span_hex(i, k) AS event_id
FROM s
"""


def build(path: Path, n_traces: int) -> dict[str, Any]:
    """Create the store: environments, the flag, span metrics, prices, exposures and spans."""
    from ramplight import control
    from ramplight.control.prices import apply_prices
    from ramplight.store.duckdb import DuckDBStore

    created = datetime.now(UTC).replace(microsecond=0) - timedelta(days=CREATED_DAYS_AGO)
    store = DuckDBStore(path)
    control.ensure_default_environments(store, clock=lambda: created)
    control.create_flag(store, flag_doc(), "bench", clock=lambda: created)
    for doc in METRICS:
        control.save_metric(store, doc, None)
    apply_prices(store, PRICES)
    con = store.connection()
    con.execute(_MACROS.format(t0=int(created.timestamp()), window_us=TRACE_SPAN_DAYS * 86400e6 - 7200e6))
    names = {"env": ENVIRONMENT, "flag": FLAG_KEY, "unit": UNIT}
    started = time.perf_counter()
    con.execute(_EXPOSURES.format(n=n_traces, **names))
    exposures_s = time.perf_counter() - started
    started = time.perf_counter()
    con.execute(_SPANS.format(n=n_traces, root=ROOT, spans_per_trace=SPANS_PER_TRACE, **names))
    spans_s = time.perf_counter() - started
    started = time.perf_counter()
    con.execute("CHECKPOINT")
    checkpoint_s = time.perf_counter() - started
    figures = {
        "exposures_s": exposures_s,
        "spans_s": spans_s,
        "checkpoint_s": checkpoint_s,
        "exposures": store.count("exposures"),
        "spans": store.count("spans"),
        "traces": n_traces,
    }
    store.close()
    return {**figures, "file_mb": path.stat().st_size / 2**20, "peak_mb": rss_mb()}


# -- Ramplight ----------------------------------------------------------------------------------


def _label(sql: str) -> str:
    if "RECURSIVE" in sql.upper():
        return "critical path (recursive CTE)"
    if "spans_with_inherited_unit" in sql:
        return "span joinability"
    if "spans_without_cost" in sql:
        return "trace summary per span name"
    if "AS model" in sql:
        return "routes per model"
    if "dq_joinable_events" in sql:
        return "sufficient statistics and data quality"
    if "fallback_reason" in sql:
        return "fallback reasons"
    if "FROM flag" in sql or "FROM metrics" in sql or "FROM prices" in sql or "SET " in sql:
        return "control plane"
    return "other"


class _TimedCursor:
    """Times each statement the readout sends, passing everything through."""

    def __init__(self, cursor: Any, log: list[tuple[str, float]]) -> None:
        self._cursor, self._log = cursor, log

    def execute(self, sql: str, *params: Any) -> Any:
        started = time.perf_counter()
        result = self._cursor.execute(sql, *params)
        self._log.append((_label(sql), time.perf_counter() - started))
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


def run_ramplight(db: Path) -> dict[str, Any]:
    from ramplight.analysis.options import ReadoutOptions
    from ramplight.analysis.service import report
    from ramplight.store.duckdb import DuckDBStore

    base_mb = rss_mb("VmRSS")
    store = DuckDBStore(db)
    log: list[tuple[str, float]] = []
    cursor = store.connection()
    store.connection = lambda: _TimedCursor(cursor, log)  # type: ignore[method-assign]
    read = store.read

    def timed_read(sql: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = read(sql, *args, **kwargs)
        log.append((_label(sql), time.perf_counter() - started))
        return result

    store.read = timed_read  # type: ignore[method-assign]
    started, cpu = time.perf_counter(), cpu_s()
    readout = report(store, FLAG_KEY, ENVIRONMENT, None, ReadoutOptions(traces=True))
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    store.close()
    statements: dict[str, float] = {}
    for name, spent in log:
        statements[name] = statements.get(name, 0.0) + spent
    traces = readout["traces"]
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "base_mb": base_mb,
        "peak_mb": rss_mb(),
        "statements": statements,
        "spans": {
            f"{v}|{s['name']}": [s["spans"], s["latency_p50_ms"], s["latency_p95_ms"]]
            for v, t in traces.items()
            for s in t["spans"]
        },
        "critical_path": {
            f"{v}|{p['name']}": p["traces"] for v, t in traces.items() for p in t["critical_path"]
        },
        "traces": {v: t["traces"] for v, t in traces.items()},
        "cost_per_trace": {v: t["cost_per_trace"] for v, t in traces.items()},
        "routes": {v: {r["model"]: r["share"] for r in t["routes"]} for v, t in traces.items()},
        "spans_quality": readout["data_quality"].get("spans"),
        "metrics": {
            m["key"]: {v["variation"]: v.get("mean") for v in m["variations"]} for m in readout["metrics"]
        },
    }


# -- numpy: pull the spans into Python ----------------------------------------------------------


def _codes(values: Any, width: int) -> tuple[Any, Any]:
    """Sorted distinct values and each value's index among them, on fixed-width bytes."""
    import numpy as np

    fixed = np.asarray(values, dtype=object).astype(f"S{width}")
    return np.unique(fixed, return_inverse=True)


def run_numpy(db: Path) -> dict[str, Any]:
    import duckdb
    import numpy as np

    base_mb = rss_mb("VmRSS")
    con = duckdb.connect(str(db), read_only=True)
    started, cpu = time.perf_counter(), cpu_s()
    spans = con.execute(
        "SELECT trace_id, span_id, parent_span_id, name, unit_id, epoch_us(end_ts) AS end_us, duration_ms"
        " FROM spans WHERE environment = ?",
        [ENVIRONMENT],
    ).fetchnumpy()
    exposures = con.execute(
        "SELECT unit_id, assigned_variation, epoch_us(ts) AS ts_us FROM exposures"
        " WHERE environment = ? AND flag_key = ?",
        [ENVIRONMENT, FLAG_KEY],
    ).fetchnumpy()
    pulled_s, pulled_cpu = time.perf_counter() - started, cpu_s() - cpu
    pulled_mb = rss_mb("VmRSS")

    n = len(spans["span_id"])
    span_ids, span_code = _codes(spans["span_id"], 16)
    if len(span_ids) != n:
        raise SystemExit("numpy: span ids are not unique; this program's codes assume they are")
    order = np.argsort(span_code)  # rows by span code: a row's index is its span's code
    trace_ids, trace_code = _codes(spans["trace_id"][order], 32)
    end_us = np.asarray(spans["end_us"])[order]
    duration = np.asarray(spans["duration_ms"])[order]
    names, name_code = _codes(spans["name"][order], 48)
    parents = np.ma.getdata(spans["parent_span_id"])[order]
    is_root = np.ma.getmaskarray(spans["parent_span_id"])[order]
    parent = np.full(n, -1, dtype=np.int64)
    child = ~is_root
    fixed_parents = parents[child].astype("S16")
    where = np.minimum(np.searchsorted(span_ids, fixed_parents), n - 1)
    found = span_ids[where] == fixed_parents
    parent[np.flatnonzero(child)[found]] = where[found]

    # Each span's unit: the root's, through the trace; then the unit's variation and first exposure.
    units = np.ma.getdata(spans["unit_id"])[order]
    root_rows = np.flatnonzero(is_root)
    exposed, exposed_code = _codes(exposures["unit_id"], 14)
    first_us = np.full(len(exposed), np.iinfo(np.int64).max)
    np.minimum.at(first_us, exposed_code, np.asarray(exposures["ts_us"]))
    variations, variation_code = np.unique(np.asarray(exposures["assigned_variation"], dtype=object).astype("S16"),
                                           return_inverse=True)  # fmt: skip
    unit_variation = np.full(len(exposed), -1)
    unit_variation[exposed_code] = variation_code  # one variation per unit in this data
    root_units = units[root_rows].astype("S14")
    at = np.minimum(np.searchsorted(exposed, root_units), len(exposed) - 1)
    joined = exposed[at] == root_units
    trace_unit = np.full(len(trace_ids), -1)
    trace_unit[trace_code[root_rows[joined]]] = at[joined]
    span_unit = trace_unit[trace_code]
    has_unit = span_unit >= 0
    span_variation = np.where(has_unit, unit_variation[span_unit], -1)
    counted = has_unit & (end_us >= np.where(has_unit, first_us[span_unit], 0))

    # Per (variation, name): spans and interpolated p50/p95 (numpy's linear = QUANTILE_CONT).
    group = span_variation * len(names) + name_code
    rows = np.flatnonzero(counted)
    by = rows[np.lexsort((duration[rows], group[rows]))]
    bounds = np.flatnonzero(np.diff(group[by])) + 1
    per_name: dict[str, list[Any]] = {}
    for chunk in np.split(by, bounds):
        g = int(group[chunk[0]])
        p50, p95 = np.percentile(duration[chunk], [50, 95])
        key = f"{variations[g // len(names)].decode()}|{names[g % len(names)].decode()}"
        per_name[key] = [len(chunk), float(p50), float(p95)]

    # The critical path: per parent the child that ends last (least span id among ties), from the roots.
    children = np.flatnonzero(parent >= 0)
    ranked = children[np.lexsort((children, -end_us[children], parent[children]))]
    first_of_parent = np.ones(len(ranked), dtype=bool)
    first_of_parent[1:] = parent[ranked][1:] != parent[ranked][:-1]
    last_child = np.full(n, -1, dtype=np.int64)
    last_child[parent[ranked[first_of_parent]]] = ranked[first_of_parent]
    level = root_rows
    path = [level]
    while len(level):
        level = last_child[level]
        level = level[level >= 0]
        path.append(level)
    on_path = np.concatenate(path)
    on_path = on_path[counted[on_path]]
    pairs = np.unique(np.stack([group[on_path], trace_code[on_path]]), axis=1)
    path_groups, path_traces = np.unique(pairs[0], return_counts=True)
    critical = {
        f"{variations[g // len(names)].decode()}|{names[g % len(names)].decode()}": int(c)
        for g, c in zip(path_groups, path_traces, strict=True)
    }
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    return {
        "seconds": seconds,
        "cpu_s": cpu,
        "pull_s": pulled_s,
        "pull_cpu_s": pulled_cpu,
        "base_mb": base_mb,
        "pulled_mb": pulled_mb,
        "peak_mb": rss_mb(),
        "spans": per_name,
        "critical_path": critical,
    }


# -- one query per trace ------------------------------------------------------------------------


def run_per_trace(db: Path, n_traces: int) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    picks = random.Random(7).sample(range(n_traces), min(PER_TRACE_SAMPLE, n_traces))
    ids = [row[0] for row in con.execute("SELECT md5('t' || i) FROM unnest(?) AS u(i)", [picks]).fetchall()]
    started, cpu = time.perf_counter(), cpu_s()
    on_path: dict[str, int] = {}
    for trace_id in ids:
        exposure = con.execute(
            "SELECT assigned_variation, ts FROM exposures WHERE environment = ? AND flag_key = ? AND trace_id = ?",
            [ENVIRONMENT, FLAG_KEY, trace_id],
        ).fetchone()
        rows = con.execute(
            "SELECT span_id, parent_span_id, name, end_ts FROM spans WHERE environment = ? AND trace_id = ?",
            [ENVIRONMENT, trace_id],
        ).fetchall()
        if exposure is None:
            continue
        variation, first = exposure
        last: dict[str | None, tuple[Any, str, str]] = {}
        for span_id, parent_id, name, end in rows:
            best = last.get(parent_id)
            if best is None or (end, -_order(span_id)) > (best[0], -_order(best[1])):
                last[parent_id] = (end, span_id, name)
        node = last.get(None)
        while node is not None:
            if node[0] >= first:
                key = f"{variation}|{node[2]}"
                on_path[key] = on_path.get(key, 0) + 1
            node = last.get(node[1])
    seconds, cpu = time.perf_counter() - started, cpu_s() - cpu
    return {
        "sampled": len(ids),
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_mb": rss_mb(),
        "critical_path": on_path,
    }


def _order(span_id: str) -> int:
    return int(span_id, 16)


# -- the report ---------------------------------------------------------------------------------


def mb(value: float) -> str:
    return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def times(value: float, reference: float) -> str:
    return "-" if reference <= 0 else f"{value / reference:.1f}×"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join((f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}") for i, w in enumerate(widths))
    print(line.format(*headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def cross_check(ramplight: dict[str, Any], numpy: dict[str, Any]) -> list[str]:
    """Where numpy's figures differ from Ramplight's (empty: they agree)."""
    problems = []
    if set(ramplight["spans"]) != set(numpy["spans"]):
        problems.append(f"span names differ: {sorted(set(ramplight['spans']) ^ set(numpy['spans']))}")
    for key, (count, p50, p95) in ramplight["spans"].items():
        theirs = numpy["spans"].get(key)
        if theirs is None:
            continue
        if theirs[0] != count or any(
            abs(a - b) > TOLERANCE * max(1.0, abs(b)) for a, b in zip(theirs[1:], (p50, p95), strict=True)
        ):
            problems.append(f"{key}: Ramplight {count, p50, p95}, numpy {tuple(theirs)}")
    if ramplight["critical_path"] != numpy["critical_path"]:
        problems.append(f"critical paths differ: {ramplight['critical_path']} vs {numpy['critical_path']}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=1_000_000, help="traces of 10 spans (default 1 M)")
    parser.add_argument("--quick", action="store_true", help="50 k traces, 500 k spans")
    parser.add_argument(
        "--db", type=Path, help="keep the generated store here (reused when its size matches)"
    )
    parser.add_argument(
        "--memory-gib", type=float, default=MEMORY_GIB, help="DuckDB memory_limit per process"
    )
    parser.add_argument(
        "--phase", choices=["build", "ramplight", "numpy", "per-trace"], help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.quick:
        args.traces = 50_000
    configure(args.memory_gib)
    if args.phase:
        runs: dict[str, Callable[[], dict[str, Any]]] = {
            "build": lambda: build(args.db, args.traces),
            "ramplight": lambda: run_ramplight(args.db),
            "numpy": lambda: run_numpy(args.db),
            "per-trace": lambda: run_per_trace(args.db, args.traces),
        }
        print(json.dumps(runs[args.phase](), default=str))
        return

    workdir = None
    if args.db is None:
        workdir = tempfile.TemporaryDirectory(prefix="ramplight-traces-")
        args.db = Path(workdir.name) / "store.duckdb"
    print(f"Trace analysis — {args.traces:,} traces, {args.traces * SPANS_PER_TRACE:,} spans. {machine()}")
    print(load_average())
    built = reuse(args)
    if built is None:
        built = in_child("build", args)
        print(
            f"built {built['exposures']:,} exposures in {built['exposures_s']:.1f} s and {built['spans']:,} "
            f"spans in {built['spans_s']:.1f} s, checkpoint {built['checkpoint_s']:.1f} s; file "
            f"{mb(built['file_mb'])}, build peak RSS {mb(built['peak_mb'])}"
        )
    else:
        print(f"reusing {args.db} ({built['spans']:,} spans)")
    ramplight = in_child("ramplight", args)
    numpy = in_child("numpy", args)
    per_trace = in_child("per-trace", args)
    print(load_average())
    report(args, ramplight, numpy, per_trace)
    if workdir is not None:
        workdir.cleanup()
    problems = cross_check(ramplight, numpy)
    if problems:
        print("\nnumpy and Ramplight DISAGREE:\n  " + "\n  ".join(problems))
        raise SystemExit(1)
    print("\nnumpy and Ramplight agree on every span name's count, p50 and p95 and on every critical path.")


def reuse(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.db.exists():
        return None
    import duckdb

    con = duckdb.connect(str(args.db), read_only=True)
    try:
        (spans,) = con.execute("SELECT count(*) FROM spans").fetchone()
    finally:
        con.close()
    if spans != args.traces * SPANS_PER_TRACE:
        args.db.unlink()
        return None
    return {"spans": spans}


def report(
    args: argparse.Namespace, ramplight: dict[str, Any], numpy: dict[str, Any], per_trace: dict[str, Any]
) -> None:
    scale = args.traces / max(1, per_trace["sampled"])
    walk_s, walk_cpu = per_trace["seconds"] * scale, per_trace["cpu_s"] * scale
    ours = ramplight["seconds"]
    print()
    print_table(
        ["contender", "wall s", "CPU s", "vs Ramplight", "peak RSS"],
        [
            ["Ramplight readout (traces=True)", f"{ours:.2f}", f"{ramplight['cpu_s']:.1f}", "1.0×",
             mb(ramplight["peak_mb"])],
            ["numpy: pull + compute", f"{numpy['seconds']:.2f}", f"{numpy['cpu_s']:.1f}",
             times(numpy["seconds"], ours), mb(numpy["peak_mb"])],
            ["  of which pulling the spans", f"{numpy['pull_s']:.2f}", f"{numpy['pull_cpu_s']:.1f}",
             times(numpy["pull_s"], ours), mb(numpy["pulled_mb"])],
            [f"per-trace queries (extrapolated from {per_trace['sampled']})", f"{walk_s:.0f}", f"{walk_cpu:.0f}",
             times(walk_s, ours), mb(per_trace["peak_mb"])],
        ],
    )  # fmt: skip
    print("\nRamplight's statements (wall s):")
    for name, spent in sorted(ramplight["statements"].items(), key=lambda kv: -kv[1]):
        print(f"  {spent:8.2f}  {name}")
    print("\nPer variation (Ramplight): traces, cost per trace, routes, critical path")
    for variation, traces in ramplight["traces"].items():
        path = {
            k.split("|", 1)[1]: c
            for k, c in ramplight["critical_path"].items()
            if k.startswith(variation + "|")
        }
        cost = ramplight["cost_per_trace"][variation]
        print(
            f"  {variation}: {traces:,} traces, ${cost:.5f} a trace, routes {ramplight['routes'][variation]}"
        )
        print(f"    critical path: {path}")
    print(f"  data quality: {ramplight['spans_quality']}")
    print(f"  per-trace walk over its sample, critical path: {per_trace['critical_path']}")


if __name__ == "__main__":
    main()
