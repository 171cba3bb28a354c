"""Several `ramplight serve` processes over one PostgreSQL control plane: a change made through
one process — a kill, a ramp, a revoked key — reaches every other process within a second."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ramplight.server.run import free_port
from tests import pg
from tests.factories import flag_doc


class Served:
    def __init__(self, url: str, tmp: Path, name: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPLIGHT_")}
        env.update(
            RAMPLIGHT_DB=url,
            RAMPLIGHT_EVIDENCE=str(tmp / f"{name}.duckdb"),
            RAMPLIGHT_AUDIT_SECRET=str(tmp / "control.secret"),
            RAMPLIGHT_GUARDIAN_INTERVAL="0",
            RAMPLIGHT_FSYNC="0",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ramplight", "serve", "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.output: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"server exited: {self.process.stdout.read() if self.process.stdout else ''}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("server did not become healthy within 60 s")

    def admin_key(self) -> str:
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, "the first server printed no admin key"
            match = re.search(r"RAMPLIGHT_ADMIN_KEY=(\S+)", line)
            if match:
                return match.group(1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[Served, Served, str]]:
    with pg.schema_url() as url:
        first = Served(url, tmp_path, "a")
        key = first.admin_key()
        second = Served(url, tmp_path, "b")
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
