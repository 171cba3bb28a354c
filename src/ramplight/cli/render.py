"""Terminal rendering of flags, plans and readouts (Rich); `--json` bypasses all of this."""

from __future__ import annotations

from typing import Any

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
        table.add_row(key, flag.type, flag.assignment_unit, str(flag.version), envs)
    console.print(table)


def flag_detail(flag: Flag, console: Console) -> None:
    console.print(
        f"[bold]{flag.key}[/bold]  {flag.type} flag, assigned by [bold]{flag.assignment_unit}[/bold], version {flag.version}"
        + ("  [red](archived)[/red]" if flag.archived else "")
    )
    if flag.description:
        console.print(flag.description)
    variations = Table("variation", "value", title="variations")
    for v in flag.variations:
        variations.add_row(v.key, str(v.value))
    console.print(variations)
    for name, env in flag.environments.items():
        rules = ", ".join(r.id for r in env.rules) or "none"
        console.print(
            f"[bold]{name}[/bold]: {rollout_text(flag, name)}; rules: {rules}; default {env.default_variation}, off {env.off_variation}"
        )


def plan(results: list[dict[str, Any]], console: Console, dry_run: bool) -> None:
    verb = {
        "create": "would create" if dry_run else "created",
        "update": "would update" if dry_run else "updated",
        "unchanged": "unchanged",
    }
    for result in results:
        version = f" (version {result['version']})" if result.get("version") else ""
        console.print(f"[bold]{result['key']}[/bold]: {verb[result['action']]}{version}")
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
    console.print(f"[{style}]{rec['action'].upper()}[/{style}] — {rec['sentence']}")
    for reason in rec["reasons"]:
        console.print(f"  · {reason['message']}", highlight=False)
    if plan is not None:
        stages = " → ".join(f"{p:g} %" for p in plan["stages"])
        source = (
            "plan v" + str(plan["version"]) if plan["source"] == "plan" else "default plan (no plan applied)"
        )
        console.print(
            f"  {source}: candidate {plan['candidate']!r} at {plan['candidate_percent']:g} %, stages {stages}; "
            f"guardrails must be {'shown within margin' if plan['safety'] == 'shown_safe' else 'free of found harm'}",
            highlight=False,
        )
    console.print()


def readout(report: dict[str, Any], console: Console) -> None:
    """Recommendation, data quality, phases and metrics, then the release timeline."""
    _readout_body(report, console)
    if report.get("timeline"):
        release_timeline(report["timeline"], console)


def _readout_body(report: dict[str, Any], console: Console) -> None:
    if "recommendation" in report:
        recommendation(report["recommendation"], report.get("plan"), console)
    dq = report["data_quality"]
    console.print(
        f"[bold]{report['flag_key']}[/bold] in {report['environment']} (version {report['flag_version']}), "
        f"assigned by {report['assignment_unit']}, control = {report['control']}"
    )
    quality = Table(
        "exposed units",
        "units in >1 variation (excluded)",
        "outcome events",
        "joinable",
        "before exposure",
        title="data quality",
    )
    quality.add_row(
        f"{dq['exposed_units']:,}",
        f"{dq['multiple_variation_units']:,}",
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
            v["variation"], f"{v['units']:,}", f"{v['fallback_units']:,}", _pct(v["fallback_rate"]), reasons
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
            phases.add_row(str(phase["phase"]), phase["start"][:19], weights, assigned, srm_text)
        console.print(phases)
    metrics = Table(
        "metric",
        "variation",
        "units",
        "mean",
        "Δ vs control",
        "95 % CI",
        "sequential CI",
        "relative",
        "p",
        title="metrics" + (f" by {report['segment']}" if report.get("segment") else ""),
    )
    for metric in report["metrics"]:
        name = metric.get("key", metric.get("name", ""))
        if metric.get("segment") is not None:
            name += f" ({report['segment']}={metric['segment']})"
        if metric.get("type") == "quantile":
            name += f" (p{round(100 * metric['quantile'])})"
        comparisons = {c["variation"]: c for c in metric["comparisons"]}
        for v in metric["variations"]:
            mean = v.get("mean", v.get("value"))
            units = v.get("units", v.get("events", 0)) or 0
            c = comparisons.get(v["variation"])
            if not units:
                continue  # a variation nobody was assigned (e.g. a fallback profile) says nothing
            if c is None:
                metrics.add_row(name, v["variation"], f"{units:,}", _num(mean), "", "", "", "", "")
                continue
            fixed = c.get("fixed", c)
            sequential = c.get("sequential")
            ci = (
                f"[{_num(fixed['ci_low'])}, {_num(fixed['ci_high'])}]" if fixed["ci_low"] is not None else "–"
            )
            seq = (
                f"[{_num(sequential['ci_low'])}, {_num(sequential['ci_high'])}]"
                if sequential and sequential["ci_low"] is not None
                else "–"
            )
            p = "–" if fixed["p_value"] is None else f"{fixed['p_value']:.3g}"
            guard = c.get("guardrail")
            note = ""
            if guard is not None:
                note = (
                    " [red]guardrail breached[/red]"
                    if guard["breached"]
                    else (" guardrail ok" if guard["holds"] else " guardrail unsure")
                )
            metrics.add_row(
                name,
                v["variation"],
                f"{units:,}",
                _num(mean),
                _num(fixed["difference"]) + note,
                ci,
                seq,
                _pct(fixed["relative"]),
                p,
            )
    console.print(metrics)


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
        table.add_row(event["ts"][:19].replace("T", " "), what, event["actor"], detail)
    console.print(table)
    for key, rows in tl["series"].items():
        hours_seen = sorted({r["hour"] for r in rows})[-hours:]
        variations = sorted({r["variation"] for r in rows})
        if not hours_seen:
            continue
        series = Table("hour (UTC)", *variations, title=f"{key} per hour (mean, n)")
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
                f"  [red]{found['kind']}[/red] (seq {found['seq']}): {found['detail']}", highlight=False
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
            f"[red]✗ {chain}: {found['kind'].upper()}[/red] at {row}{seq}: {found['detail']}{keyed}",
            highlight=False,
        )
