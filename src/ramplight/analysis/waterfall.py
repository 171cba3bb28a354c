"""One trace as a span tree: depth-first rows with their offsets from the trace's start, and its
critical path — the same rule as `sql.critical_path_query`, which finds it in the store for
every trace: from the root, level by level, the child that ends last (the least span id among
children ending together). Pure functions over the trace's `spans` rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TreeSpan:
    span_id: str
    name: str
    depth: int
    start_ms: float
    """From the trace's earliest start."""
    end_ms: float
    status: str | None
    on_critical_path: bool
    model: str | None = None

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


def _moment(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def critical_path(spans: Sequence[Mapping[str, Any]]) -> list[str]:
    """The span ids on the trace's critical path, root first. As in the store's statement, a path
    starts at every root (no parent id: a trace may hold several, e.g. a tool call exported
    apart), roots in order of start; a span whose parent is missing from the rows starts none."""
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        children.setdefault(None if parent is None else str(parent), []).append(span)

    def last(group: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
        latest = max(_moment(s["end_ts"]) for s in group)
        return min((s for s in group if _moment(s["end_ts"]) == latest), key=lambda s: str(s["span_id"]))

    path: list[str] = []
    roots = sorted(children.get(None, []), key=lambda s: (_moment(s["start_ts"]), str(s["span_id"])))
    for root in roots:
        node, seen = root, set(path)
        while str(node["span_id"]) not in seen:  # a cycle in malformed parent ids ends the walk
            seen.add(str(node["span_id"]))
            path.append(str(node["span_id"]))
            level = children.get(str(node["span_id"]), [])
            if not level:
                break
            node = last(level)
    return path


def span_tree(spans: Sequence[Mapping[str, Any]]) -> list[TreeSpan]:
    """The trace's spans depth first (children by start, then span id), each with its depth, its
    offsets in milliseconds from the trace's first start, and whether it is on the critical path."""
    if not spans:
        return []
    ids = {str(s["span_id"]) for s in spans}
    origin = min(_moment(s["start_ts"]) for s in spans)
    on_path = set(critical_path(spans))
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = span.get("parent_span_id")
        children.setdefault(str(parent) if parent is not None and str(parent) in ids else None, []).append(
            span
        )
    for group in children.values():
        group.sort(key=lambda s: (_moment(s["start_ts"]), str(s["span_id"])))
    rows: list[TreeSpan] = []
    stack = [(span, 0) for span in reversed(children.get(None, []))]
    seen: set[str] = set()
    while stack:
        span, depth = stack.pop()
        span_id = str(span["span_id"])
        if span_id in seen:  # a cycle in malformed parent ids: each span once
            continue
        seen.add(span_id)
        rows.append(
            TreeSpan(
                span_id=span_id,
                name=str(span.get("name") or ""),
                depth=depth,
                start_ms=(_moment(span["start_ts"]) - origin).total_seconds() * 1000,
                end_ms=(_moment(span["end_ts"]) - origin).total_seconds() * 1000,
                status=span.get("status"),
                on_critical_path=span_id in on_path,
                model=span.get("gen_ai_model"),
            )
        )
        stack.extend((child, depth + 1) for child in reversed(children.get(span_id, [])))
    return rows
