"""One evidence suite on every evidence backend: the embedded DuckDB file, ClickHouse (the real
engine in-process, chdb://) and PostgreSQL (the server on 127.0.0.1, a fresh schema per test).
Gaps are declared per backend, not skipped silently."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ramplight.core.errors import QueryError
from ramplight.store.clickhouse import ClickHouseEvidenceStore
from ramplight.store.duckdb import DuckDBStore
from ramplight.store.postgres.evidence import PostgresEvidenceStore
from tests import pg
from tests.core.builders import event_doc
from tests.store.evidence import accepted, exposures, spans

# SQL each engine must refuse in a read: files, URLs, writes, settings. Per backend, as the
# functions that reach outside differ by engine.
OUTSIDE = {
    "duckdb": [
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')",
        "INSERT INTO events SELECT * FROM events",
        "SET enable_external_access = true",
    ],
    "postgres": [
        "SELECT pg_read_file('/etc/passwd')",
        "SELECT lo_import('/etc/passwd')",
        "COPY (SELECT 1) TO '/tmp/ramplight-escape.csv'",
        "INSERT INTO events SELECT * FROM events",
        "SELECT * FROM evidence_migrations",  # in the schema, but not the reader role's
        # Back to the login's role mid-statement, then a query of its own: the reader stays.
        "SELECT set_config('role', 'postgres', true),"
        " query_to_xml('SELECT pg_read_file(''/etc/passwd'')', true, true, '')",
        "SELECT set_config('role', 'postgres', true), query_to_xml('SELECT * FROM evidence_migrations', true, true, '')",
    ],
    "clickhouse": [
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV')",
        "INSERT INTO events SELECT * FROM events",
        "SET readonly = 0",
    ],
}
SLOW = {
    "duckdb": "SELECT count(*) FROM range(100000000000) AS a(x) WHERE hash(x) = 0",
    "clickhouse": "SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0",
    "postgres": "SELECT count(*) FROM generate_series(1, 100000000000) AS g WHERE md5(g::text) = ''",
}


@pytest.fixture(params=["duckdb", "clickhouse", "postgres"])
def evidence(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "postgres":
        with pg.schema_url() as url:
            store: Any = PostgresEvidenceStore(url)
            assert store.reader_role == "ramplight_reader"  # the test server lets it be created
            yield store
            store.close()
        return
    if request.param == "duckdb":
        store = DuckDBStore(tmp_path / "evidence.duckdb", allowed_directories=(tmp_path,))
    else:
        store = ClickHouseEvidenceStore(f"chdb://{tmp_path / 'clickhouse'}")  # one engine per process
    yield store
    store.close()


def test_a_segment_loads_once_with_one_row_per_identity(
    evidence: Any, write_segment: Callable[..., dict[str, Path]]
) -> None:
    a, b, c = exposures("user-1", "user-2", "user-3")
    (event,) = accepted("events", event_doc())
    files = write_segment(exposures=[a, b, b, c], events=[event])
    assert evidence.load_segment("000000000001.seg", files) == 4
    assert evidence.load_segment("000000000001.seg", files) == 0
    assert evidence.loaded_segments() == {"000000000001.seg"} and evidence.segments_loaded() == 1
    assert (
        evidence.count("exposures"),
        evidence.count("events"),
        evidence.count("exposures", "staging"),
    ) == (3, 1, 0)
    keys, payloads = evidence.identities()
    assert sorted(int(k) for k in keys) == sorted([a.identity, b.identity, c.identity, event.identity])
    assert sorted(int(p) for p in payloads) == sorted(
        [a.payload_hash, b.payload_hash, c.payload_hash, event.payload_hash]
    )


def test_reads_name_their_columns(evidence: Any, write_segment: Callable[..., dict[str, Path]]) -> None:
    evidence.load_segment("000000000001.seg", write_segment(exposures=exposures("user-1", "user-2")))
    names, rows = evidence.read("SELECT unit_id, served_variation FROM exposures ORDER BY unit_id")
    assert names == ["unit_id", "served_variation"]
    assert rows == [("user-1", "candidate"), ("user-2", "candidate")]


def test_reads_cannot_reach_outside_the_evidence(evidence: Any) -> None:
    for sql in OUTSIDE[evidence.dialect]:
        with pytest.raises(QueryError):
            evidence.read(sql)
    assert evidence.read("SELECT 1 AS one") == (["one"], [(1,)])


def test_a_read_past_its_limit_is_stopped_and_the_store_goes_on(evidence: Any) -> None:
    with pytest.raises(QueryError, match="stopped after 1 s") as raised:
        evidence.read(SLOW[evidence.dialect], timeout_s=1)
    assert raised.value.timed_out
    assert evidence.count("events") == 0


def test_postgres_stores_a_resend_through_another_server_once(
    write_segment: Callable[..., dict[str, Path]],
) -> None:
    """Two servers sharing PostgreSQL evidence each keep their own identity index: the same item
    acknowledged by both reaches the store in two segments and is kept once."""
    a, b = exposures("user-1", "user-2")
    with pg.schema_url() as url:
        first, second = PostgresEvidenceStore(url), PostgresEvidenceStore(url)
        try:
            assert first.load_segment("a-000001.seg", write_segment(exposures=[a])) == 1
            assert second.load_segment("b-000001.seg", write_segment(exposures=[a, b])) == 1
            assert first.count("exposures") == 2
            keys, _ = second.identities()
            assert sorted(int(k) for k in keys) == sorted([a.identity, b.identity])
        finally:
            first.close()
            second.close()


def test_spans_load_once_per_identity_beside_the_other_evidence(
    evidence: Any, write_segment: Callable[..., dict[str, Path]]
) -> None:
    chat, tool = spans("chat", "execute_tool")
    (resent,) = spans("chat")  # the same trace and span ids: the same span
    files = write_segment(spans=[chat, tool, resent], exposures=exposures("user-1"))
    assert evidence.load_segment("000000000001.seg", files) == 3
    assert evidence.load_segment("000000000001.seg", files) == 0
    assert evidence.count("spans") == 2
    _, rows = evidence.read("SELECT name, output_tokens, duration_ms FROM spans ORDER BY name")
    assert rows == [("chat", 10, 1000.0), ("execute_tool", 20, 1000.0)]
    keys, _ = evidence.identities()
    assert {int(chat.identity), int(tool.identity)} <= {int(k) for k in keys}
