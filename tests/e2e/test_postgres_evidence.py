"""Two `ramplight serve` processes sharing one PostgreSQL database for both planes: evidence
acknowledged by either is in every readout, a resend through the other server is stored once,
and the readout equals the embedded DuckDB one on the same traffic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests import pg
from tests.e2e.served import Served
from tests.e2e.test_clickhouse_evidence import FLAG, METRICS, differences, prepare, traffic


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Served, Served, Served, str]]:
    with pg.schema_url() as url:
        shared = {"db": url, "evidence": url, "audit_secret": str(tmp_path / "secret")}
        a = Served(**shared, log_dir=str(tmp_path / "a.log"))
        b = Served(**shared, log_dir=str(tmp_path / "b.log"))
        embedded = Served(db=str(tmp_path / "embedded.duckdb"))
        try:
            yield a, b, embedded, url
        finally:
            a.stop()
            b.stop()
            embedded.stop()


def send(server: Served, sdk_key: str, batch: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.url}/ingest/batch", json=batch, headers={"Authorization": f"Bearer {sdk_key}"}, timeout=120
    )
    assert answer.status_code == 200 and not answer.json()["rejected"], answer.text
    result: dict[str, Any] = answer.json()
    return result


def test_servers_sharing_postgres_evidence_read_out_all_of_it_once(
    servers: tuple[Served, Served, Served, str],
) -> None:
    a, b, embedded, url = servers
    admin_a, sdk_key = prepare(a)
    admin_b = httpx.Client(
        base_url=b.url, headers={"Authorization": admin_a.headers["Authorization"]}, timeout=120
    )
    embedded_admin, embedded_key = prepare(embedded)  # both flags exist before the traffic starts
    batch = traffic(1200)
    half = {kind: rows[: len(rows) // 2] for kind, rows in batch.items()}
    rest = {kind: rows[len(rows) // 2 :] for kind, rows in batch.items()}
    send(a, sdk_key, half)
    send(b, sdk_key, rest)
    # The first half again, through the server that did not acknowledge it: taken (b's identity
    # index never saw it), stored once (the evidence store's unique identity).
    resent = send(b, sdk_key, half)
    assert sum(resent["accepted"].values()) == sum(len(v) for v in half.values())

    deadline = time.monotonic() + 120
    while True:  # a loaded machine may answer before the load is done, and says so (`loading`)
        report = admin_b.get(f"/api/flags/{FLAG}/report")
        assert report.status_code == 200, report.text
        on_postgres = report.json()
        if "loading" not in on_postgres or time.monotonic() > deadline:
            break
    assert on_postgres["data_quality"]["exposed_units"] == 1200
    assert "::TIMESTAMPTZ" in on_postgres["sql"] or "CAST(" in on_postgres["sql"]
    with psycopg.connect(url) as conn:
        stored = conn.execute("SELECT count(*), count(DISTINCT identity) FROM events").fetchone()
    assert stored is not None and stored[0] == stored[1] == len(batch["events"])

    send(embedded, embedded_key, batch)
    on_duckdb = embedded_admin.get(f"/api/flags/{FLAG}/report").json()
    assert [m["key"] for m in on_postgres["metrics"]] == list(METRICS)
    assert differences(on_postgres["metrics"], on_duckdb["metrics"]) == []
    assert differences(on_postgres["data_quality"], on_duckdb["data_quality"]) == []
    assert admin_a.get(f"/api/flags/{FLAG}/report").json()["data_quality"]["exposed_units"] == 1200
