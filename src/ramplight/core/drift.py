"""Drift properties: which property of the evidence joined to a flag's units should keep its
distribution between variations and over time (a measurement plan's `drift:` list).

Decoded with the plan (`core.plan.convert_plan`); `check_drift` reports every problem with its
field, e.g. `drift[1].property`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import msgspec

from ramplight.core.errors import FieldProblem
from ramplight.core.flags import KEY_PATTERN

DriftSource = Literal["exposures", "events", "evals", "spans"]
DriftType = Literal["numeric", "categorical"]
DriftPeriod = Literal["day", "phase"]

JSON_PATH = re.compile(r"^(attributes|properties)(\.[A-Za-z0-9_\-]+)+$")
"""`attributes.a.b` / `properties.a.b`: a key inside a row's JSON column."""

NUMERIC_COLUMNS: dict[DriftSource, tuple[str, ...]] = {
    "exposures": (),
    "events": ("value",),
    "evals": ("score",),
    "spans": ("duration_ms", "input_tokens", "output_tokens", "cost_usd"),
}
"""Columns of each source that hold numbers (drift of `type: numeric` only)."""
CATEGORICAL_COLUMNS: dict[DriftSource, tuple[str, ...]] = {
    "exposures": ("fallback_reason",),
    "events": (),
    "evals": ("label",),
    "spans": ("gen_ai_model", "name", "status"),
}
"""Columns of each source that hold labels (drift of `type: categorical` only)."""
JSON_COLUMN: dict[DriftSource, str | None] = {
    "exposures": "attributes",
    "events": "properties",
    "evals": None,
    "spans": "attributes",
}
"""The JSON column a source's `property` may reach into."""
MAX_CATEGORIES = 20


class DriftProperty(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """One property whose distribution is watched.

    - `source`: `exposures` (the flag's own), `events` (named `event`), `evals` (named `eval`),
      `spans` (optionally named `span_name`; a span's unit as the readout resolves it)
    - `property`: a column of the source (`NUMERIC_COLUMNS`, `CATEGORICAL_COLUMNS`) or a key
      inside its JSON column (`attributes.…` for exposures and spans, `properties.…` for events)
    - `type`: `numeric` (Kolmogorov–Smirnov and PSI over the control's deciles) or
      `categorical` (chi-square and PSI over categories, the `max_categories` most frequent kept)
    - `over`: the periods compared with the first one, per variation: UTC `day` or ramp `phase`
    """

    key: str
    source: DriftSource
    property: str
    type: DriftType
    event: str | None = None
    eval: str | None = None
    span_name: str | None = None
    over: DriftPeriod = "day"
    max_categories: int | None = None
    """Categorical: categories kept by frequency (default `MAX_CATEGORIES`); the rest are one."""


def _check_property(d: DriftProperty) -> str | None:
    """Why `d.property` does not fit its source and type, or None."""
    json_column = JSON_COLUMN[d.source]
    if JSON_PATH.match(d.property):
        if json_column is None or not d.property.startswith(json_column + "."):
            return f"{d.source} have no JSON column {d.property.split('.')[0]!r}" + (
                f"; use `{json_column}.<key>`" if json_column else ""
            )
        return None
    numeric, categorical = NUMERIC_COLUMNS[d.source], CATEGORICAL_COLUMNS[d.source]
    if d.property in numeric and d.type == "categorical":
        return f"{d.property!r} holds numbers: use type numeric"
    if d.property in categorical and d.type == "numeric":
        return f"{d.property!r} holds labels: use type categorical"
    if d.property in numeric or d.property in categorical:
        return None
    columns = [*numeric, *categorical]
    choices = ", ".join(columns + ([f"{json_column}.<key>"] if json_column else []))
    return f"no property {d.property!r} of {d.source}; use one of {choices}"


_ONLY = {"event": "events", "eval": "evals", "span_name": "spans"}


def check_drift(properties: Sequence[DriftProperty], at: str = "drift") -> list[FieldProblem]:
    """Every problem of a `drift:` list, each with its field (`drift[i].…`)."""
    problems: list[FieldProblem] = []
    seen: dict[str, int] = {}
    for i, d in enumerate(properties):
        where = f"{at}[{i}]"
        if not KEY_PATTERN.match(d.key):
            problems.append(FieldProblem(f"{where}.key", "use 1-100 of a-z 0-9 _ . - starting alphanumeric"))
        elif d.key in seen:
            problems.append(FieldProblem(f"{where}.key", f"{d.key!r} is already {at}[{seen[d.key]}]"))
        seen.setdefault(d.key, i)
        reason = _check_property(d)
        if reason is not None:
            problems.append(FieldProblem(f"{where}.property", reason))
        if d.source == "events" and not d.event:
            problems.append(FieldProblem(f"{where}.event", "required for source events (the event name)"))
        if d.source == "evals" and not d.eval:
            problems.append(FieldProblem(f"{where}.eval", "required for source evals (the eval name)"))
        for field, source in _ONLY.items():
            if getattr(d, field) is not None and d.source != source:
                problems.append(FieldProblem(f"{where}.{field}", f"only for source {source}, not {d.source}"))
        if d.max_categories is not None and d.type == "numeric":
            problems.append(FieldProblem(f"{where}.max_categories", "only for type categorical"))
        elif d.max_categories is not None and not 2 <= d.max_categories <= 100:
            problems.append(FieldProblem(f"{where}.max_categories", "within [2, 100]"))
    return problems
