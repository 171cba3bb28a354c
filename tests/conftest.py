"""Shared fixtures: a real Ramplight server on 127.0.0.1 over a fresh DuckDB file per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ramplight.server.run import ServerThread, bootstrap, free_port
from ramplight.settings import Settings
from tests.factories import RunningServer


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []

    def start(db: Path | None = None, **settings: Any) -> RunningServer:
        settings.setdefault("port", free_port())
        config = Settings(db=db or tmp_path / "ramplight.duckdb", **settings)
        admin_key = bootstrap(config) or ""
        thread = ServerThread(config).start()
        admin = httpx.Client(
            base_url=thread.url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=60
        )
        running = RunningServer(config, thread, admin_key, admin)
        started.append(running)
        return running

    yield start
    for running in started:
        running.admin.close()
        running.thread.stop()


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server()
