"""Metric definitions: what to measure about each exposed unit, and which way is good.

Decoded once at the edge (YAML through `ramplight apply`, JSON through the admin API) with
`convert_metric`; `check_metric` reports every semantic problem with its field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from ramplight.core.errors import FieldProblem, ValidationError
from ramplight.core.flags import KEY_PATTERN
from ramplight.core.usersql import EVIDENCE_TABLES, check_user_sql

MetricType = Literal["event", "ratio", "quantile", "eval", "span", "claim", "sql"]
Aggregation = Literal["count", "sum", "mean", "binary", "max"]
SpanField = Literal["duration_ms", "input_tokens", "output_tokens", "cost_usd", "error"]
Direction = Literal["increase", "decrease"]

VALUE_PATH = re.compile(r"^(value|properties(\.[A-Za-z0-9_\-]+)+)$")
"""`value` (the event's number) or `properties.a.b` (a number inside its properties)."""


class Metric(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One metric. Fields used depend on `type`:

    - event: `event` name, `aggregation`, optional `value` path, `window_hours`
    - ratio: `numerator` and `denominator`, keys of event/eval/span/sql metrics
    - quantile: `event`, `quantile` (0 < q < 1), optional `value` path (event-level values); or
      `span_field` (a number of `spans`: `duration_ms`, tokens, `cost_usd`), optional `span_name`
      (span-level values: the p95 latency of the root span, of a model call, …)
    - eval: `eval` name (scores from `evals`), optional `evaluator`; per-unit mean score
    - span: `span_field`, optional `span_name`, `aggregation`
    - claim: `event` (an outcome saying an action happened) and `span_name` (the span that does
      it): per unit, the claims whose trace has no such span — how many (`sum`), whether any
      (`binary`) or their share of the unit's claims (`mean`). Claimed but not done.
    - sql: `sql`, a query over your tables returning `unit_id, ts, value`; `aggregation`
    """

    key: str
    type: MetricType
    description: str = ""
    direction: Direction = "increase"
    event: str | None = None
    aggregation: Aggregation = "sum"
    value: str = "value"
    window_hours: float | None = None
    numerator: str | None = None
    denominator: str | None = None
    quantile: float | None = None
    eval: str | None = None
    evaluator: str | None = None
    span_field: SpanField | None = None
    span_name: str | None = None
    sql: str | None = None
    cuped_days: float | None = None
    guardrail_margin: float | None = None
    version: int = 0

    @property
    def zero_when_missing(self) -> bool:
        """Units without any event count as 0 (count, sum, binary); otherwise they are left out."""
        return self.aggregation in ("count", "sum", "binary") and self.type in (
            "event",
            "span",
            "claim",
            "sql",
        )


def _problem(exc: msgspec.ValidationError) -> FieldProblem:
    reason, _, path = str(exc).partition(" - at `")
    return FieldProblem(field=path.rstrip("`").removeprefix("$").lstrip("."), reason=reason)


def convert_metric(doc: Mapping[str, Any]) -> Metric:
    try:
        return msgspec.convert(doc, Metric)
    except msgspec.ValidationError as exc:
        problem = _problem(exc)
        raise ValidationError(f"invalid metric: {problem.render()}", (problem,)) from exc


_REQUIRED: dict[str, tuple[str, ...]] = {
    "event": ("event",),
    "ratio": ("numerator", "denominator"),
    "quantile": ("quantile",),
    "eval": ("eval",),
    "span": ("span_field",),
    "claim": ("event", "span_name"),
    "sql": ("sql",),
}


def check_metric(
    metric: Metric, known: Mapping[str, Metric], readable_tables: Iterable[str] = EVIDENCE_TABLES
) -> None:
    """Raise one ValidationError listing every problem; `known` resolves ratio references and
    `readable_tables` is what a SQL metric may read (evidence and the operator's own tables)."""
    problems: list[FieldProblem] = []
    if not KEY_PATTERN.match(metric.key):
        problems.append(FieldProblem("key", "use 1-100 of a-z 0-9 _ . - starting alphanumeric"))
    for field in _REQUIRED[metric.type]:
        if getattr(metric, field) is None:
            problems.append(FieldProblem(field, f"required for a {metric.type} metric"))
    if not VALUE_PATH.match(metric.value):
        problems.append(FieldProblem("value", "use `value` or `properties.<name>[.<name>…]`"))
    if metric.window_hours is not None and not 0 < metric.window_hours <= 24 * 365:
        problems.append(FieldProblem("window_hours", "must be within (0, 8760]"))
    if metric.cuped_days is not None and not 0 < metric.cuped_days <= 365:
        problems.append(FieldProblem("cuped_days", "must be within (0, 365]"))
    if metric.type == "quantile" and (metric.event is None) == (metric.span_field is None):
        problems.append(
            FieldProblem("event", "a quantile reads the values of an `event` or of a `span_field`")
        )
    if metric.type == "quantile" and metric.span_field == "error":
        problems.append(
            FieldProblem("span_field", "error is 0 or 1: use a span metric's mean for an error rate")
        )
    if metric.quantile is not None and not 0 < metric.quantile < 1:
        problems.append(FieldProblem("quantile", "must be strictly between 0 and 1 (0.95 for p95)"))
    if metric.guardrail_margin is not None and not 0 <= metric.guardrail_margin < 10:
        problems.append(FieldProblem("guardrail_margin", "a relative margin, e.g. 0.05 for 5 %"))
    if metric.type == "claim" and metric.aggregation not in ("sum", "binary", "mean"):
        problems.append(
            FieldProblem("aggregation", "a claim metric counts unbacked claims: use sum, binary or mean")
        )
    if metric.type == "ratio":
        for field in ("numerator", "denominator"):
            ref = getattr(metric, field)
            target = known.get(ref) if ref is not None else None
            if ref is not None and target is None:
                problems.append(FieldProblem(field, f"no metric {ref!r}"))
            elif target is not None and target.type in ("ratio", "quantile"):
                problems.append(FieldProblem(field, f"{ref!r} is a {target.type} metric; use a per-unit one"))
    if metric.type == "sql" and metric.sql is not None:
        problems.extend(_check_sql(metric.sql, readable_tables))
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        raise ValidationError(f"invalid metric {metric.key!r}: {summary}", tuple(problems))


def _check_sql(sql: str, readable_tables: Iterable[str]) -> list[FieldProblem]:
    tree, problems = check_user_sql(sql, readable_tables)
    if tree is None:
        return problems
    names = {s.alias_or_name for s in tree.selects}
    missing = [c for c in ("unit_id", "ts", "value") if c not in names]
    if missing and "*" not in names:
        return [FieldProblem("sql", f"must return columns unit_id, ts, value (missing {', '.join(missing)})")]
    return []
