"""Evidence sources over the team's own tables: exposures and events defined as SQL, with a
declarative mapping of their columns onto the contract (docs/sources.md).

Warehouse-native means reading the data where it already lives: a table of the seed article's
camelCase events (`flagKey`, `unitId`, `variation`, `resolvedWithoutEscalation`, `latencyMs`, as
columns or inside a JSON column) becomes exposures and events without copying a row. The source's
SQL is user SQL and is checked like a SQL metric's (`core.usersql`); the mapping is checked here,
every problem at once, with the contract's name suggested for a near miss (`flagKey` →
`flag_key`). `analysis.sources` compiles a source into a relation with the contract's columns.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec

from ramplight.core.contract import snake_case
from ramplight.core.errors import FieldProblem, ValidationError
from ramplight.core.flags import KEY_PATTERN
from ramplight.core.usersql import EVIDENCE_TABLES, check_user_sql

SourceKind = Literal["exposures", "events"]

FIELDS: dict[str, tuple[str, ...]] = {
    "exposures": (
        "ts",
        "flag_key",
        "unit_id",
        "assigned_variation",
        "served_variation",
        "environment",
        "assignment_unit",
        "fallback_reason",
        "evaluation_reason",
        "attributes",
        "trace_id",
        "event_id",
    ),
    "events": (
        "ts",
        "name",
        "unit_id",
        "assignment_unit",
        "value",
        "properties",
        "flag_key",
        "variation",
        "environment",
        "trace_id",
        "event_id",
    ),
}
"""The contract fields a source of each kind maps, in the order of the relation's columns."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "exposures": ("ts", "flag_key", "unit_id", "assigned_variation"),
    "events": ("ts", "name", "unit_id", "assignment_unit"),
}
"""Fields every row must have; `name` may come from `outcomes` instead (one event per outcome)."""

JSON_FIELDS = frozenset({"attributes", "properties"})
"""Fields mapped from a column that already holds a JSON object (never from a constant)."""

DEFAULT_ENVIRONMENT = "production"
"""The environment of a source's rows when it maps none (neither a column nor a constant)."""

REFERENCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z0-9_\-]+)*$")
"""A column of the source's SQL, optionally followed by a JSON path inside it: `payload.flagKey`."""


class Source(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Exposures or events read from the team's own tables.

    - `sql`: one SELECT over tables user SQL may read (evidence and those the operator lists).
    - `fields`: contract field → a column of that query, or `column.json.path` inside a JSON
      column (`payload.flagKey`).
    - `constants`: contract field → a value every row has (`assignment_unit: conversation`).
    - `outcomes` (events only): event name → column (or JSON path) holding its value; each row
      gives one event per outcome whose value is not NULL (a wide table of outcome columns).
    """

    key: str
    kind: SourceKind
    sql: str
    fields: dict[str, str] = {}
    constants: dict[str, str | int | float] = {}
    outcomes: dict[str, str] = {}
    description: str = ""
    version: int = 0


def convert_source(doc: Mapping[str, Any]) -> Source:
    try:
        return msgspec.convert(doc, Source)
    except msgspec.ValidationError as exc:
        reason, _, path = str(exc).partition(" - at `")
        problem = FieldProblem(
            field=path.rstrip("`").removeprefix("$").lstrip(".") or "source", reason=reason
        )
        raise ValidationError(f"invalid source: {problem.render()}", (problem,)) from exc


def _unknown(name: str, kind: str) -> str:
    known = FIELDS[kind]
    snake = snake_case(name)
    close = [snake] if snake in known else difflib.get_close_matches(snake, known, n=1, cutoff=0.7)
    if name == "variation" and kind == "exposures":
        close = ["assigned_variation"]
    hint = (
        f"; the contract's name is {close[0]!r}" if close else f" (a {kind} source maps: {', '.join(known)})"
    )
    return f"not a field of {kind}{hint}"


def check_source(source: Source, readable_tables: Iterable[str] = EVIDENCE_TABLES) -> None:
    """Raise one ValidationError listing every problem of the definition (not yet its columns:
    `analysis.sources.probe` binds them on the store)."""
    problems: list[FieldProblem] = []
    if not KEY_PATTERN.match(source.key):
        problems.append(FieldProblem("key", "use 1-100 of a-z 0-9 _ . - starting alphanumeric"))
    known = FIELDS[source.kind]
    for section, mapping in (("fields", source.fields), ("constants", source.constants)):
        for name, value in mapping.items():
            if name not in known:
                problems.append(FieldProblem(f"{section}.{name}", _unknown(name, source.kind)))
            elif section == "fields" and not (isinstance(value, str) and REFERENCE.match(value)):
                problems.append(
                    FieldProblem(f"fields.{name}", "a column of the query, or `column.json.path` inside one")
                )
            elif section == "constants" and name in JSON_FIELDS:
                problems.append(FieldProblem(f"constants.{name}", "map it from a JSON column in `fields`"))
            elif section == "constants" and name == "ts":
                problems.append(FieldProblem("constants.ts", "every row needs its own time: map a column"))
    for name in sorted(set(source.fields) & set(source.constants)):
        problems.append(FieldProblem(f"constants.{name}", "also mapped in `fields`: keep one"))
    if source.outcomes and source.kind != "events":
        problems.append(FieldProblem("outcomes", "only an events source has outcomes"))
    for name, column in source.outcomes.items():
        if not KEY_PATTERN.match(name):
            problems.append(FieldProblem(f"outcomes.{name}", "an event name: 1-100 of a-z 0-9 _ . -"))
        if not REFERENCE.match(column):
            problems.append(FieldProblem(f"outcomes.{name}", "a column of the query, or `column.json.path`"))
    if source.outcomes and (
        "name" in source.fields or "name" in source.constants or "value" in source.fields
    ):
        problems.append(
            FieldProblem(
                "outcomes", "outcomes name the events and give their values: map no `name` or `value`"
            )
        )
    mapped = {*source.fields, *source.constants}
    for name in REQUIRED[source.kind]:
        if name not in mapped and not (name == "name" and source.outcomes):
            where = "map a column in `fields`" + ("" if name == "ts" else " or set it in `constants`")
            if name == "name":
                where += ", or list `outcomes`"
            problems.append(FieldProblem(f"fields.{name}", f"required: {where}"))
    _, sql_problems = check_user_sql(source.sql, readable_tables, field="sql")
    problems.extend(sql_problems)
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValidationError(f"invalid source {source.key!r}: {summary}{more}", tuple(problems))
