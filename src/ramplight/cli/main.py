"""`ramplight`: serve, demo, flags as code, ramps and kill switches, import and report."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ramplight.analysis.options import ReadoutOptions
from ramplight.cli import render
from ramplight.cli.backend import open_backend
from ramplight.core.errors import RamplightError, ValidationError
from ramplight.core.flags import Flag
from ramplight.settings import Settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Release decisions for AI features: flags, evidence and readouts in one data model.",
)
flags_app = typer.Typer(no_args_is_help=True, help="List and inspect flags.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys (stored hashed; the plaintext is shown once).")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log of flag changes and decisions.")
env_app = typer.Typer(
    no_args_is_help=True, help="Environments (production and staging exist from the start)."
)
app.add_typer(flags_app, name="flags")
app.add_typer(env_app, name="env")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
sources_app = typer.Typer(
    no_args_is_help=True, help="Evidence sources: exposures and events read from your own tables."
)
app.add_typer(sources_app, name="sources")
users_app = typer.Typer(
    no_args_is_help=True, help="People who sign in to the web UI (passwords kept as argon2id hashes)."
)
app.add_typer(users_app, name="users")

console = Console()
err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Database: a DuckDB file, or postgresql://… for the control plane "
        "[env RAMPLIGHT_DB; default ./ramplight.duckdb]",
    ),
]
EnvOption = Annotated[str, typer.Option("--env", "-e", help="Environment")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _settings(db: str | None, **overrides: Any) -> Settings:
    return Settings.from_env().with_database(db).with_(**overrides)


def _print_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


ForceOption = Annotated[
    bool,
    typer.Option("--force", help="Act against the measurement plan (needs --reason; recorded as forced)"),
]


def _print_rollout(flag: Flag, env: str, as_json: bool, changed: bool = True) -> None:
    if as_json:
        _print_json(flag if changed else {"unchanged": True, "flag": flag})
    elif not changed:
        console.print(
            escape(
                f"{flag.key} in {env}: unchanged — {render.rollout_text(flag, env)} (version {flag.version})"
            )
        )
    else:
        console.print(
            escape(f"{flag.key} in {env}: {render.rollout_text(flag, env)} (version {flag.version})")
        )


@app.command()
def serve(
    db: DbOption = None,
    host: Annotated[str | None, typer.Option(help="Bind address [default 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default 8700]")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print {url, db, admin_key} as one JSON line, then serve")
    ] = False,
) -> None:
    """Run the server: admin API, SDK config, ingestion; OpenAPI docs at /docs."""
    from ramplight.server.run import bootstrap, serve_forever

    settings = _settings(db, host=host, port=port)
    admin_key = bootstrap(settings)
    url = f"http://{settings.host}:{settings.port}"
    if as_json:
        sys.stdout.write(
            msgspec.json.encode({"url": url, "db": settings.where, "admin_key": admin_key}).decode()
        )
        sys.stdout.write("\n")
        sys.stdout.flush()
    elif admin_key:
        console.print(
            f"Created the first admin key (shown once, stored hashed):\n  export RAMPLIGHT_ADMIN_KEY={admin_key}"
        )
    if not as_json:
        console.print(
            escape(
                f"Ramplight serving {settings.where} at {url} (web UI: {url}/, API docs: {url}/docs). "
                "Ctrl-C stops."
            )
        )
    serve_forever(settings)


@app.command()
def demo(
    db: Annotated[Path, typer.Option("--db", help="Demo database (recreated)")] = Path(
        "ramplight-demo.duckdb"
    ),
    conversations: Annotated[
        int,
        typer.Option(
            min=4000, help="Conversations to simulate (30 % at 5 %: the plan's first stage needs 1,000 units)"
        ),
    ] = 60_000,
    seed: Annotated[int, typer.Option(help="Random seed of the simulation")] = 7,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Exit after the simulation instead of serving")
    ] = False,
    as_json: JsonOption = False,
    port: Annotated[int | None, typer.Option(help="Port to serve on [default 8700]")] = None,
    trace_ratio: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of conversations traced with OpenTelemetry (1: every one)"
        ),
    ] = 0.1,
) -> None:
    """Simulate an AI assistant rollout through the real SDK and server; the guardian acts."""
    from ramplight.demo.simulation import run_demo

    settings = _settings(str(db), port=port)
    run_demo(
        settings,
        conversations=conversations,
        seed=seed,
        serve=not no_serve,
        as_json=as_json,
        console=err if as_json else console,
        trace_ratio=trace_ratio,
    )


@app.command("apply")
def apply_cmd(
    file: Annotated[
        Path, typer.Argument(help="YAML/JSON: a flag, a list of flags, or {flags: [...], metrics: [...]}")
    ],
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the diff, change nothing")] = False,
    as_json: JsonOption = False,
) -> None:
    """Make stored flags, metrics, measurement plans and evidence sources match a file
    (idempotent, audited, all or nothing)."""
    try:
        loaded = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ValidationError.at("FILE", f"cannot read {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValidationError.at("FILE", f"{file} is not valid YAML: {exc}") from None
    sections = ("flags", "metrics", "plans", "sources", "prices")
    parts: dict[str, Any] = {name: [] for name in sections}
    if isinstance(loaded, dict) and (set(sections) & set(loaded)):
        extra = sorted(set(loaded) - set(sections))
        if extra:
            raise ValidationError.at(
                extra[0], "unknown top-level key (use flags:, metrics:, plans:, sources: and prices:)"
            )
        parts = {name: loaded.get(name) or [] for name in sections}
    else:
        parts["flags"] = [loaded] if isinstance(loaded, dict) else loaded
    for name, items in parts.items():
        if not isinstance(items, list) or not all(isinstance(d, dict) for d in items):
            raise ValidationError.at(name, "expected a list of mappings")
    docs, metrics, plans = parts["flags"], parts["metrics"], parts["plans"]
    with open_backend(_settings(db), create=True) as backend:
        prices = loaded.get("prices") if isinstance(loaded, dict) and "prices" in loaded else None
        results = backend.apply(docs, metrics, plans, dry_run, parts["sources"], prices)
    if as_json:
        _print_json(results)
    else:
        render.plan(results, console, dry_run)


@sources_app.command("list")
def sources_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Evidence sources and how their columns map onto the contract (define them with `apply`)."""
    with open_backend(_settings(db)) as backend:
        sources = backend.list_sources()
    if as_json:
        _print_json(sources)
        return
    if not sources:
        console.print("No sources: readouts read Ramplight's own tables. See docs/sources.md.")
        return
    for source in sources:
        console.print(
            f"[bold]{escape(source.key)}[/] ({source.kind}, v{source.version}) {escape(source.description)}"
        )
        mapped = {**source.fields, **{k: repr(v) for k, v in source.constants.items()}}
        for name, target in mapped.items():
            console.print(f"  {name:<20} ← {escape(str(target))}", highlight=False)
        for name, column in source.outcomes.items():
            console.print(f"  event {name!r:<14} ← {escape(column)}", highlight=False)


