"""What is particular to the ClickHouse evidence store, on the real engine in-process (chdb://
through clickhouse-connect): replays after a crash, JSON documents, analysis settings in readonly
mode. What every evidence store does is in test_evidence_store.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ramplight.core.errors import QueryError
from ramplight.store.clickhouse import ClickHouseEvidenceStore
from tests.core.builders import event_doc
from tests.store.evidence import NOW, accepted, exposures


@pytest.fixture
def ch(tmp_path: Path) -> Iterator[ClickHouseEvidenceStore]:
    # chdb runs one engine per process: every test closes its store.
    store = ClickHouseEvidenceStore(f"chdb://{tmp_path / 'clickhouse'}")
    yield store
    store.close()


def test_a_segment_loads_once_even_when_replayed_after_a_crash(
    ch: ClickHouseEvidenceStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    a, b, c = exposures("user-1", "user-2", "user-3")
    files = write_segment(exposures=[a, b, b, c], events=accepted("events", event_doc()))
    assert ch.load_segment("000000000001.seg", files) == 4  # b once: one row per identity
    assert ch.load_segment("000000000001.seg", files) == 0
    # A crash after the inserts but before the segment was recorded: the replay inserts nothing.
    ch._client.command("TRUNCATE TABLE ingest_segments")
    assert ch.load_segment("000000000001.seg", files) == 0
    assert (ch.count("exposures"), ch.count("events"), ch.count("exposures", "staging")) == (3, 1, 0)
    assert ch.loaded_segments() == {"000000000001.seg"}
    keys, payloads = ch.identities()
    assert sorted(int(k) for k in keys) == sorted(
        [a.identity, b.identity, c.identity, accepted("events", event_doc())[0].identity]
    )
    assert int(payloads[0]) != 0


def test_loaded_evidence_keeps_its_fields(
    ch: ClickHouseEvidenceStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    (exposure,) = exposures("conv-9", fallback_reason="timeout", attributes={"plan": "pro", "seats": 12})
    ch.load_segment("000000000001.seg", write_segment(exposures=[exposure]))
    names, rows = ch.read(
        "SELECT ts, received_at, environment, fallback_reason, JSONExtractInt(attributes, 'seats') AS seats,"
        " event_id FROM exposures"
    )
    assert names == ["ts", "received_at", "environment", "fallback_reason", "seats", "event_id"]
    ((ts, received, env, reason, seats, event_id),) = rows
    assert isinstance(ts, datetime) and ts.replace(tzinfo=NOW.tzinfo) == datetime(
        2025, 3, 1, 11, 59, tzinfo=NOW.tzinfo
    )
    assert received.replace(tzinfo=NOW.tzinfo) == NOW
    assert (env, reason, seats, event_id) == ("production", "timeout", 12, exposure.event_id)


def test_analysis_settings_are_lifted_but_no_others(
    ch: ClickHouseEvidenceStore, write_segment: Callable[..., dict[str, Path]]
) -> None:
    """Readonly mode refuses any SETTINGS in a statement: the store passes the analysis settings
    itself, and leaves every other SETTINGS clause to be refused."""
    ch.load_segment("000000000001.seg", write_segment(exposures=exposures("user-1")))
    sql = "SELECT count() AS n FROM exposures SETTINGS join_use_nulls = 1, enable_materialized_cte = 1"
    assert ch.read(sql) == (["n"], [(1,)])
    with pytest.raises(QueryError, match="readonly mode"):
        ch.read("SELECT count() FROM exposures SETTINGS join_use_nulls = 1, readonly = 0")
    with pytest.raises(QueryError, match="readonly mode"):
        ch.read("SELECT count() FROM exposures SETTINGS max_execution_time = 1000")
    # Loading goes on after reads: their settings are the query's, never the session's.
    ch.load_segment("000000000002.seg", write_segment(exposures=exposures("user-2")))
    assert ch.count("exposures") == 2
