"""Evidence sources over the team's own tables, as code: saved one by one (admin API) or with a
file (`apply`), each checked before it is stored — the mapping and the SQL's tables by the tree
walk (`core.sources.check_source`), every mapped column against what the query returns, then a
run over its first rows on the store — so a mistyped column is refused by name instead of
breaking every readout later."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec
from sqlglot import exp

from ramplight.analysis.execute import fetch, read
from ramplight.analysis.sources import columns_probe, probe
from ramplight.control.common import _builtins
from ramplight.control.files import PlannedChange
from ramplight.core.errors import FieldProblem, NotFoundError, ValidationError
from ramplight.core.sources import Source, check_source, convert_source
from ramplight.store.base import Store


def check_on_store(store: Store, source: Source) -> None:
    """Every problem of `source`; then every mapped column its query does not return, at once,
    with the closest one it does; then a run of its relation over its first rows on `store` (a 422 naming
    the source and the engine's reason, e.g. a type that does not cast)."""
    check_source(source, store.sandbox.readable)
    names, _ = read(store, exp.select(exp.Star()).from_(columns_probe(source)).limit(0), [source])
    returned = {n.lower(): n for n in names}
    problems = []
    mapped = [
        *(("fields", k, v) for k, v in source.fields.items()),
        *(("outcomes", k, v) for k, v in source.outcomes.items()),
    ]
    for section, name, reference in mapped:
        column = reference.split(".")[0]
        if column in names:
            continue
        close = returned.get(column.lower()) or next(
            iter(difflib.get_close_matches(column, names, n=1)), None
        )
        hint = f"; did you mean {close!r}?" if close else f" (it returns: {', '.join(names)})"
        problems.append(FieldProblem(f"{section}.{name}", f"the query returns no column {column!r}{hint}"))
    if problems:
        summary = "; ".join(p.render() for p in problems[:5])
        raise ValidationError(f"invalid source {source.key!r}: {summary}", tuple(problems))
    fetch(store, probe(source), [source])


def save_source(store: Store, doc: Mapping[str, Any], expected_version: int | None) -> Source:
    """Create (expected_version None) or replace a source; the stored version is returned."""
    source = convert_source(doc)
    check_on_store(store, source)
    source = msgspec.structs.replace(source, version=(expected_version or 0) + 1)
    store.save_source(source, expected_version)
    return source


def delete_source(store: Store, key: str) -> None:
    if not store.delete_source(key):
        raise NotFoundError(f"no source {key!r}")


def _lines(source: Source | None) -> list[str]:
    if source is None:
        return []
    doc = _builtins(msgspec.structs.replace(source, version=0))
    return msgspec.json.format(msgspec.json.encode(doc), indent=2).decode().splitlines(keepends=True)


def apply_sources(
    store: Store, docs: Iterable[Mapping[str, Any]], dry_run: bool = False
) -> list[PlannedChange]:
    """Make stored sources match the documents (idempotent), with a diff per source."""
    stored = {s.key: s for s in store.list_sources()}
    sources: list[Source] = []
    for i, doc in enumerate(docs):
        try:
            source = convert_source(doc)
        except ValidationError as exc:
            raise ValidationError(f"sources[{i}]: {exc.message}", exc.problems) from exc
        if source.key in {s.key for s in sources}:
            raise ValidationError.at(f"sources[{i}].key", f"{source.key!r} appears twice")
        sources.append(source)
    results = []
    for source in sources:
        check_on_store(store, source)
        previous = stored.get(source.key)
        before, after = _lines(previous), _lines(source)
        if previous is not None and before == after:
            results.append(PlannedChange(source.key, "unchanged", "", previous.version))
            continue
        diff = "".join(difflib.unified_diff(before, after, f"{source.key} (stored)", f"{source.key} (file)"))
        action: Literal["create", "update"] = "create" if previous is None else "update"
        version = previous.version if previous is not None else None
        if not dry_run:
            version = save_source(store, _builtins(source), version).version
        results.append(PlannedChange(source.key, action, diff, version))
    return results
