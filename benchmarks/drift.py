"""Drift at scale: Ramplight's in-store drift vs pulling the rows into pandas and scipy (what a
notebook does), same data, one run.

    python benchmarks/drift.py                 # 2 M exposures of one flag over 7 days
    python benchmarks/drift.py --quick         # 100 k exposures (smoke run, seconds)
    python benchmarks/drift.py --rows N

The data is generated inside DuckDB (the real schema) for `support_assistant_profile`: each unit
exposed once, half control and half candidate, spread over 7 days. Two drift properties in the
exposures' attributes: `input_chars` (lognormal, whole characters, so values tie; the candidate's
inputs 5 % longer from day 4) and `category` (12 query categories; the candidate gets more
`refund` questions). Each is compared between variations and per day against the first.

Each contender runs in its own process against the same file, so its peak RSS is its own:

- Ramplight: `analysis.drift.drift_section` — one statement per property (exact KS statistic,
  decile or category counts) and scipy on the counts.
- pandas + scipy: `SELECT` the flag's variation, day, input_chars and category into a data
  frame, then per comparison `scipy.stats.ks_2samp`, PSI over `np.quantile` deciles and
  `scipy.stats.chi2_contingency`.

Every comparison's KS statistic, chi-square and PSI must agree between the two to 1e-9.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import load_average, machine, peak_rss_mb, ratio
from rich.console import Console
from rich.table import Table

FLAG = "support_assistant_profile"
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 7
CATEGORIES = 12
EPSILON = 1e-4  # as ramplight.core.stats.drift.PSI_EPSILON


def generate(path: Path, rows: int) -> None:
    from ramplight import control
    from ramplight.store.duckdb import DuckDBStore

    store = DuckDBStore(path)
    control.ensure_default_environments(store, clock=lambda: START - timedelta(days=30))
    doc = {
        "key": FLAG,
        "type": "json",
        "assignment_unit": "conversation",
        "variations": [{"key": "control", "value": {"prompt": "v3"}}, {"key": "candidate", "value": {"prompt": "v4"}}],
        "environments": {"production": {"default_variation": "control", "off_variation": "control",
                                        "rollout": {"weights": {"control": 50, "candidate": 50}}}},
    }  # fmt: skip
    control.create_flag(store, doc, "bench", clock=lambda: START)
    seconds = DAYS * 86_400
    store.connection().execute(
        f"""
        INSERT INTO exposures BY NAME
        SELECT 'x' || i AS event_id, ts, ts AS received_at, 'production' AS environment,
               '{FLAG}' AS flag_key, 'conversation' AS assignment_unit, 'u' || i AS unit_id,
               variation AS assigned_variation, variation AS served_variation,
               json_object(
                 'input_chars', round(exp(6 + 0.5 * sqrt(-2 * ln(random())) * cos(2 * pi() * random()))
                                      * CASE WHEN candidate AND ts >= TIMESTAMPTZ '{START + timedelta(days=3)}'
                                             THEN 1.05 ELSE 1 END),
                 'category', CASE WHEN candidate AND random() < 0.05 THEN 'refund'
                                  ELSE 'c' || CAST(floor(random() * {CATEGORIES - 1}) AS INT) END
               ) AS attributes
        FROM (SELECT i, i % 2 = 1 AS candidate,
                     CASE WHEN i % 2 = 1 THEN 'candidate' ELSE 'control' END AS variation,
                     TIMESTAMPTZ '{START}' + to_seconds(1 + (i * 7919) % {seconds}) AS ts
              FROM range({rows}) t(i))
        """
    )
    store.close()


def _properties() -> tuple[Any, ...]:
    from ramplight.core.drift import DriftProperty

    return (
        DriftProperty(
            key="input_chars", source="exposures", property="attributes.input_chars", type="numeric"
        ),
        DriftProperty(key="category", source="exposures", property="attributes.category", type="categorical"),
    )


def run_ramplight(path: Path) -> dict[str, Any]:
    from ramplight.analysis import service
    from ramplight.analysis.drift import drift_section
    from ramplight.store.duckdb import DuckDBStore

    store = DuckDBStore(path)
    spec, _ = service.spec_for(store, FLAG, "production")
    started = time.perf_counter()
    section = drift_section(store, spec, _properties(), "control", ["control", "candidate"], 0.05)
    seconds = time.perf_counter() - started
    found = {}
    for prop in section["properties"]:
        for c in prop["between_variations"]:
            found[f"{prop['key']} {c['variation']} vs control"] = (c["statistic"], c["psi"])
        for c in prop["over_time"]:
            found[f"{prop['key']} {c['variation']} {c['period']} vs {c['vs_period']}"] = (
                c["statistic"],
                c["psi"],
            )
    store.close()
    return {"seconds": seconds, "found": found}


def _psi(ref: Any, cmp: Any) -> float:
    import numpy as np

    ref, cmp = np.maximum(ref / ref.sum(), EPSILON), np.maximum(cmp / cmp.sum(), EPSILON)
    return float(np.sum((cmp - ref) * np.log(cmp / ref)))


def _numeric(ref: Any, cmp: Any) -> tuple[float, float]:
    import numpy as np
    from scipy import stats

    edges = np.quantile(ref, np.arange(1, 10) / 10, method="inverted_cdf")
    counts = [np.bincount(np.searchsorted(edges, x, side="left"), minlength=10) for x in (ref, cmp)]
    return float(stats.ks_2samp(cmp, ref, method="asymp").statistic), _psi(*counts)


def _categorical(ref: Any, cmp: Any) -> tuple[float, float]:
    import numpy as np
    from scipy import stats

    names = sorted(set(ref.unique()) | set(cmp.unique()))
    table = np.array([[int((x == n).sum()) for n in names] for x in (ref, cmp)])
    return float(stats.chi2_contingency(table, correction=False).statistic), _psi(table[0], table[1])


def run_pandas(path: Path) -> dict[str, Any]:
    import duckdb
    import pandas  # noqa: F401  (imported before the clock starts, as Ramplight's modules are)

    started = time.perf_counter()
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    frame = con.execute(
        "SELECT assigned_variation AS variation, strftime(ts, '%Y-%m-%d') AS day, "
        "CAST(attributes->>'$.input_chars' AS DOUBLE) AS input_chars, attributes->>'$.category' AS category "
        f"FROM exposures WHERE flag_key = '{FLAG}' AND environment = 'production'"
    ).df()
    loaded = time.perf_counter() - started
    found = {}
    for key, compare in (("input_chars", _numeric), ("category", _categorical)):
        control, candidate = (frame[frame.variation == v][key] for v in ("control", "candidate"))
        found[f"{key} candidate vs control"] = compare(control, candidate)
        for variation in ("control", "candidate"):
            mine = frame[frame.variation == variation]
            days = sorted(mine.day.unique())
            first = mine[mine.day == days[0]][key]
            for day in days[1:]:
                found[f"{key} {variation} {day} vs {days[0]}"] = compare(first, mine[mine.day == day][key])
    return {"seconds": time.perf_counter() - started, "load_seconds": loaded, "found": found}


def contender(name: str, path: Path) -> dict[str, Any]:
    """Run one contender in a process of its own; its answer and its own peak RSS."""
    done = subprocess.run(
        [sys.executable, __file__, "--contender", name, "--db", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true", help="100 k exposures")
    parser.add_argument("--contender", choices=("ramplight", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        result = (run_ramplight if args.contender == "ramplight" else run_pandas)(args.db)
        print(json.dumps({**result, "rss_mb": peak_rss_mb()}))
        return
    rows = 100_000 if args.quick else args.rows
    console = Console()
    console.print(f"{machine()}; {load_average()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "drift.duckdb"
        started = time.perf_counter()
        generate(path, rows)
        console.print(f"generated {rows:,} exposures in {time.perf_counter() - started:.1f} s")
        ours, theirs = contender("ramplight", path), contender("pandas", path)
    differ = [
        k
        for k in theirs["found"]
        if k not in ours["found"]
        or not all(
            math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
            for a, b in zip(ours["found"][k], theirs["found"][k], strict=True)
        )
    ]
    table = Table(
        "contender", "time", "vs Ramplight", "peak RSS", title=f"drift of 2 properties, {rows:,} exposures"
    )
    table.add_row("Ramplight (in the store)", f"{ours['seconds']:.2f} s", "1×", f"{ours['rss_mb']:.0f} MiB")
    table.add_row(
        f"pandas + scipy (of which loading {theirs['load_seconds']:.2f} s)",
        f"{theirs['seconds']:.2f} s",
        ratio(theirs["seconds"], ours["seconds"]),
        f"{theirs['rss_mb']:.0f} MiB",
    )
    console.print(table)
    console.print(
        f"{len(theirs['found'])} comparisons; KS statistics, chi-squares and PSIs "
        + ("agree to 1e-9" if not differ else f"DIFFER: {', '.join(differ)}")
    )
    console.print(load_average())
    if differ:
        sys.exit(1)


if __name__ == "__main__":
    main()
