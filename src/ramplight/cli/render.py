"""Terminal rendering of flags, plans and readouts (Rich); `--json` bypasses all of this."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from ramplight.core.flags import Flag


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}g}" if abs(value) < 1000 else f"{value:,.1f}"


def rollout_text(flag: Flag, environment: str) -> str:
    env = flag.environments.get(environment)
    if env is None:
        return "not configured"
    if not env.enabled:
        return f"KILLED → {env.off_variation}"
    if env.rollout is None:
        return f"{env.default_variation} 100 %"
    return " / ".join(f"{k} {w:g} %" for k, w in env.rollout.weights.items() if w)


def flags_table(flags: list[Flag], console: Console) -> None:
    table = Table(title=f"{len(flags)} flag(s)")
    for column in ("key", "type", "unit", "version", "environments"):
        table.add_column(column)
    for flag in flags:
        envs = "\n".join(f"{e}: {rollout_text(flag, e)}" for e in flag.environments)
        key = flag.key + (" (archived)" if flag.archived else "")
        table.add_row(escape(key), flag.type, escape(flag.assignment_unit), str(flag.version), escape(envs))
    console.print(table)


def flag_detail(flag: Flag, console: Console) -> None:
    console.print(
        f"[bold]{escape(flag.key)}[/bold]  {flag.type} flag, assigned by "
        f"[bold]{escape(flag.assignment_unit)}[/bold], version {flag.version}"
        + ("  [red](archived)[/red]" if flag.archived else "")
    )
    if flag.description:
        console.print(escape(flag.description))
    variations = Table("variation", "value", title="variations")
    for v in flag.variations:
        variations.add_row(escape(v.key), escape(str(v.value)))
    console.print(variations)
    for name, env in flag.environments.items():
        rules = ", ".join(r.id for r in env.rules) or "none"
        console.print(
            f"[bold]{escape(name)}[/bold]: "
            + escape(
                f"{rollout_text(flag, name)}; rules: {rules}; default {env.default_variation}, off {env.off_variation}"
            )
        )


def plan(results: list[dict[str, Any]], console: Console, dry_run: bool) -> None:
    verb = {
        "create": "would create" if dry_run else "created",
        "update": "would update" if dry_run else "updated",
        "unchanged": "unchanged",
    }
    for result in results:
        version = f" (version {result['version']})" if result.get("version") else ""
        console.print(f"[bold]{escape(result['key'])}[/bold]: {verb[result['action']]}{version}")
        if result.get("diff"):
            console.print(Syntax(result["diff"], "diff", theme="ansi_dark", background_color="default"))


_ACTION_STYLE = {
    "rollback": "bold red",
    "pause": "bold yellow",
    "continue": "bold",
    "expand": "bold green",
    "promote": "bold green",
    "cleanup": "bold cyan",
}


def recommendation(rec: dict[str, Any], plan: dict[str, Any] | None, console: Console) -> None:
    """The answer first: the verdict, its sentence, then each reason on its own line."""
    style = _ACTION_STYLE.get(rec["action"], "bold")
    console.print(f"[{style}]{rec['action'].upper()}[/{style}] — {escape(rec['sentence'])}")
    for reason in rec["reasons"]:
        console.print(f"  · {escape(reason['message'])}", highlight=False)
    if plan is not None:
        stages = " → ".join(f"{p:g} %" for p in plan["stages"])
        source = (
            "plan v" + str(plan["version"]) if plan["source"] == "plan" else "default plan (no plan applied)"
        )
        console.print(
            escape(
                f"  {source}: candidate {plan['candidate']!r} at {plan['candidate_percent']:g} %, stages {stages}; "
                f"guardrails must be {'shown within margin' if plan['safety'] == 'shown_safe' else 'free of found harm'}"
            ),
            highlight=False,
        )
    console.print()


def readout(report: dict[str, Any], console: Console) -> None:
    """Recommendation, data quality, phases and metrics, then the release timeline."""
    _readout_body(report, console)
    if report.get("traces"):
        traces_table(report["traces"], console)
    if report.get("drift"):
        drift_table(report["drift"], console)
    if report.get("timeline"):
        release_timeline(report["timeline"], console)


def _readout_body(report: dict[str, Any], console: Console) -> None:
    if "recommendation" in report:
        recommendation(report["recommendation"], report.get("plan"), console)
    dq = report["data_quality"]
    console.print(
        f"[bold]{escape(report['flag_key'])}[/bold] "
        + escape(
            f"in {report['environment']} (version {report['flag_version']}), "
            f"assigned by {report['assignment_unit']}, control = {report['control']}"
        )
    )
    quality = Table(
        "exposed units",
        "units in >1 variation (excluded)",
        "assigned by a rule (excluded)",
        "outcome events",
        "joinable",
        "before exposure",
        title="data quality",
    )
    quality.add_row(
        f"{dq['exposed_units']:,}",
        f"{dq['multiple_variation_units']:,}",
        f"{dq.get('rule_assigned_units', 0):,}",
        f"{dq['events']:,}",
        _pct(dq["joinable_fraction"]),
        f"{dq['events_before_exposure']:,}",
    )
    console.print(quality)
    variations = Table(
        "variation",
        "units",
        "fell back",
        "fallback rate",
        "reasons",
        title="exposure (by assigned variation)",
    )
    for v in report["variations"]:
        reasons = ", ".join(f"{k} {n:,}" for k, n in v["fallback_reasons"].items())
        variations.add_row(
            escape(v["variation"]),
            f"{v['units']:,}",
            f"{v['fallback_units']:,}",
            _pct(v["fallback_rate"]),
            escape(reasons),
        )
    console.print(variations)
    if report.get("phases"):
        phases = Table(
            "phase", "from", "weights", "units", "SRM p", title="phases (a new one at every weight change)"
        )
        for phase in report["phases"]:
            weights = (
                " / ".join(f"{k} {w:g} %" for k, w in phase["weights"].items() if w)
                if phase["enabled"]
                else "killed"
            )
            assigned = " / ".join(f"{k} {n:,}" for k, n in phase["units"].items() if n)
            srm = phase.get("srm")
            srm_text = (
                "–"
                if srm is None
                else (
                    f"[red]{srm['p_value']:.2g} mismatch[/red]"
                    if srm["mismatch"]
                    else f"{srm['p_value']:.2g}"
                )
            )
            start = phase["start"][:19].replace("T", " ")
            phases.add_row(str(phase["phase"]), start, escape(weights), escape(assigned), srm_text)
        console.print(phases)
    console.print(_metrics_table(report))


def _compact(value: float | None) -> str:
    """Three significant digits, thousands as k/M: fits a mean or a difference in 6 characters."""
    if value is None:
        return "–"
    size = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:.3g}"


def _rel(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _interval(stats: dict[str, Any] | None) -> str:
    """The relative interval in percent when there is one, else the absolute one."""
    if not stats or stats.get("ci_low") is None:
        return "–"
    if stats.get("relative_ci_low") is not None:
        return f"{_rel(stats['relative_ci_low'])}, {_rel(stats['relative_ci_high'])} %"
    return f"{_compact(stats['ci_low'])}, {_compact(stats['ci_high'])}"


def _metrics_table(report: dict[str, Any]) -> Table:
    """One row per comparison (a variation vs control), numbers compact, so it fits 80 columns;
    the metric's name folds rather than being cut."""
    table = Table(
        title="metrics" + (f" by {escape(report['segment'])}" if report.get("segment") else ""),
        caption="Δ and intervals relative to control; always-valid: the sequential interval plans use",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("metric\nvariation", overflow="fold", min_width=12)
    table.add_column("control → variation\nmean; units", no_wrap=True)
    table.add_column("Δ\nabs.", justify="right", no_wrap=True)
    table.add_column("95 % CI\nalways-valid", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    for metric in report["metrics"]:
        name = metric.get("key", metric.get("name", ""))
        if metric.get("segment") is not None:
            name += f" ({report['segment']}={metric['segment']})"
        if metric.get("type") == "quantile":
            name += f" (p{round(100 * metric['quantile'])})"
        by_variation = {v["variation"]: v for v in metric["variations"]}
        control = by_variation.get(report["control"], {})
        control_units = control.get("units", control.get("events", 0)) or 0
        control_mean = control.get("mean", control.get("value"))
        if not metric["comparisons"]:
            table.add_row(escape(name), f"{_compact(control_mean)}\n{_compact(control_units)}", "–", "–", "–")
        for c in metric["comparisons"]:
            v = by_variation.get(c["variation"], {})
            units = v.get("units", v.get("events", 0)) or 0
            if not units:
                continue  # a variation nobody was assigned (e.g. a fallback profile) says nothing
            fixed = c.get("fixed", c)
            guard = c.get("guardrail")
            label = f"{escape(name)}\n[dim]{escape(c['variation'])}[/dim]"
            if guard is not None:
                label += (
                    "\n[red]guardrail breached[/red]"
                    if guard["breached"]
                    else ("\nguardrail ok" if guard["holds"] else "\nguardrail unsure")
                )
            relative = fixed.get("relative")
            delta = f"{_rel(relative)} %" if relative is not None else _compact(fixed["difference"])
            table.add_row(
                label,
                f"{_compact(control_mean)} → {_compact(v.get('mean', v.get('value')))}\n"
                f"[dim]{_compact(control_units)} / {_compact(units)}[/dim]",
                delta + f"\n[dim]{_compact(fixed['difference'])}[/dim]",
                f"{_interval(fixed)}\n[dim]{_interval(c.get('sequential'))}[/dim]",
                "–" if fixed["p_value"] is None else f"{fixed['p_value']:.2g}",
            )
    return table


def traces_table(traces: dict[str, Any], console: Console) -> None:
    """Per variation and span name: latency p50/p95, error rate, tokens and cost."""
    table = Table(
        "variation", "span", "spans", "p50 ms", "p95 ms", "errors", "tokens in/out", "cost", "per trace",
        title="traces (spans of exposed units, from their first exposure)",
    )  # fmt: skip
    for variation, summary in traces.items():
        for row in summary["spans"]:
            table.add_row(
                variation, ("▸ " if row["root"] else "  ") + row["name"], f"{row['spans']:,}",
                _num(row["latency_p50_ms"]), _num(row["latency_p95_ms"]), _pct(row["error_rate"]),
                f"{row['input_tokens']:,}/{row['output_tokens']:,}", _num(row["cost_usd"]), _num(row["cost_per_trace"]),
            )  # fmt: skip
        unpriced = (
            f", {summary['spans_without_cost']:,} spans without a cost"
            if summary["spans_without_cost"]
            else ""
        )
        traced = summary.get("traced_units", summary["units"])
        per_unit = _num(summary["cost_per_unit"])
        if traced < summary["units"]:  # sampled traces: the traced units' cost is the estimate
            per_unit += f" ({_num(summary['cost_per_traced_unit'])} a traced unit)"
        table.add_row(
            variation, "[bold]per unit / per request[/]", "", "", "", "", "",
            per_unit, _num(summary["cost_per_trace"]) + unpriced,
        )  # fmt: skip
    console.print(table)
    for variation, summary in traces.items():
        path = ", ".join(
            f"{p['name']} {p['share']:.0%}" for p in summary.get("critical_path", []) if p["share"]
        )
        if path:
            console.print(f"critical path, {escape(variation)}: {escape(path)}")
        routes = ", ".join(
            f"{r['model']} {r['share']:.0%} (p95 {_num(r['latency_p95_ms'])} ms, {_num(r['cost_usd'])} USD)"
            for r in summary.get("routes", [])
            if r["share"] is not None
        )
        if routes:
            console.print(f"routes, {escape(variation)}: {escape(routes)}")
        tax = summary.get("cancellation") or {}
        if tax.get("cancelled_traces"):
            share = "" if tax["cost_share"] is None else f", {tax['cost_share']:.1%} of the variation's cost"
            unpriced = f", {tax['unpriced']:,} unpriced" if tax["unpriced"] else ""
            console.print(
                f"cancellation tax, {escape(variation)}: {tax['cancelled_traces']:,} traces cancelled"
                f" ({_pct(tax['cancelled_share'])}); {tax['generations_ran_on']:,} generations ran on,"
                f" {tax['output_tokens_after_cancel']:,.0f} output tokens after the stop,"
                f" {_num(tax['cost_usd'])} USD{share}{unpriced}"
            )


_VERDICT_STYLE = {"major": "red", "moderate": "yellow", "inconclusive": "dim", "stable": "green"}


def _shift(comparison: dict[str, Any]) -> str:
    """Where the distribution moved: the median, or the category whose share moved most."""
    if "median" in comparison:
        return f"median {_compact(comparison['vs_median'])} → {_compact(comparison['median'])}"
    top = max(comparison["categories"], key=lambda c: abs(c["share"] - c["vs_share"]))
    name = "(other)" if top["category"] is None else top["category"]
    return f"{name} {_pct(top['vs_share'])} → {_pct(top['share'])}"


def drift_table(drift: dict[str, Any], console: Console) -> None:
    """Per drift property: each variation against control (per ramp phase when there are several),
    then the periods that moved against the variation's first (stable ones are counted, not
    listed). Fits 80 columns."""
    t = drift["thresholds"]
    table = Table(
        title="drift",
        caption=f"PSI < {t['moderate']:g} stable, ≤ {t['major']:g} moderate, above: major; "
        f"inconclusive: p ≥ {t['alpha']:g}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("property\ncompared", overflow="fold", min_width=14)
    table.add_column("reference → compared\nrows", overflow="fold")
    table.add_column("PSI", justify="right", no_wrap=True)
    table.add_column("p", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    for prop in drift["properties"]:
        name = f"{escape(prop['key'])} [dim]({prop['type']})[/dim]"
        moved = [c for c in prop["over_time"] if c["verdict"] != "stable"]
        steady = len(prop["over_time"]) - len(moved)
        phased = len({c["phase"] for c in prop["between_variations"]}) > 1
        compared = [
            (f"{c['variation']} vs {c['vs']}" + (f", phase {c['phase']}" if phased else ""), c)
            for c in prop["between_variations"]
        ] + [(f"{c['variation']}, {prop['over']} {c['period']} vs {c['vs_period']}", c) for c in moved]
        for label, c in compared:
            style = _VERDICT_STYLE[c["verdict"]]
            table.add_row(
                f"{name}\n[dim]{escape(label)}[/dim]",
                f"{escape(_shift(c))}\n[dim]{_compact(c['vs_rows'])} / {_compact(c['rows'])}[/dim]",
                f"{c['psi']:.3f}",
                f"{c['p_value']:.2g}",
                f"[{style}]{c['verdict']}[/{style}]",
            )
        if steady or not compared:
            note = f"{steady} later {prop['over']}s like the first" if steady else "no rows to compare"
            table.add_row(f"{name}\n[dim]{note}[/dim]", "", "", "", "")
    console.print(table)


def release_timeline(tl: dict[str, Any], console: Console, hours: int = 12) -> None:
    """Release events, then the last `hours` hours of each series per variation."""
    table = Table("time (UTC)", "what", "by", "rollout / recommendation", title="release timeline")
    for event in tl["events"]:
        what = event["action"] + (" (forced)" if event.get("forced") else "")
        if event["kind"] == "decision":
            what = f"decision: {what}"
            detail = event.get("recommended") or ""
        elif event.get("weights"):
            detail = ", ".join(f"{k} {v:g} %" for k, v in event["weights"].items() if v)
            if event.get("enabled") is False:
                detail = "killed — " + detail
        else:
            detail = event.get("reason") or ""
        table.add_row(
            event["ts"][:19].replace("T", " "), escape(what), escape(event["actor"]), escape(detail)
        )
    console.print(table)
    for key, rows in tl["series"].items():
        hours_seen = sorted({r["hour"] for r in rows})[-hours:]
        variations = sorted({r["variation"] for r in rows})
        if not hours_seen:
            continue
        series = Table("hour (UTC)", *map(escape, variations), title=escape(f"{key} per hour (mean, n)"))
        by = {(r["hour"], r["variation"]): r for r in rows}
        for hour in hours_seen:
            cells = []
            for v in variations:
                row = by.get((hour, v))
                cells.append(f"{row['mean']:,.4g} ({row['n']:,})" if row and row["mean"] is not None else "–")
            series.add_row(hour[:16].replace("T", " "), *cells)
        console.print(series)


def changes(rows: list[dict[str, Any]], console: Console) -> None:
    """A flag's audit history, each row with its verification mark, the first break explained."""
    for change in rows:
        env = f" [{change['environment']}]" if change.get("environment") else ""
        reason = f" — {change['reason']}" if change.get("reason") else ""
        mark = "[green]✓[/green]" if change.get("verified") else "[red]✗[/red]"
        line = f"{change['ts']}  v{change['version']}  {change['action']}{env} by {change['actor']}{reason}"
        console.print(f"{mark} {escape(line)}", highlight=False)
        if "audit_break" in change:
            found = change["audit_break"]
            console.print(
                f"  [red]{found['kind']}[/red] (seq {found['seq']}): {escape(found['detail'])}",
                highlight=False,
            )
    if rows and all(c.get("verified") for c in rows):
        console.print(
            f"[green]✓[/green] {len(rows)} change(s) verify: hashes, flag links and MACs", highlight=False
        )


def audit_report(result: dict[str, Any], console: Console) -> None:
    for chain in ("flag_changes", "decisions"):
        report = result[chain]
        legacy = f", {report['legacy_rows']} sealed at upgrade" if report["legacy_rows"] else ""
        keyed = "" if report["keyed"] else " [yellow](no secret: MACs not checked)[/yellow]"
        found = report["first_break"]
        if found is None:
            console.print(
                f"[green]✓[/green] {chain}: {report['rows']} row(s) verify{legacy}{keyed}", highlight=False
            )
            continue
        row = f"{found['row_id']} " if found["row_id"] else ""
        seq = f"(seq {found['seq']})" if found["seq"] is not None else ""
        console.print(
            f"[red]✗ {chain}: {found['kind'].upper()}[/red] at {escape(row)}{seq}: {escape(found['detail'])}{keyed}",
            highlight=False,
        )


def gate_table(result: dict[str, Any], console: Console) -> None:
    """An eval gate's result (`GateResult.to_json()`): per score, the pairs, both means, the
    difference, the bound, the margin and the verdict; then the unpaired items and the outcome."""
    control, candidate = result["control"], result["candidate"]
    table = Table(title=f"{candidate} vs {control}, paired by item (one-sided α = {result['alpha']:g})")
    for column in ("score", "items", control, candidate, "difference", "lower bound", "margin", "result"):
        table.add_column(column, justify="left" if column in ("score", "result") else "right")

    def shown(value: float | None) -> str:
        return "–" if value is None else f"{value:+.4g}" if value < 0 else f"{value:.4g}"

    for s in result["scores"]:
        verdict = (
            "[green]pass[/]"
            if s["passed"]
            else "[red]FAIL[/]"
            if s["passed"] is False
            else "[dim]not gated[/]"
        )
        table.add_row(
            escape(s["name"]), str(s["pairs"]), shown(s["control_mean"]), shown(s["candidate_mean"]),
            shown(s["difference"]), shown(s["lower_bound"]), "–" if s["margin"] is None else f"{s['margin']:.4g}",
            f"{verdict} {escape(s['reason'])}",
        )  # fmt: skip
    console.print(table)
    for name, count in result["unpaired"].items():
        console.print(f"{escape(name)}: {count:,} items scored under one variation only (left out)")
    console.print("[green]gate passed[/]" if result["passed"] else "[red]gate failed[/]")
