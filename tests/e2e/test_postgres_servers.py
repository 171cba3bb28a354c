"""Several `ramplight serve` processes over one PostgreSQL control plane: a change made through
one process — a kill, a ramp, a revoked key — reaches every other process within a second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ramplight import Client
from tests import pg
from tests.e2e.served import Served
from tests.factories import flag_doc


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Served, Served, str]]:
    with pg.schema_url() as url:
        shared = {"db": url, "audit_secret": str(tmp_path / "control.secret")}
        first = Served(**shared, evidence=str(tmp_path / "a.duckdb"))
        key = first.admin_key()
        second = Served(**shared, evidence=str(tmp_path / "b.duckdb"))
        try:
            yield first, second, key
        finally:
            first.stop()
            second.stop()


def until(condition: object, seconds: float) -> float:
    """Seconds until `condition()` holds; fails after `seconds`."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_change_through_one_server_reaches_the_other_within_a_second(
    two_servers: tuple[Served, Served, str],
) -> None:
    a, b, admin_key = two_servers
    admin_a = httpx.Client(base_url=a.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)
    admin_b = httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)
    doc = flag_doc()
    assert admin_a.post("/api/flags", json=doc).status_code == 201
    sdk_key = admin_a.post(
        "/api/keys", json={"kind": "sdk", "name": "web", "environment": "production"}
    ).json()
    sdk_b = httpx.Client(base_url=b.url, headers={"Authorization": f"Bearer {sdk_key['key']}"}, timeout=30)

    def flag_at_b() -> dict[str, object]:
        config = sdk_b.get("/sdk/config")
        assert config.status_code == 200, config.text
        flags: dict[str, dict[str, object]] = config.json()["flags"]
        return flags[doc["key"]]

    before = flag_at_b()  # b has now cached its config and this key
    assert admin_b.get(f"/api/flags/{doc['key']}").json()["version"] == 1

    killed = admin_a.post(f"/api/flags/{doc['key']}/kill", json={"environment": "production"})
    assert killed.status_code == 200, killed.text
    assert until(lambda: flag_at_b() != before, 1.0) < 1.0

    assert admin_a.delete(f"/api/keys/{sdk_key['id']}").status_code == 204
    assert until(lambda: sdk_b.get("/sdk/config").status_code == 401, 1.0) < 1.0

    # The audit chain written by both processes verifies from either.
    admin_b.post(f"/api/flags/{doc['key']}/restore", json={"environment": "production"})
    verified = admin_a.get("/api/audit/verify").json()
    assert verified["ok"] is True, str(verified["flag_changes"])


def test_a_kill_through_one_server_reaches_an_sdk_streaming_from_the_other_within_a_second(
    two_servers: tuple[Served, Served, str],
) -> None:
    a, b, admin_key = two_servers
    admin_a = httpx.Client(base_url=a.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30)
    doc = flag_doc()
    assert admin_a.post("/api/flags", json=doc).status_code == 201
    sdk_key = admin_a.post(
        "/api/keys", json={"kind": "sdk", "name": "web", "environment": "production"}
    ).json()
    with Client(sdk_key["key"], url=b.url, poll_interval=3600) as client:
        assert client.evaluate(doc["key"], "u1").reason == "rollout"
        killed = admin_a.post(f"/api/flags/{doc['key']}/kill", json={"environment": "production"})
        assert killed.status_code == 200, killed.text
        assert until(lambda: client.evaluate(doc["key"], "u1").reason == "off", 1.0) < 1.0


def test_one_server_runs_the_guardian_and_another_takes_over_when_it_stops(tmp_path: Path) -> None:
    with pg.schema_url() as url:
        shared = {"db": url, "audit_secret": str(tmp_path / "control.secret"), "guardian_interval": "0.2"}
        first = Served(**shared, evidence=str(tmp_path / "a.duckdb"))
        key = first.admin_key()
        second = Served(**shared, evidence=str(tmp_path / "b.duckdb"))
        servers = {"first": first, "second": second}
        admins = {
            name: httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            for name, s in servers.items()
        }
        try:

            def status() -> dict[str, dict[str, object]]:
                return {name: admin.get("/api/guardian").json() for name, admin in admins.items()}

            until(lambda: sum(bool(s["leads"]) for s in status().values()) == 1, 10.0)
            before = status()
            (leader,) = [name for name, s in before.items() if s["leads"]]
            (other,) = set(servers) - {leader}
            time.sleep(1.0)  # five intervals: the leader checks, the other only asks
            after = status()
            assert after[leader]["checks"] > before[leader]["checks"]  # type: ignore[operator]
            assert after[other]["checks"] == 0 and after[other]["last_check_at"] is None
            assert after[other]["running"] is True and after[other]["interval_seconds"] == 0.2

            # A check asked of the server that does not lead runs there, one at a time with the leader's.
            assert admins[other].post("/api/guardian/check").status_code == 200
            assert admins[other].get("/api/guardian").json()["checks"] == 1

            admins[leader].close()
            servers[leader].stop()
            until(lambda: admins[other].get("/api/guardian").json()["leads"] is True, 10.0)
        finally:
            for admin in admins.values():
                admin.close()
            first.stop()
            second.stop()
