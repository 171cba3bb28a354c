"""Local flag evaluation: Ramplight vs the GrowthBook and Unleash Python SDKs, same flag, one run.

    python benchmarks/evaluation.py            # 200,000 distinct units
    python benchmarks/evaluation.py --quick    # 20,000 units (smoke run)
    python benchmarks/evaluation.py --part rules|configs   # one part only

Part `simple` (below); part `rules`: a flag with 2 rules x 3 clauses (in, equals, semver_gte /
in, equals, gte) for units that match the first rule, the second, or none, against GrowthBook's
same conditions ($in, $eq, $vgte, $gte); part `configs`: 10,000 generated flags — decode +
compile time and memory against json.loads of the same bytes, a random flag per call, and
`Client()` ready time and growth against a real server, with the config's bytes raw and gzip.

One JSON flag with three behavior profiles (control / candidate / fallback), one targeting rule
(`plan` in ["enterprise"] → candidate) and an 80/20 control/candidate rollout otherwise, written
in each SDK's own format. Every path evaluates the same units (`conv_000001`, …, each with a
`plan` attribute) on one core: throughput over all units, latency per call on a sample.
Nothing talks to the network: `Client` talks to a `ramplight serve` process on 127.0.0.1 (started
here, so this process holds only the SDK), and connections elsewhere are refused.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _common import RamplightServer, load_average, loopback_only, machine, peak_rss_mb, rate, ratio
from rich.console import Console
from rich.table import Table

FLAG_KEY = "support_assistant_profile"
CONTROL = {"prompt_profile": "support_v3", "model_route": "stable", "retrieval_profile": "baseline"}
CANDIDATE = {"prompt_profile": "support_v4", "model_route": "candidate", "retrieval_profile": "hybrid"}
FALLBACK = {"prompt_profile": "support_v3", "model_route": "stable", "retrieval_profile": "none"}
PLANS = (("free", 50), ("pro", 30), ("team", 15), ("enterprise", 5))

TARGET_EVALS_PER_S = 500_000
TARGET_P50_US = 2.0

console = Console(width=None if sys.stdout.isatty() else 132)


# -- the flag, in each SDK's format ---------------------------------------------------------


def ramplight_flag() -> dict[str, Any]:
    return {
        "key": FLAG_KEY,
        "type": "json",
        "assignment_unit": "conversation",
        "variations": [
            {"key": "control", "value": CONTROL},
            {"key": "candidate", "value": CANDIDATE},
            {"key": "fallback", "value": FALLBACK},
        ],
        "environments": {
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rules": [
                    {
                        "id": "enterprise",
                        "clauses": [{"attribute": "plan", "op": "in", "values": ["enterprise"]}],
                        "variation": "candidate",
                    }
                ],
                "rollout": {"weights": {"control": 80, "candidate": 20}},
            }
        },
    }


def growthbook_features(as_experiment: bool) -> dict[str, Any]:
    """GrowthBook has no named variations outside experiments: the 80/20 split is either an
    experiment rule (weights over the two values) or a percentage-rollout rule (force the
    candidate value to 20 % coverage, default value otherwise)."""
    enterprise = {"id": "enterprise", "condition": {"plan": {"$in": ["enterprise"]}}, "force": CANDIDATE}
    if as_experiment:
        split = {
            "id": "split",
            "key": FLAG_KEY,
            "variations": [CONTROL, CANDIDATE],
            "weights": [0.8, 0.2],
            "coverage": 1.0,
            "hashAttribute": "id",
            "seed": FLAG_KEY,
            "hashVersion": 2,
            "meta": [{"key": "control"}, {"key": "candidate"}],
        }
    else:
        split = {
            "id": "rollout",
            "force": CANDIDATE,
            "coverage": 0.2,
            "hashAttribute": "id",
            "seed": FLAG_KEY,
            "hashVersion": 2,
        }
    return {FLAG_KEY: {"defaultValue": CONTROL, "rules": [enterprise, split]}}


def unleash_features() -> dict[str, Any]:
    """The `/api/client/features` document: two flexibleRollout strategies with strategy variants."""

    def variant(name: str, weight: int, value: dict[str, str]) -> dict[str, Any]:
        return {
            "name": name,
            "weight": weight,
            "weightType": "variable",
            "stickiness": "userId",
            "payload": {"type": "json", "value": json.dumps(value)},
        }

    rollout = {"rollout": "100", "stickiness": "userId", "groupId": FLAG_KEY}
    return {
        "version": 2,
        "features": [
            {
                "name": FLAG_KEY,
                "type": "experiment",
                "enabled": True,
                "project": "default",
                "strategies": [
                    {
                        "name": "flexibleRollout",
                        "parameters": rollout,
                        "constraints": [{"contextName": "plan", "operator": "IN", "values": ["enterprise"]}],
                        "variants": [variant("candidate", 1000, CANDIDATE)],
                    },
                    {
                        "name": "flexibleRollout",
                        "parameters": rollout,
                        "constraints": [],
                        "variants": [variant("control", 800, CONTROL), variant("candidate", 200, CANDIDATE)],
                    },
                ],
                "variants": [variant("fallback", 0, FALLBACK)],
            }
        ],
    }


# -- measurement ----------------------------------------------------------------------------


@dataclass
class Units:
    ids: list[str]
    plans: list[str]
    sample: list[int]  # indexes timed call by call


@dataclass
class Route:
    """One way to evaluate the units at `indexes`: `run` (results dropped, as an application that
    uses each value and moves on), `timed` (ns per call), `collect` (results one by one, untimed)."""

    name: str
    run: Callable[[list[int]], None]
    timed: Callable[[list[int]], list[int]]
    collect: Callable[[list[int]], Iterator[Any]]
    variation: Callable[[Any], str | None]


@dataclass
class Row:
    name: str
    per_second: float
    p50_us: float
    p99_us: float
    candidate_share: float
    enterprise_candidate: float
    peak_rss_mb: float
    variations: list[str | None]


def make_units(n: int, sample: int, seed: int = 7) -> Units:
    rng = random.Random(seed)
    names, weights = zip(*PLANS, strict=True)
    plans = rng.choices(names, weights, k=n)
    step = max(1, n // sample)
    return Units([f"conv_{i:06d}" for i in range(1, n + 1)], plans, list(range(0, n, step))[:sample])


def percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def measure(path: Route, units: Units, repeats: int) -> Row:
    """Best of `repeats` passes over every unit (other work on the machine only slows a pass)."""
    everyone = list(range(len(units.ids)))
    path.run(everyone[:2000])  # warm up
    elapsed = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        path.run(everyone)
        elapsed = min(elapsed, time.perf_counter() - started)
    latencies = sorted(path.timed(units.sample))
    rss = peak_rss_mb()
    variations = [path.variation(r) for r in path.collect(everyone)]
    enterprise = [v for v, p in zip(variations, units.plans, strict=True) if p == "enterprise"]
    others = [v for v, p in zip(variations, units.plans, strict=True) if p != "enterprise"]
    return Row(
        name=path.name,
        per_second=len(everyone) / elapsed,
        p50_us=percentile(latencies, 0.50),
        p99_us=percentile(latencies, 0.99),
        candidate_share=others.count("candidate") / max(1, len(others)),
        enterprise_candidate=enterprise.count("candidate") / max(1, len(enterprise)),
        peak_rss_mb=rss,
        variations=variations,
    )


def timer_overhead_ns(n: int = 20_000) -> int:
    clock = time.perf_counter_ns
    spans = []
    for _ in range(n):
        t0 = clock()
        t1 = clock()
        spans.append(t1 - t0)
    spans.sort()
    return spans[n // 2]


# -- the SDKs -----------------------------------------------------------------------------


def ramplight_core_path(units: Units) -> Route:
    from ramplight.core.evaluate import CompiledConfig
    from ramplight.core.flags import SdkConfig, check_flag, convert_flag, sdk_flag, stabilize

    flag = convert_flag(ramplight_flag())
    check_flag(flag)
    entry = sdk_flag(stabilize(flag, None), "production")
    assert entry is not None
    config = CompiledConfig(SdkConfig(environment="production", flags={FLAG_KEY: entry}))
    return _ramplight_path("Ramplight core evaluate", config.evaluate, units)


def _ramplight_path(name: str, evaluate: Callable[..., Any], units: Units) -> Route:
    ids = units.ids
    attrs = [{"plan": p} for p in units.plans]
    key = FLAG_KEY

    def run(indexes: list[int]) -> None:
        for i in indexes:
            evaluate(key, ids[i], attrs[i])

    def collect(indexes: list[int]) -> Iterator[Any]:
        return (evaluate(key, ids[i], attrs[i]) for i in indexes)

    def timed(indexes: list[int]) -> list[int]:
        clock = time.perf_counter_ns
        spans = []
        for i in indexes:
            unit, attributes = ids[i], attrs[i]
            t0 = clock()
            evaluate(key, unit, attributes)
            t1 = clock()
            spans.append(t1 - t0)
        return spans

    return Route(name, run, timed, collect, lambda r: r.variation)


def _json_value_path(name: str, json_value: Callable[..., Any], units: Units) -> Route:
    path = _ramplight_path(name, json_value, units)
    path.variation = lambda v: "candidate" if v is not None and v["model_route"] == "candidate" else "control"
    return path


def growthbook_path(units: Units, as_experiment: bool) -> Route:
    from growthbook import GrowthBook

    gb = GrowthBook(features=growthbook_features(as_experiment))
    attrs = [{"id": u, "plan": p} for u, p in zip(units.ids, units.plans, strict=True)]
    set_attributes, eval_feature, key = gb.set_attributes, gb.eval_feature, FLAG_KEY

    def run(indexes: list[int]) -> None:
        for i in indexes:
            set_attributes(attrs[i])
            eval_feature(key)

    def collect(indexes: list[int]) -> Iterator[Any]:
        for i in indexes:
            set_attributes(attrs[i])
            yield eval_feature(key)

    def timed(indexes: list[int]) -> list[int]:
        clock = time.perf_counter_ns
        spans = []
        for i in indexes:
            attributes = attrs[i]
            t0 = clock()
            set_attributes(attributes)
            eval_feature(key)
            t1 = clock()
            spans.append(t1 - t0)
        return spans

    def variation(result: Any) -> str | None:
        return "candidate" if result.value == CANDIDATE else "control" if result.value == CONTROL else None

    kind = "experiment rule" if as_experiment else "rollout rule"
    return Route(f"GrowthBook, {kind}", run, timed, collect, variation)


def unleash_path(units: Units, cache_dir: Path) -> tuple[Route, Callable[[], None]]:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    # Offline: features come from a bootstrapped file cache; no registration, no metrics, no
    # polling (fetch_toggles=False runs the OfflineConnector, which only re-reads the cache).
    cache = FileCache("ramplight-bench", directory=str(cache_dir))
    cache.bootstrap_from_dict(unleash_features())
    client = UnleashClient(
        url="http://127.0.0.1:9/api",  # never contacted
        app_name="ramplight-bench",
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=3600,
        cache=cache,
    )
    client.initialize_client(fetch_toggles=False)
    contexts = [{"userId": u, "plan": p} for u, p in zip(units.ids, units.plans, strict=True)]
    get_variant, key = client.get_variant, FLAG_KEY

    def run(indexes: list[int]) -> None:
        for i in indexes:
            get_variant(key, contexts[i])

    def collect(indexes: list[int]) -> Iterator[Any]:
        return (get_variant(key, contexts[i]) for i in indexes)

    def timed(indexes: list[int]) -> list[int]:
        clock = time.perf_counter_ns
        spans = []
        for i in indexes:
            context = contexts[i]
            t0 = clock()
            get_variant(key, context)
            t1 = clock()
            spans.append(t1 - t0)
        return spans

    return Route("Unleash, offline", run, timed, collect, lambda v: v.get("name")), client.destroy


# -- main ---------------------------------------------------------------------------------


def run(n: int, sample: int, repeats: int) -> None:
    from ramplight import Client

    logging.getLogger("UnleashClient").setLevel(logging.ERROR)
    units = make_units(n, sample)
    console.print(
        f"[bold]Local evaluation[/] of one JSON flag for {n:,} distinct units — {machine()}, {load_average()}"
    )
    console.print(
        f"growthbook {version('growthbook')}, UnleashClient {version('UnleashClient')} "
        f"(yggdrasil-engine {version('yggdrasil-engine')}); evals/s: best of {repeats} pass(es) over all "
        f"units; latency: {len(units.sample):,} calls timed one by one "
        f"(perf_counter_ns overhead ≈ {timer_overhead_ns()} ns, included)"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ramplight-bench-eval-") as tmp:
        rows.append(measure(ramplight_core_path(units), units, repeats))

        with RamplightServer(Path(tmp) / "b.duckdb", Path(tmp) / "server.log") as server:
            server.admin.post("/api/flags", json=ramplight_flag()).raise_for_status()
            sdk_key = server.admin.post(
                "/api/keys", json={"kind": "sdk", "name": "bench", "environment": "production"}
            ).json()["key"]
            with Client(sdk_key, url=server.url, poll_interval=3600, init_timeout=10) as client:
                if not client.ready:
                    raise RuntimeError("the Ramplight client did not load its config")
                rows.append(
                    measure(
                        _ramplight_path("Ramplight Client.evaluate", client.evaluate, units), units, repeats
                    )
                )
                rows.append(
                    measure(
                        _json_value_path("Ramplight Client.json_value", client.json_value, units),
                        units,
                        repeats,
                    )
                )

        gc.collect()
        rows.append(measure(growthbook_path(units, as_experiment=True), units, repeats))
        rows.append(measure(growthbook_path(units, as_experiment=False), units, repeats))
        gc.collect()
        path, destroy = unleash_path(units, Path(tmp) / "unleash-cache")
        try:
            rows.append(measure(path, units, repeats))
        finally:
            destroy()

    core, via_client = rows[0], rows[1]
    mismatched = sum(a != b for a, b in zip(core.variations, via_client.variations, strict=True))
    growthbook = max((r for r in rows if r.name.startswith("GrowthBook")), key=lambda r: r.per_second)

    table = Table(title=f"Local evaluation, {n:,} units, one core (ratio vs the faster GrowthBook path)")
    table.add_column("SDK / call")
    for column in (
        "evals/s",
        "p50 µs",
        "p99 µs",
        "vs GrowthBook",
        "candidate share*",
        "enterprise→cand.",
        "peak RSS so far",
    ):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row.name,
            rate(row.per_second),
            f"{row.p50_us:.2f}",
            f"{row.p99_us:.2f}",
            ratio(row.per_second, growthbook.per_second),
            f"{row.candidate_share:.1%}",
            f"{row.enterprise_candidate:.0%}",
            f"{row.peak_rss_mb:.0f} MiB",
        )
    console.print(table)
    console.print("* among non-enterprise units; the rollout is 80/20, so ≈ 20 % is expected.")
    console.print(
        f"Ramplight core and Client agree on {n - mismatched:,} of {n:,} units. "
        f"Peak RSS of this process: {peak_rss_mb():.0f} MiB. At the end: {load_average()}."
    )
    best = max(rows[:2], key=lambda r: r.per_second)
    ok_rate = core.per_second >= TARGET_EVALS_PER_S and via_client.per_second >= TARGET_EVALS_PER_S
    ok_p50 = core.p50_us < TARGET_P50_US and via_client.p50_us < TARGET_P50_US
    console.print(
        f"Targets (Ramplight): ≥ {TARGET_EVALS_PER_S:,} evals/s — "
        f"{'[green]met[/]' if ok_rate else '[red]missed[/]'} "
        f"(core {rate(core.per_second)}, Client {rate(via_client.per_second)}); "
        f"p50 < {TARGET_P50_US} µs — {'[green]met[/]' if ok_p50 else '[red]missed[/]'} "
        f"(core {core.p50_us:.2f} µs, Client {via_client.p50_us:.2f} µs). "
        f"Best Ramplight path is {best.per_second / growthbook.per_second:.0f}× GrowthBook."
    )


# -- part rules: 2 rules x 3 clauses, semver and numeric ------------------------------------

RULES_KEY = "mobile_assistant_profile"
VERSIONS = ("2.3.9", "2.4.0", "2.4.1", "2.5.0", "v2.5.1", "2.6.0-rc.1", "2.6.0", "2.10.2", "3.0.0-beta.2")


def rules_flag() -> dict[str, Any]:
    return {
        "key": RULES_KEY,
        "type": "json",
        "assignment_unit": "user",
        "variations": [
            {"key": "control", "value": CONTROL},
            {"key": "candidate", "value": CANDIDATE},
            {"key": "fallback", "value": FALLBACK},
        ],
        "environments": {
            "production": {
                "default_variation": "control",
                "off_variation": "control",
                "rules": [
                    {
                        "id": "mobile-beta",
                        "clauses": [
                            {"attribute": "plan", "op": "in", "values": ["pro", "team", "enterprise"]},
                            {"attribute": "platform", "op": "equals", "values": ["ios"]},
                            {"attribute": "app_version", "op": "semver_gte", "values": ["2.4.0"]},
                        ],
                        "variation": "candidate",
                    },
                    {
                        "id": "large-eu",
                        "clauses": [
                            {"attribute": "country", "op": "in", "values": ["de", "fr", "nl", "se"]},
                            {"attribute": "beta", "op": "equals", "values": [True]},
                            {"attribute": "seats", "op": "gte", "values": [50]},
                        ],
                        "variation": "fallback",
                    },
                ],
                "rollout": {"weights": {"control": 80, "candidate": 20}},
            }
        },
    }


def rules_growthbook_features() -> dict[str, Any]:
    first = {
        "plan": {"$in": ["pro", "team", "enterprise"]},
        "platform": "ios",
        "app_version": {"$vgte": "2.4.0"},
    }
    second = {"country": {"$in": ["de", "fr", "nl", "se"]}, "beta": True, "seats": {"$gte": 50}}
    rollout = {"id": "rollout", "force": CANDIDATE, "coverage": 0.2, "hashAttribute": "id", "seed": RULES_KEY}
    return {
        RULES_KEY: {
            "defaultValue": CONTROL,
            "rules": [
                {"id": "mobile-beta", "condition": first, "force": CANDIDATE},
                {"id": "large-eu", "condition": second, "force": FALLBACK},
                {**rollout, "hashVersion": 2},
            ],
        }
    }


RULE_CASES = ("first rule matches", "second rule matches", "no rule matches", "none, distinct versions")


def rule_attributes(case: str, i: int, rng: random.Random) -> dict[str, Any]:
    """Units for `case`; a no-match unit fails each rule at its last clause (the most work)."""
    version = rng.choice(VERSIONS)
    if case == RULE_CASES[0]:
        return {
            "plan": "team",
            "platform": "ios",
            "app_version": "2.5.0" if version < "2.4" else version,
            "country": "us",
            "beta": False,
            "seats": 12,
        }
    if case == RULE_CASES[1]:
        return {
            "plan": "free",
            "platform": "android",
            "app_version": version,
            "country": "de",
            "beta": True,
            "seats": 120,
        }
    old = "2.3.9" if case == RULE_CASES[2] else f"2.3.{i}"
    return {"plan": "pro", "platform": "ios", "app_version": old, "country": "fr", "beta": True, "seats": 10}


def rules_part(n: int, repeats: int) -> None:
    from growthbook import GrowthBook

    from ramplight.core.evaluate import CompiledConfig
    from ramplight.core.flags import SdkConfig, check_flag, convert_flag, sdk_flag, stabilize

    flag = convert_flag(rules_flag())
    check_flag(flag)
    entry = sdk_flag(stabilize(flag, None), "production")
    assert entry is not None
    config = CompiledConfig(SdkConfig(environment="production", flags={RULES_KEY: entry}))
    simple = ramplight_flag()
    simple_flag = sdk_flag(stabilize(convert_flag(simple), None), "production")
    assert simple_flag is not None
    simple_config = CompiledConfig(SdkConfig(environment="production", flags={FLAG_KEY: simple_flag}))
    gb = GrowthBook(features=rules_growthbook_features())
    ids = [f"user_{i:06d}" for i in range(n)]
    table = Table(
        title=f"A flag with 2 rules x 3 clauses (in, equals, semver_gte / in, equals, gte), {n:,} units"
    )
    for column in (
        "case",
        "Ramplight evals/s",
        "p50 µs",
        "GrowthBook evals/s",
        "Ramplight vs GrowthBook",
        "vs simple flag",
    ):
        table.add_column(column, justify="right" if column != "case" else "left")
    simple_attrs = [{"plan": "pro"} for _ in ids]
    simple_rate = _loop_rate(simple_config.evaluate, FLAG_KEY, ids, simple_attrs, repeats)
    expected = {RULE_CASES[0]: "mobile-beta", RULE_CASES[1]: "large-eu"}
    for case in RULE_CASES:
        rng = random.Random(11)
        attrs = [rule_attributes(case, i, rng) for i in range(n)]
        results = {config.evaluate(RULES_KEY, u, a).rule_id for u, a in zip(ids, attrs, strict=True)}
        assert results == {expected.get(case)}, (case, results)
        ours = _loop_rate(config.evaluate, RULES_KEY, ids, attrs, repeats)
        p50 = _p50_us(config.evaluate, RULES_KEY, ids, attrs)
        gb_attrs = [{"id": u, **a} for u, a in zip(ids, attrs, strict=True)]
        theirs = _growthbook_rate(gb, gb_attrs, repeats)
        table.add_row(
            case, rate(ours), f"{p50:.2f}", rate(theirs), ratio(ours, theirs), ratio(ours, simple_rate)
        )
    table.add_row("(simple flag: one rule, one clause)", rate(simple_rate), "", "", "", "1.00×")
    console.print(table)


def _loop_rate(
    evaluate: Callable[..., Any], key: str, ids: list[str], attrs: list[Any], repeats: int
) -> float:
    pairs = list(zip(ids, attrs, strict=True))
    for unit, attributes in pairs[:2000]:
        evaluate(key, unit, attributes)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for unit, attributes in pairs:
            evaluate(key, unit, attributes)
        best = min(best, time.perf_counter() - started)
    return len(pairs) / best


def _p50_us(evaluate: Callable[..., Any], key: str, ids: list[str], attrs: list[Any]) -> float:
    clock = time.perf_counter_ns
    spans = []
    for unit, attributes in list(zip(ids, attrs, strict=True))[:20_000]:
        t0 = clock()
        evaluate(key, unit, attributes)
        spans.append(clock() - t0)
    spans.sort()
    return percentile(spans, 0.5)


def _growthbook_rate(gb: Any, attrs: list[dict[str, Any]], repeats: int) -> float:
    set_attributes, eval_feature = gb.set_attributes, gb.eval_feature
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for attributes in attrs:
            set_attributes(attributes)
            eval_feature(RULES_KEY)
        best = min(best, time.perf_counter() - started)
    return len(attrs) / best


# -- part configs: 10,000 realistic flags ---------------------------------------------------


def realistic_flags(count: int, seed: int = 3) -> list[dict[str, Any]]:
    """Flag documents as teams write them: mostly boolean kill switches and ramps, some string
    and JSON flags, a third with 1-3 targeting rules (in, equals, regex, semver, numeric)."""
    rng = random.Random(seed)
    clauses = [
        {"attribute": "plan", "op": "in", "values": ["pro", "team", "enterprise"]},
        {"attribute": "country", "op": "in", "values": ["de", "fr", "nl", "se", "dk"]},
        {"attribute": "platform", "op": "equals", "values": ["ios"]},
        {"attribute": "app_version", "op": "semver_gte", "values": ["2.4.0"]},
        {"attribute": "seats", "op": "gte", "values": [50]},
        {"attribute": "email", "op": "regex", "values": ["@example\\.com$"]},
        {"attribute": "unit_id", "op": "in", "values": [f"user_{i:06d}" for i in range(8)]},
    ]
    flags = []
    for i in range(count):
        kind = rng.choices(("boolean", "string", "json"), (70, 20, 10))[0]
        if kind == "boolean":
            variations = [{"key": "off", "value": False}, {"key": "on", "value": True}]
        elif kind == "string":
            variations = [{"key": k, "value": f"{k}-copy-v{i % 7}"} for k in ("control", "candidate")]
        else:
            variations = [
                {"key": "control", "value": CONTROL},
                {"key": "candidate", "value": CANDIDATE},
                {"key": "fallback", "value": FALLBACK},
            ]
        first, second = variations[0]["key"], variations[1]["key"]
        env: dict[str, Any] = {
            "default_variation": first,
            "off_variation": first,
            "enabled": rng.random() > 0.05,
        }
        if rng.random() < 0.6:
            share = rng.choice((1, 5, 10, 25, 50))
            env["rollout"] = {"weights": {first: 100 - share, second: share}}
        if rng.random() < 0.35:
            env["rules"] = [
                {"id": f"rule-{r}", "clauses": rng.sample(clauses, rng.randint(1, 3)), "variation": second}
                for r in range(rng.randint(1, 3))
            ]
        flags.append(
            {
                "key": f"team{i % 40:02d}.feature_{i:05d}",
                "type": kind,
                "assignment_unit": "user",
                "description": "",
                "variations": variations,
                "environments": {"production": env},
            }
        )
    return flags


def sdk_config_bytes(docs: list[dict[str, Any]]) -> bytes:
    import msgspec

    from ramplight.core.flags import SdkConfig, convert_flag, sdk_flag, stabilize

    flags = {}
    for doc in docs:
        entry = sdk_flag(msgspec.structs.replace(stabilize(convert_flag(doc), None), version=1), "production")
        assert entry is not None
        flags[entry.key] = entry
    return msgspec.json.encode(SdkConfig(environment="production", flags=flags))


def _compile(body: bytes) -> Any:
    from ramplight.sdk import config_source

    return config_source.decode_config(body)


def _best_seconds(action: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def _retained_bytes(action: Callable[[], Any]) -> tuple[Any, int]:
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    result = action()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return result, after - before


def configs_part(count: int, repeats: int, calls: int) -> None:
    import gzip

    docs = realistic_flags(count)
    body = sdk_config_bytes(docs)
    per_flag = len(body) / count
    console.print(
        f"[bold]{count:,} flags[/]: config {len(body) / 2**20:.1f} MiB of JSON ({per_flag:.0f} B/flag)"
    )
    table = Table(title=f"A {count:,}-flag config in the SDK (ratio vs json.loads of the same bytes)")
    for column in ("step", "Ramplight", "json.loads", "ratio"):
        table.add_column(column, justify="right" if column != "step" else "left")
    ours_s = _best_seconds(lambda: _compile(body), repeats)
    floor_s = _best_seconds(lambda: json.loads(body), repeats)
    table.add_row("decode + compile, s", f"{ours_s:.3f}", f"{floor_s:.3f}", ratio(ours_s, floor_s))
    # From a fresh copy of the body, so that what the config keeps of it is counted.
    compiled, ours_b = _retained_bytes(lambda: _compile(bytes(bytearray(body))))
    loaded, floor_b = _retained_bytes(lambda: json.loads(body))
    table.add_row(
        "memory, B/flag", f"{ours_b / count:,.0f}", f"{floor_b / count:,.0f}", ratio(ours_b, floor_b)
    )
    table.add_row("memory ÷ JSON bytes", f"{ours_b / len(body):.2f}", f"{floor_b / len(body):.2f}", "")

    rng = random.Random(5)
    keys = [d["key"] for d in docs]
    picks = [
        (
            rng.choice(keys),
            f"user_{i:06d}",
            {
                "plan": rng.choice(("free", "pro", "team")),
                "country": "de",
                "platform": "ios",
                "app_version": rng.choice(VERSIONS),
                "seats": rng.randint(1, 200),
                "email": f"u{i}@example.com",
            },
        )
        for i in range(calls)
    ]

    def every_flag_used() -> Any:
        config = _compile(bytes(bytearray(body)))
        for key in keys:  # compiles what is compiled on first use
            config.evaluate(key, "user_000001", picks[0][2])
        return config

    def every_flag_used_cold() -> Any:
        from ramplight.core import evaluate

        evaluate._SHAPES.clear()  # as in a new process: no rule shape compiled yet
        return every_flag_used()

    compile_all_s = _best_seconds(every_flag_used_cold, repeats)
    table.add_row("decode, then every flag compiled and run once, s", f"{compile_all_s:.3f}", "", "")
    _, used_b = _retained_bytes(every_flag_used)
    table.add_row("memory once every flag ran, B/flag", f"{used_b / count:,.0f}", "", ratio(used_b, floor_b))
    table.add_row("  ÷ JSON bytes", f"{used_b / len(body):.2f}", "", "")
    compiled = every_flag_used()
    evaluate = compiled.evaluate
    gc.collect()
    started = time.perf_counter()
    for key, unit, attributes in picks:
        evaluate(key, unit, attributes)
    random_rate = calls / (time.perf_counter() - started)
    one = keys[0]
    started = time.perf_counter()
    for _key, unit, attributes in picks:
        evaluate(one, unit, attributes)
    same_rate = calls / (time.perf_counter() - started)
    table.add_row("random flag per call, evals/s", rate(random_rate), "", "")
    table.add_row("same flag every call, evals/s", rate(same_rate), "", ratio(random_rate, same_rate))
    console.print(table)
    del compiled, loaded, evaluate

    gzipped = len(gzip.compress(body, 6))
    console.print(f"config bytes: raw {len(body):,}, gzip {gzipped:,} ({len(body) / gzipped:.1f}× smaller)")
    client_ready(docs)


_READY = """
import json, resource, sys, time
from ramplight import Client
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss()
started = time.perf_counter()
client = Client(sys.argv[1], url=sys.argv[2], poll_interval=3600, init_timeout=60)
ready = time.perf_counter() - started
print(json.dumps({"ready_s": ready, "ok": client.ready, "grew_mib": rss() - before, "flags": len(client._config.keys())}))
client.close()
"""


def client_ready(docs: list[dict[str, Any]]) -> None:
    import subprocess

    import httpx

    with (
        tempfile.TemporaryDirectory(prefix="ramplight-bench-configs-") as tmp,
        RamplightServer(Path(tmp) / "c.duckdb", Path(tmp) / "server.log") as server,
    ):
        started = time.perf_counter()
        for i in range(0, len(docs), 2000):
            server.admin.post("/api/apply", json={"flags": docs[i : i + 2000]}).raise_for_status()
        loaded = time.perf_counter() - started
        sdk_key = server.admin.post(
            "/api/keys", json={"kind": "sdk", "name": "bench", "environment": "production"}
        ).json()["key"]
        sizes = {}
        for encoding in ("identity", "gzip"):
            with httpx.Client(base_url=server.url, trust_env=False) as http:
                response = http.get(
                    "/sdk/config",
                    headers={"Authorization": f"Bearer {sdk_key}", "Accept-Encoding": encoding},
                )
                response.raise_for_status()
                sizes[encoding] = (
                    response.num_bytes_downloaded,
                    response.headers.get("content-encoding"),
                )
        console.print(
            f"server: {len(docs):,} flags applied in {loaded:.0f} s; GET /sdk/config sends "
            f"{sizes['identity'][0]:,} B raw, {sizes['gzip'][0]:,} B when gzip is accepted "
            f"(Content-Encoding {sizes['gzip'][1]})"
        )
        for attempt in range(2):
            out = subprocess.run(
                [sys.executable, "-c", _READY, sdk_key, server.url],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if out.returncode != 0:
                raise RuntimeError(out.stderr)
            row = json.loads(out.stdout)
            console.print(
                f"Client() #{attempt + 1}: ready={row['ok']} after {row['ready_s']:.2f} s with {row['flags']:,} "
                f"flags; the process grew {row['grew_mib']:.0f} MiB"
            )


def main() -> None:
    loopback_only()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20,000 units: a smoke run")
    parser.add_argument("--units", type=int, help="number of distinct units (default 200,000)")
    parser.add_argument("--repeats", type=int, help="passes per SDK, the best counts (default 3; quick 1)")
    parser.add_argument("--part", choices=("simple", "rules", "configs", "all"), default="all")
    parser.add_argument("--flags", type=int, default=10_000, help="flags in part configs (default 10,000)")
    args = parser.parse_args()
    n = args.units or (20_000 if args.quick else 200_000)
    repeats = args.repeats or (1 if args.quick else 3)
    if args.part in ("simple", "all"):
        run(n, sample=min(n, 2_000 if args.quick else 20_000), repeats=repeats)
    if args.part in ("rules", "all"):
        rules_part(n, repeats)
    if args.part in ("configs", "all"):
        configs_part(args.flags // 10 if args.quick else args.flags, repeats, calls=n)


if __name__ == "__main__":
    main()
