"""Flags and metrics as code: `apply` makes the stored definitions match documents, with a
readable diff per definition; a second run changes nothing."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from ramplight.control.common import Clock, _builtins, utcnow
from ramplight.control.flags import _validated, create_flag, update_flag
from ramplight.core.errors import ValidationError
from ramplight.core.flags import Flag, convert_flag
from ramplight.core.metrics import Metric, check_metric, convert_metric
from ramplight.store.base import Store


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """What `apply` does (or would do) to one flag, with a readable diff."""

    key: str
    action: Literal["create", "update", "unchanged"]
    diff: str
    version: int | None = None


def _display(flag: Flag | None) -> list[str]:
    if flag is None:
        return []
    doc = _builtins(msgspec.structs.replace(flag, version=0))
    doc.pop("version", None)
    for env in doc.get("environments", {}).values():
        if env.get("rollout"):
            env["rollout"].pop("ranges", None)
        for rule in env.get("rules", []):
            if rule.get("rollout"):
                rule["rollout"].pop("ranges", None)
    text = msgspec.json.format(msgspec.json.encode(doc), indent=2).decode()
    return text.splitlines(keepends=True)


def plan_apply(store: Store, docs: Iterable[Mapping[str, Any]]) -> list[tuple[PlannedChange, Flag | None]]:
    planned: list[tuple[PlannedChange, Flag | None]] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        try:
            flag = convert_flag(doc)
        except ValidationError as exc:
            raise ValidationError(f"flags[{i}]: {exc.message}", exc.problems) from exc
        if flag.key in seen:
            raise ValidationError.at(f"flags[{i}].key", f"{flag.key!r} appears twice")
        seen.add(flag.key)
        previous = store.get_flag(flag.key)
        candidate = _validated(store, flag, previous)
        before, after = _display(previous), _display(candidate)
        if previous is not None and before == after:
            planned.append((PlannedChange(flag.key, "unchanged", "", previous.version), None))
            continue
        diff = "".join(difflib.unified_diff(before, after, f"{flag.key} (stored)", f"{flag.key} (file)"))
        action: Literal["create", "update"] = "create" if previous is None else "update"
        planned.append((PlannedChange(flag.key, action, diff, previous.version if previous else None), flag))
    return planned


def apply(
    store: Store,
    docs: Iterable[Mapping[str, Any]],
    actor: str,
    dry_run: bool = False,
    reason: str | None = None,
    clock: Clock = utcnow,
) -> list[PlannedChange]:
    """Make the stored flags match the documents; idempotent (a second run changes nothing)."""
    planned = plan_apply(store, docs)
    if dry_run:
        return [p for p, _ in planned]
    results = []
    for change, flag in planned:
        if flag is None:
            results.append(change)
        elif change.action == "create":
            created = create_flag(store, _builtins(flag), actor, reason, clock)
            results.append(PlannedChange(change.key, "create", change.diff, created.version))
        else:
            assert change.version is not None
            updated = update_flag(store, change.key, _builtins(flag), change.version, actor, reason, clock)
            results.append(PlannedChange(change.key, "update", change.diff, updated.version))
    return results


def save_metric(
    store: Store,
    doc: Mapping[str, Any],
    expected_version: int | None,
    known: Mapping[str, Metric] | None = None,
) -> Metric:
    """Create (expected_version None) or replace a metric definition, checked against the others
    (`known`: the stored ones, or those of a whole file being applied)."""
    metric = convert_metric(doc)
    check_metric(
        metric,
        known if known is not None else {m.key: m for m in store.list_metrics()},
        store.sandbox.readable,
    )
    metric = msgspec.structs.replace(metric, version=(expected_version or 0) + 1)
    store.save_metric(metric, expected_version)
    return metric


def apply_metrics(
    store: Store, docs: Iterable[Mapping[str, Any]], dry_run: bool = False
) -> list[PlannedChange]:
    """Make stored metric definitions match the documents (idempotent), with a diff per metric."""
    stored = {m.key: m for m in store.list_metrics()}
    metrics: list[Metric] = []
    for i, doc in enumerate(docs):
        try:
            metrics.append(convert_metric(doc))
        except ValidationError as exc:
            raise ValidationError(f"metrics[{i}]: {exc.message}", exc.problems) from exc
    known = {**stored, **{m.key: m for m in metrics}}
    results = []
    for metric in metrics:
        check_metric(metric, known, store.sandbox.readable)
        previous = stored.get(metric.key)
        before = _metric_lines(previous)
        after = _metric_lines(metric)
        if previous is not None and before == after:
            results.append(PlannedChange(metric.key, "unchanged", "", previous.version))
            continue
        diff = "".join(difflib.unified_diff(before, after, f"{metric.key} (stored)", f"{metric.key} (file)"))
        action: Literal["create", "update"] = "create" if previous is None else "update"
        version = previous.version if previous is not None else None
        if not dry_run:
            saved = save_metric(store, _builtins(metric), version, known)
            version = saved.version
        results.append(PlannedChange(metric.key, action, diff, version))
    return results


def _metric_lines(metric: Metric | None) -> list[str]:
    if metric is None:
        return []
    doc = _builtins(msgspec.structs.replace(metric, version=0))
    return msgspec.json.format(msgspec.json.encode(doc), indent=2).decode().splitlines(keepends=True)