@flags_app.command("list")
def flags_list(
    db: DbOption = None,
    archived: Annotated[bool, typer.Option(help="Include archived flags")] = False,
    as_json: JsonOption = False,
) -> None:
    """All flags with their rollout per environment."""
    with open_backend(_settings(db)) as backend:
        flags = backend.list_flags(archived)
    if as_json:
        _print_json(flags)
    else:
        render.flags_table(flags, console)


@flags_app.command("stale")
def flags_stale(
    days: Annotated[float, typer.Option(min=0, help="How long counts as stale")] = 30,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Flags to clean up: settled or unexposed for DAYS, or decided with cleanup due."""
    with open_backend(_settings(db)) as backend:
        rows = backend.stale(days)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print(f"no stale flags (settled or unexposed for more than {days:g} days)")
    for row in rows:
        console.print(
            escape(f"{row['flag_key']} [{row['environment']}]: {'; '.join(row['reasons'])}"), highlight=False
        )


@flags_app.command("check")
def flags_check(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Stored flags and segments that today's checks refuse; exits 1 when there are any.

    They were saved under older rules (a regex now refused as catastrophic, say): SDKs serve
    the default for such a flag until it is fixed."""
    with open_backend(_settings(db)) as backend:
        rows = backend.check_flags()
    if as_json:
        _print_json(rows)
    elif not rows:
        console.print("every stored flag and segment passes today's checks")
    for row in rows if not as_json else ():
        console.print(escape(f"{row['kind']} {row['key']}:"), highlight=False)
        for problem in row["problems"]:
            console.print(escape(f"  {problem['field']}: {problem['reason']}"), highlight=False)
    if rows:
        raise typer.Exit(1)


@flags_app.command("show")
def flags_show(
    key: str,
    db: DbOption = None,
    changes: Annotated[bool, typer.Option(help="Include the change history")] = False,
    as_json: JsonOption = False,
) -> None:
    """One flag in full; `--changes` adds its audit history."""
    with open_backend(_settings(db)) as backend:
        flag = backend.get_flag(key)
        history = backend.changes(key) if changes else None
    if as_json:
        _print_json({"flag": flag, "changes": history} if changes else flag)
        return
    render.flag_detail(flag, console)
    if history is not None:
        render.changes(history, console)


@app.command()
def ramp(
    flag: str,
    variation: str,
    percent: Annotated[float, typer.Argument(min=0, max=100)],
    env: EnvOption = "production",
    from_variation: Annotated[
        str | None, typer.Option("--from", help="Variation giving up weight [default: the default variation]")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the audit log)")] = None,
    force: ForceOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set VARIATION to PERCENT of units; only units of the giving variation move.

    Growing the candidate against the plan (a breached guardrail, a failed gate, a pause, a stage
    not complete) is refused unless forced."""
    with open_backend(_settings(db)) as backend:
        updated, changed = backend.ramp(flag, env, variation, percent, from_variation, reason, force)
    _print_rollout(updated, env, as_json, changed)


@app.command()
def kill(
    flag: str,
    env: EnvOption = "production",
    reason: Annotated[str | None, typer.Option()] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Kill switch: serve the off variation to everyone in the environment, now."""
    with open_backend(_settings(db)) as backend:
        updated, changed = backend.kill(flag, env, reason)
    _print_rollout(updated, env, as_json, changed)


@app.command()
def restore(
    flag: str,
    env: EnvOption = "production",
    reason: Annotated[str | None, typer.Option()] = None,
    force: ForceOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Undo a kill: serve the rules and rollout again (refused while a guardrail is breached)."""
    with open_backend(_settings(db)) as backend:
        updated, changed = backend.restore(flag, env, reason, force)
    _print_rollout(updated, env, as_json, changed)


@app.command()
def decide(
    flag: str,
    action: Annotated[str, typer.Argument(help="expand | rollback | pause | promote | cleanup | continue")],
    env: EnvOption = "production",
    reason: Annotated[str | None, typer.Option(help="Why (kept with the decision)")] = None,
    percent: Annotated[
        float | None, typer.Option(help="expand to this share instead of the plan's next stage")
    ] = None,
    force: ForceOption = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Act on a release and record the decision with the readout it was made on.

    Refused when it goes against the plan, unless forced."""
    with open_backend(_settings(db)) as backend:
        result = backend.decide(flag, env, action, reason, force, percent)
    if as_json:
        _print_json(result)
        return
    forced = " (forced)" if result["forced"] else ""
    console.print(
        escape(f"{flag} in {env}: {result['state']}{forced} recorded as decision {result['decision_id']}")
    )
    console.print(escape(f"recommendation at that moment: {result['recommendation']['sentence']}"))


@app.command("decisions")
def decisions_cmd(flag: str, db: DbOption = None, as_json: JsonOption = False) -> None:
    """A flag's recorded decisions, oldest first."""
    with open_backend(_settings(db)) as backend:
        rows = backend.decisions(flag)
    if as_json:
        _print_json(rows)
        return
    if not rows:
        console.print(escape(f"{flag}: no decisions recorded"))
    for row in rows:
        forced = " forced" if row["forced"] else ""
        reason = f" — {row['reason']}" if row.get("reason") else ""
        console.print(
            escape(
                f"{row['ts']}  {row['environment']}  {row['state']}{forced} by {row['actor']}{reason}\n"
                f"    recommended: {row['recommendation']['sentence']}"
            )
        )


@app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(help="NDJSON, CSV or Parquet with the contract's field names")],
    env: EnvOption = "production",
    kind: Annotated[
        str | None,
        typer.Option(help="exposures | events | evals | spans (OTLP/JSON) [default: from the columns]"),
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="ndjson | csv | parquet [default: from the name]")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load evidence from a file, validated exactly like the HTTP ingestion path. Spans come as
    OTLP/JSON (`--kind spans`): one ExportTraceServiceRequest, or one per line as an
    OpenTelemetry Collector's file exporter writes them."""
    if kind == "spans" or (kind is None and _looks_like_otlp(file)):
        _import_spans(file, env, db, as_json)
        return
    if fmt is not None and fmt not in ("ndjson", "csv", "parquet"):
        raise ValidationError.at("--format", "must be ndjson, csv or parquet")
    from ramplight.cli.importer import open_source, read_items  # DuckDB reads the file

    source = open_source(file, fmt, kind)  # type: ignore[arg-type]
    accepted = duplicates = 0
    rejected: list[dict[str, Any]] = []
    offset = 0
    with (
        open_backend(_settings(db), create=True) as backend,
        Progress(
            TextColumn(f"importing {source.kind}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=as_json or not err.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("import", total=source.rows)
        for chunk in read_items(source):
            result = backend.ingest(env, {source.kind: chunk})
            accepted += sum(result["accepted"].values())
            duplicates += sum(result.get("duplicates", {}).values())
            for problem in result["rejected"]:
                rejected.append({**problem, "row": offset + problem["index"] + 1})
            offset += len(chunk)
            progress.update(task, advance=len(chunk))
    summary = {
        "file": str(file),
        "kind": source.kind,
        "rows": offset,
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": len({p["row"] for p in rejected}),
        "problems": rejected[:1000],
    }
    if as_json:
        _print_json(summary)
    else:
        console.print(
            escape(
                f"{file.name}: {accepted:,} {source.kind} accepted, {duplicates:,} already stored, "
                f"{len({p['row'] for p in rejected}):,} rejected (of {offset:,} rows)"
            )
        )
        for problem in rejected[:20]:
            console.print(
                escape(f"  row {problem['row']}: {problem['field'] or '(item)'}: {problem['reason']}")
            )
        if len(rejected) > 20:
            console.print(f"  … {len(rejected) - 20:,} more (use --json for the first 1,000)")
    if rejected and not accepted and not duplicates:
        raise typer.Exit(1)


def _looks_like_otlp(file: Path) -> bool:
    try:
        with file.open("rb") as handle:
            return b'"resourceSpans"' in handle.read(4096)
    except OSError:
        return False


def _otlp_requests(file: Path) -> list[bytes]:
    """The file's ExportTraceServiceRequests: the whole file, or one per line."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ValidationError.at("FILE", f"cannot read {file}: {exc.strerror}") from None
    try:
        whole = msgspec.json.decode(data)
    except msgspec.DecodeError:
        whole = None
    if isinstance(whole, dict):
        return [data]
    lines = [line for line in data.splitlines() if line.strip()]
    for number, line in enumerate(lines, 1):
        try:
            if not isinstance(msgspec.json.decode(line), dict):
                raise msgspec.DecodeError("not an object")
        except msgspec.DecodeError as exc:
            raise ValidationError.at(
                "FILE", f"line {number} is not an OTLP/JSON request ({exc}); expected one per line"
            ) from None
    return lines


def _import_spans(file: Path, env: str, db: str | None, as_json: bool) -> None:
    requests = _otlp_requests(file)
    spans = exposures = duplicates = dropped = 0
    rejected: list[str] = []
    with open_backend(_settings(db), create=True) as backend:
        for request in requests:
            result = backend.ingest_spans(env, request)
            spans += result["accepted"].get("spans", 0)
            exposures += result["accepted"].get("exposures", 0)
            duplicates += result["duplicates"]
            dropped += result.get("dropped_attributes", 0)
            rejected += result["rejected"]
    summary = {
        "file": str(file),
        "kind": "spans",
        "requests": len(requests),
        "accepted": spans,
        "exposures": exposures,
        "duplicates": duplicates,
        "dropped_attributes": dropped,
        "problems": rejected[:1000],
    }
    if as_json:
        _print_json(summary)
    else:
        console.print(
            escape(
                f"{file.name}: {spans:,} spans accepted, {exposures:,} flag evaluations as exposures, "
                f"{duplicates:,} already stored, {dropped:,} content attributes dropped "
                f"({len(requests):,} requests)"
            )
        )
        for problem in rejected[:20]:
            console.print(escape(f"  {problem}"))
    if rejected and not spans and not duplicates:
        raise typer.Exit(1)


def _margins(values: list[str]) -> dict[str, float]:
    margins: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            margins[name.strip()] = float(number)
        except ValueError:
            sep = ""
        if not sep or not name.strip() or margins.get(name.strip(), -1) < 0:
            raise ValidationError.at(
                "--margin", f"{value!r}: use NAME=MARGIN with a margin ≥ 0 (e.g. faithfulness=0.02)"
            )
    return margins


@app.command("gate")
def gate_cmd(
    file: Annotated[
        Path | None, typer.Argument(help="JSONL: {item, variation, scores: {name: value}} per line")
    ] = None,
    margin: Annotated[
        list[str] | None,
        typer.Option("--margin", help="NAME=MARGIN: the harm allowed on a score (repeatable)"),
    ] = None,
    control: Annotated[str, typer.Option(help="The control variation")] = "control",
    candidate: Annotated[str, typer.Option(help="The candidate variation")] = "candidate",
    relative: Annotated[bool, typer.Option(help="Margins relative to control's mean (0.02 = 2 %)")] = False,
    lower_is_better: Annotated[
        list[str] | None, typer.Option("--lower-is-better", help="A score where less is better (repeatable)")
    ] = None,
    alpha: Annotated[float, typer.Option(help="One-sided error rate of each score's test")] = 0.05,
    run: Annotated[
        str | None,
        typer.Option("--run", help="Read the scores of this offline run from evals (their run_id)"),
    ] = None,
    flag: Annotated[
        str | None,
        typer.Option("--flag", help="Record the result with this flag (its next decision carries it)"),
    ] = None,
    env: EnvOption = "production",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """CI gate: is the candidate no worse than control on an offline eval set, paired by item?
    Exit 0 when every gated score passes, 1 when one does not (or the input is bad)."""
    if (file is None) == (run is None):
        raise ValidationError.at(
            "FILE", "give the eval set's JSONL file, or --run RUN_ID for scores in evals"
        )
    if run is not None and flag is None:
        raise ValidationError.at(
            "--flag", "--run reads a run's scores from the store: name the flag to record it with"
        )
    margins = _margins(margin or [])
    if not margins:
        raise ValidationError.at("--margin", "at least one NAME=MARGIN (e.g. faithfulness=0.02)")
    rows = _eval_rows(file) if file is not None else None
    recorded: dict[str, Any] | None = None
    if flag is not None:
        request: dict[str, Any] = {
            "margins": margins, "environment": env, "control": control, "candidate": candidate,
            "relative": relative, "lower_is_better": list(lower_is_better or ()), "alpha": alpha,
            **({"run_id": run} if run is not None else {"items": rows, "source": file.name if file else None}),
        }  # fmt: skip
        with open_backend(_settings(db)) as backend:
            recorded = backend.run_gate(flag, request)
        result: dict[str, Any] = recorded["result"]
    else:
        from ramplight.core.gate import gate as run_gate
        from ramplight.core.gate import read_scores

        assert rows is not None
        result = run_gate(
            read_scores(rows, (control, candidate)), control, candidate, margins, relative=relative,
            lower_is_better=frozenset(lower_is_better or ()), alpha=alpha,
        ).to_json()  # fmt: skip
    if as_json:
        _print_json(recorded if recorded is not None else result)
    else:
        render.gate_table(result, console)
        if recorded is not None:
            console.print(
                escape(
                    f"recorded with {flag} in {env} as gate {recorded['gate_id']}: its next decision carries it"
                )
            )
    if not result["passed"]:
        raise typer.Exit(1)


def _eval_rows(file: Path) -> list[dict[str, Any]]:
    try:
        lines = file.read_text().splitlines()
    except OSError as exc:
        raise ValidationError.at("FILE", f"cannot read {file}: {exc.strerror}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            raise ValidationError.at("FILE", f"line {number} is not JSON: {exc}") from None
        if not isinstance(row, dict):
            raise ValidationError.at("FILE", f"line {number} is not a JSON object")
        rows.append(row)
    return rows


MetricOption = Annotated[
    list[str] | None, typer.Option("--metric", "-m", help="Metric key (repeatable) [default: all]")
]
SegmentOption = Annotated[
    str | None, typer.Option("--segment", help="Split by this exposure attribute (e.g. plan)")
]


@app.command()
def report(
    flag: str,
    env: EnvOption = "production",
    metric: MetricOption = None,
    segment: SegmentOption = None,
    phase: Annotated[int | None, typer.Option(help="Only this phase (0 = first rollout)")] = None,
    served: Annotated[bool, typer.Option("--served", help="As-served instead of intent-to-treat")] = False,
    bayes: Annotated[bool, typer.Option("--bayes", help="Add chance to win and expected loss")] = False,
    traces: Annotated[
        bool,
        typer.Option("--traces", help="Add latency, errors, tokens and cost per span name and variation"),
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The readout: the recommendation, data quality, each metric vs control, the timeline."""
    options = ReadoutOptions(segment=segment, phase=phase, served=served, bayes=bayes, traces=traces)
    with open_backend(_settings(db)) as backend:
        result = backend.report(flag, env, metric or [], options)
    if as_json:
        _print_json(result)
    else:
        render.readout(result, console)


@app.command()
def sql(
    flag: str,
    env: EnvOption = "production",
    metric: MetricOption = None,
    dialect: Annotated[str, typer.Option(help="duckdb | postgres | clickhouse")] = "duckdb",
    segment: SegmentOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print the exact SQL the readout runs (sufficient statistics per phase and variation)."""
    with open_backend(_settings(db)) as backend:
        text = backend.sql(flag, env, metric or [], dialect, segment)
    if as_json:
        _print_json({"flag_key": flag, "environment": env, "dialect": dialect, "sql": text})
    else:
        sys.stdout.write(text + "\n")


@app.command()
def export(
    flag: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File [default: FLAG-units.FORMAT]")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
    env: EnvOption = "production",
    metric: MetricOption = None,
    segment: SegmentOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write the per-unit relation (one row per exposed unit, a column per metric) for notebooks."""
    if fmt not in ("parquet", "csv"):
        raise ValidationError.at("--format", "must be parquet or csv")
    target = output or Path(f"{flag}-units.{fmt}")
    with open_backend(_settings(db)) as backend:
        backend.export(flag, env, fmt, target.resolve(), metric or [], segment)
    if as_json:
        _print_json(
            {
                "flag_key": flag,
                "environment": env,
                "format": fmt,
                "file": str(target),
                "bytes": target.stat().st_size,
            }
        )
    else:
        console.print(escape(f"wrote {target}"))


@env_app.command("list")
def env_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Environments, oldest first."""
    with open_backend(_settings(db)) as backend:
        rows = backend.list_environments()
    if as_json:
        _print_json(rows)
        return
    table = Table("key", "name", "created (UTC)", title=f"{len(rows)} environment(s)")
    for row in rows:
        table.add_row(escape(row["key"]), escape(row["name"]), row["created_at"][:19].replace("T", " "))
    console.print(table)


@env_app.command("create")
def env_create(
    key: Annotated[str, typer.Argument(help="a-z 0-9 _ . - (e.g. canary)")],
    name: Annotated[str | None, typer.Option(help="A display name [default: the key]")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an environment (a new database file starts with production and staging)."""
    with open_backend(_settings(db), create=True) as backend:
        created = backend.create_environment(key, name)
    if as_json:
        _print_json(created)
    else:
        console.print(escape(f"created environment {created['key']} ({created['name']})"))


@keys_app.command("create")
def keys_create(
    kind: Annotated[str, typer.Option(help="admin | sdk")] = "sdk",
    env: Annotated[str | None, typer.Option("--env", "-e", help="Environment of an SDK key")] = None,
    name: Annotated[str, typer.Option(help="A label for the key")] = "cli",
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key; its plaintext is printed once and stored only as a hash."""
    if kind not in ("admin", "sdk"):
        raise ValidationError.at("--kind", "must be admin or sdk")
    with open_backend(_settings(db)) as backend:
        created = backend.create_key(kind, name, env if kind == "sdk" else None)
    if as_json:
        _print_json(created)
    else:
        console.print(escape(f"{created['kind']} key {created['id']} ({created['name']}): {created['key']}"))


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The name they sign in with")],
    role: Annotated[str, typer.Option(help="viewer | editor | approver | admin")] = "viewer",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin")
    ] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a web UI user. The password is asked for (typed twice) on a terminal, read with
    --password-stdin, or else generated and printed once."""
    generated = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = generated = secrets.token_urlsafe(15)
    with open_backend(_settings(db)) as backend:
        created = backend.create_user(name, role, password)
    if as_json:
        _print_json({**created, "password": generated} if generated else created)
        return
    console.print(escape(f"user {created['name']} ({created['role']}) added"))
    if generated:
        console.print(escape(f"password (shown once, stored as a hash): {generated}"))


@users_app.command("list")
def users_list(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Web UI users with their role, whether they are disabled, and their last sign-in."""
    with open_backend(_settings(db)) as backend:
        found = backend.list_users()
    if as_json:
        _print_json(found)
        return
    table = Table(title="Web UI users")
    for column in ("name", "role", "added", "last sign-in", "state"):
        table.add_column(column)
    for u in found:
        table.add_row(
            escape(u["name"]), u["role"], u["created_at"][:16].replace("T", " "),
            (u["last_sign_in_at"] or "never")[:16].replace("T", " "),
            "disabled" if u["disabled_at"] else "active",
        )  # fmt: skip
    console.print(table)


@users_app.command("set")
def users_set(
    name: Annotated[str, typer.Argument(help="The user's sign-in name")],
    role: Annotated[str | None, typer.Option(help="viewer | editor | approver | admin")] = None,
    disable: Annotated[
        bool | None,
        typer.Option(
            "--disable/--enable", help="Refuse sign-in and end every session at once, or allow again"
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a web UI user's role, or disable / re-enable them."""
    if role is None and disable is None:
        raise ValidationError.at("options", "give --role, --disable or --enable")
    with open_backend(_settings(db)) as backend:
        changed = backend.change_user(name, role, disable)
    if as_json:
        _print_json(changed)
        return
    state = "disabled" if changed["disabled_at"] else "active"
    console.print(escape(f"user {changed['name']}: {changed['role']}, {state}"))


@app.command()
def backup(
    file: Annotated[Path, typer.Argument(help="The archive to write (a tar; refused if it exists)")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Back up the database with its audit head log and secret, consistently, also while a
    server runs and ingests (it flushes its log and copies under its write lock)."""
    if file.exists():
        raise ValidationError.at("FILE", f"{file} exists; choose a new name (a backup never overwrites)")
    with open_backend(_settings(db)) as backend:
        manifest = backend.backup(file)
    if as_json:
        _print_json({"file": str(file), **manifest})
        return
    counts = ", ".join(f"{n:,} {kind}" for kind, n in manifest["counts"].items())
    console.print(escape(f"wrote {file}: schema v{manifest['schema_version']}, {counts}"), highlight=False)
    if not manifest["secret_included"]:
        err.print(
            escape(
                "warning: the audit secret is not in this backup (it never travels over the API): "
                "copy the server's <db>.secret (or RAMPLIGHT_AUDIT_SECRET) beside the restored database"
            ),
            highlight=False,
        )


@app.command("restore-backup")
def restore_backup(
    file: Annotated[Path, typer.Argument(help="An archive written by `ramplight backup`")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Restore a backup into a new database file (--db; never over an existing one), then
    verify its audit chains. Exit 1 when they do not verify."""
    from ramplight.store.backup import restore

    settings = _settings(db)
    if not file.exists():
        raise ValidationError.at("FILE", f"{file} does not exist")
    manifest = restore(file, settings)
    with open_backend(settings) as backend:
        verified = backend.verify_audit()
    if as_json:
        _print_json({"file": str(file), "db": str(settings.db), "manifest": manifest, "audit": verified})
    else:
        console.print(
            escape(f"restored {file} into {settings.db} (backup of {manifest['created_at'][:19]} UTC)"),
            highlight=False,
        )
        render.audit_report(verified, console)
    if not verified["ok"]:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Verify both audit chains (hashes, MACs with the server secret, the head log kept outside
    the database); name the first edited, deleted or reordered row. Exit 1 when broken."""
    with open_backend(_settings(db)) as backend:
        result = backend.verify_audit()
    if as_json:
        _print_json(result)
    else:
        render.audit_report(result, console)
    if not result["ok"]:
        raise typer.Exit(1)


def main() -> None:
    """Entry point: one clear line on error, never a traceback for a known failure."""
    try:
        app()
    except RamplightError as exc:
        err.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        for problem in getattr(exc, "problems", ())[1:5]:
            err.print(f"  {escape(problem.render())}", highlight=False)
        sys.exit(1)
