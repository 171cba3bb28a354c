"""Fixtures for store tests: a real DuckDB file per test, a stepping clock, evidence segments."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ramplight.core.contract import Item
from ramplight.store.duckdb import DuckDBStore
from ramplight.store.log import encode_items
from tests.store.evidence import NOW


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ramplight.duckdb"


@pytest.fixture
def store(db_path: Path, tmp_path: Path) -> Iterator[DuckDBStore]:
    # The engine reads files only from directories it is given: here, the test's segments and logs.
    opened = DuckDBStore(db_path, allowed_directories=(tmp_path,))
    yield opened
    opened.close()


@pytest.fixture
def clock() -> Callable[[], datetime]:
    """A clock that advances one second per call, from a fixed UTC instant."""
    ticks = iter(range(1_000_000))
    return lambda: NOW + timedelta(seconds=next(ticks))


@pytest.fixture
def write_segment(tmp_path: Path) -> Callable[..., dict[str, Path]]:
    """Write one log segment's NDJSON files (kind → items) to a fresh directory."""
    counter = iter(range(1_000_000))

    def write(**items: list[Item]) -> dict[str, Path]:
        directory = tmp_path / f"segment-{next(counter)}"
        directory.mkdir()
        files = {}
        for kind, data in encode_items(items).items():
            files[kind] = directory / f"{kind}.ndjson"
            files[kind].write_bytes(data)
        return files

    return write
