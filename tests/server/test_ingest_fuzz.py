"""Item-level fuzzing of ingestion: whatever one item holds — invalid UTF-8, lone surrogates,
deep nesting, huge numbers, odd types — the batch answers 200, every good item is stored and
each bad one is named by index. Kept in the suite (hypothesis, a bounded number of examples)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ramplight.cli.importer import open_source, read_items
from ramplight.cli.local import LocalBackend
from ramplight.settings import Settings
from tests.factories import RunningServer

counter = itertools.count()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["ts", "name", "unit_id", "assignment_unit", "value", "properties", "event_id", "ids"]


def good_event() -> dict[str, Any]:
    return {"ts": "2026-11-20T10:00:00Z", "name": "latency_ms", "unit_id": f"good-{next(counter)}",
            "assignment_unit": "conversation", "value": 1.0}  # fmt: skip


def _string_bytes(raw: bytes) -> bytes:
    """A JSON string holding arbitrary bytes: quotes and backslashes escaped, the rest raw."""
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@st.composite
def bad_items(draw: st.DrawFn) -> bytes:
    base = good_event()
    shape = draw(
        st.sampled_from(["garbage_string", "surrogate", "other_value", "any_json", "deep", "number", "drop"])
    )
    field = draw(st.sampled_from(FIELDS))
    if shape == "garbage_string":
        encoded = json.dumps({**base, field: "@@"}).encode()
        return encoded.replace(b'"@@"', _string_bytes(draw(st.binary(min_size=1, max_size=30))))
    if shape == "surrogate":
        return json.dumps({**base, field: "@@"}).encode().replace(b'"@@"', b'"\\ud800x"')
    if shape == "other_value":
        return json.dumps({**base, field: draw(json_values)}).encode()
    if shape == "any_json":
        return json.dumps(draw(json_values)).encode()
    if shape == "deep":
        depth = draw(st.integers(50, 3000))
        return (
            json.dumps(base).encode()[:-1]
            + b', "properties": '
            + b'{"a":' * depth
            + b"1"
            + b"}" * depth
            + b"}"
        )
    if shape == "number":
        return (
            json.dumps({**base, "value": "@@"})
            .encode()
            .replace(
                b'"@@"',
                draw(
                    st.sampled_from(
                        [b"1e999", b"-1e400", b"123456789012345678901234567890", b"0.0000000001e-400"]
                    )
                ),
            )
        )
    return json.dumps({k: v for k, v in base.items() if k != field}).encode()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.tuples(st.booleans(), bad_items()), min_size=1, max_size=12))
def test_any_item_is_judged_on_its_own(server: RunningServer, batch: list[tuple[bool, bytes]]) -> None:
    if not getattr(server, "_flag", False):
        server.create_flag()
        server._flag = True  # type: ignore[attr-defined]
        server._sdk = server.sdk_key()  # type: ignore[attr-defined]
    items = [json.dumps(good_event()).encode() if good else bad for good, bad in batch]
    body = b'{"events": [' + b", ".join(items) + b"]}"
    response = httpx.post(f"{server.url}/ingest/batch", content=body, timeout=60,
                          headers={"Authorization": f"Bearer {server._sdk}", "Content-Type": "application/json"})  # type: ignore[attr-defined]  # fmt: skip
    assert response.status_code == 200, response.text
    result = response.json()
    rejected = {p["index"] for p in result["rejected"]}
    good = {i for i, (is_good, _) in enumerate(batch) if is_good}
    assert not good & rejected
    assert result["accepted"]["events"] + result["duplicates"]["events"] + len(rejected) == len(batch)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(st.booleans(), bad_items()), min_size=1, max_size=10))
def test_import_judges_every_line_on_its_own(tmp_path: Path, lines: list[tuple[bool, bytes]]) -> None:
    db = tmp_path / f"import-{next(counter)}.duckdb"
    path = tmp_path / f"events-{next(counter)}.ndjson"
    rows = [json.dumps(good_event()).encode() if good else bad.replace(b"\n", b" ") for good, bad in lines]
    path.write_bytes(b"\n".join(rows) + b"\n")
    backend = LocalBackend(Settings(db=db))
    try:
        source = open_source(path, kind="events")
        accepted = rejected = duplicates = 0
        for chunk in read_items(source):
            result = backend.ingest("production", {"events": chunk})
            accepted += result["accepted"]["events"]
            duplicates += result["duplicates"]["events"]
            rejected += len({p["index"] for p in result["rejected"]})  # an item may have several problems
        assert accepted + duplicates + rejected == len(lines)
        assert accepted >= sum(1 for good, _ in lines if good)
    finally:
        backend.close()
