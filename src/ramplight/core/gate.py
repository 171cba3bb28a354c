"""The eval gate: is a candidate behavior profile no worse than control on an offline eval set?

Each item of the eval set is scored under both variations (a judge, a heuristic, a human), so the
comparison is **paired by item**: per score, the differences d_i = candidate − control (control −
candidate for a score where lower is better) have mean d̄ and standard deviation s over the n
items scored under both. The candidate passes a score when the one-sided lower confidence bound
d̄ − t(1−α, n−1)·s/√n lies above −margin: any harm it may do is smaller than the margin
(non-inferiority, as the readout's guardrails, but on paired items). A margin is in the score's
units, or relative to control's mean. A score without a margin is shown, not gated.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated, Any

import msgspec

from ramplight.core.errors import FieldProblem, ValidationError
from ramplight.core.stats._contrast import t_quantile


@dataclass(frozen=True, slots=True)
class ScoreGate:
    name: str
    pairs: int
    control_mean: float | None
    candidate_mean: float | None
    difference: float | None
    """Mean paired difference, improvement positive (candidate − control, or the reverse)."""
    lower_bound: float | None
    margin: float | None
    """The harm allowed, in the score's units (a relative margin already applied); None: not gated."""
    passed: bool | None
    reason: str


@dataclass(frozen=True, slots=True)
class GateResult:
    control: str
    candidate: str
    alpha: float
    scores: list[ScoreGate]
    unpaired: dict[str, int] = field(default_factory=dict)
    """Items scored under one variation only, per score (left out of the comparison)."""

    @property
    def passed(self) -> bool:
        gated = [s for s in self.scores if s.passed is not None]
        return bool(gated) and all(s.passed for s in gated)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def read_scores(
    rows: Iterable[Mapping[str, Any]], variations: tuple[str, str]
) -> dict[str, dict[str, dict[str, float]]]:
    """score name → variation → item → value, from rows of `{item, variation, scores: {name:
    value}}` or `{item, variation, name, score}`; every bad row named by its line."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    problems: list[FieldProblem] = []
    for line, row in enumerate(rows, 1):
        item, variation = row.get("item"), row.get("variation")
        if not isinstance(item, str | int) or isinstance(item, bool) or item == "":
            problems.append(FieldProblem(f"line {line}.item", "required: the eval item's id"))
            continue
        if variation not in variations:
            if not isinstance(variation, str):
                problems.append(
                    FieldProblem(f"line {line}.variation", "required: the variation that was scored")
                )
            continue  # another variation's scores: not in this comparison
        scores = row.get("scores")
        if scores is None and "name" in row:
            scores = {row["name"]: row.get("score")}
        if not isinstance(scores, dict) or not scores:
            problems.append(
                FieldProblem(f"line {line}.scores", "required: {name: number, …} (or name and score)")
            )
            continue
        for name, value in scores.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                problems.append(
                    FieldProblem(f"line {line}.scores.{name}", f"{value!r} is not a finite number")
                )
                continue
            seen = out.setdefault(str(name), {}).setdefault(str(variation), {})
            if str(item) in seen:
                problems.append(
                    FieldProblem(
                        f"line {line}", f"item {item!r} has a second {name!r} score under {variation!r}"
                    )
                )
                continue
            seen[str(item)] = float(value)
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValidationError(f"invalid eval set: {summary}{more}", tuple(problems))
    return out


def gate(
    scores: Mapping[str, Mapping[str, Mapping[str, float]]],
    control: str,
    candidate: str,
    margins: Mapping[str, float],
    *,
    relative: bool = False,
    lower_is_better: frozenset[str] = frozenset(),
    alpha: float = 0.05,
) -> GateResult:
    if not 0 < alpha < 0.5:
        raise ValidationError.at("alpha", "must be within (0, 0.5)")
    missing = sorted(set(margins) - set(scores))
    if missing:
        raise ValidationError.at("margin", f"no scores named {', '.join(map(repr, missing))} in the eval set")
    results: list[ScoreGate] = []
    unpaired: dict[str, int] = {}
    for name in sorted(scores):
        a, b = scores[name].get(control, {}), scores[name].get(candidate, {})
        items = sorted(set(a) & set(b))
        unpaired[name] = len(set(a) ^ set(b))
        sign = -1.0 if name in lower_is_better else 1.0
        diffs = [sign * (b[i] - a[i]) for i in items]
        n = len(diffs)
        control_mean = sum(a[i] for i in items) / n if n else None
        candidate_mean = sum(b[i] for i in items) / n if n else None
        margin = margins.get(name)
        if margin is not None and relative and control_mean is not None:
            margin = abs(control_mean) * margin
        if n < 2:
            results.append(
                ScoreGate(name, n, control_mean, candidate_mean, None, None, margin,
                          False if margin is not None else None, "fewer than 2 items scored under both variations")
            )  # fmt: skip
            continue
        mean = sum(diffs) / n
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        lower = mean - t_quantile(1 - alpha, n - 1) * sd / math.sqrt(n)
        if margin is None:
            passed, reason = None, "not gated (no margin)"
        elif lower > -margin:
            passed, reason = True, f"any harm is smaller than the margin ({lower:+.4g} > {-margin:+.4g})"
        else:
            passed, reason = (
                False,
                f"a harm up to the margin cannot be ruled out ({lower:+.4g} ≤ {-margin:+.4g})",
            )
        results.append(ScoreGate(name, n, control_mean, candidate_mean, mean, lower, margin, passed, reason))
    return GateResult(control, candidate, alpha, results, {k: v for k, v in unpaired.items() if v})


class GateRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A gate to run and record with a flag (`POST /api/flags/{key}/gates`): the eval set's rows
    (`items`, as the JSONL file's lines) or the scores of an offline run already in `evals`
    (`run_id`), and the gate's settings as `ramplight gate` takes them."""

    margins: dict[str, float]
    environment: str = "production"
    control: str = "control"
    candidate: str = "candidate"
    relative: bool = False
    lower_is_better: list[str] = []
    alpha: float = 0.05
    run_id: str | None = None
    items: list[dict[str, Any]] | None = None
    source: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    """Where the scores came from, for the record (the file's name)."""

    def check(self) -> None:
        if (self.run_id is None) == (self.items is None):
            raise ValidationError.at(
                "run_id", "give either the eval set's items or the run_id of scores in evals"
            )
        if not self.margins:
            raise ValidationError.at("margins", "at least one score to gate, as {name: margin}")
        for name, margin in self.margins.items():
            if not math.isfinite(margin) or margin < 0:
                raise ValidationError.at(
                    f"margins.{name}", f"{margin!r}: a margin is a number >= 0 (the harm allowed)"
                )
        if self.control == self.candidate:
            raise ValidationError.at("candidate", "must differ from control")

    def run(self, scores: Mapping[str, Mapping[str, Mapping[str, float]]]) -> GateResult:
        return gate(
            scores, self.control, self.candidate, self.margins, relative=self.relative,
            lower_is_better=frozenset(self.lower_is_better), alpha=self.alpha,
        )  # fmt: skip


class GateRecord(msgspec.Struct, frozen=True):
    """A gate's result stored with its flag: evidence the flag's next decision carries."""

    gate_id: str
    ts: datetime
    flag_key: str
    environment: str
    actor: str
    passed: bool
    result: dict[str, Any]
    run_id: str | None = None
    source: str | None = None


def convert_gate_request(doc: Any) -> GateRequest:
    """A gate request from JSON, every type problem named by its field."""
    try:
        request = msgspec.convert(doc, GateRequest)
    except msgspec.ValidationError as exc:
        reason, _, path = str(exc).partition(" - at `")
        problem = FieldProblem(field=path.rstrip("`").removeprefix("$").lstrip(".") or "body", reason=reason)
        raise ValidationError(f"invalid gate request: {problem.render()}", (problem,)) from exc
    request.check()
    return request
