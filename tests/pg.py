"""PostgreSQL for tests: the server on 127.0.0.1:5432 (trust auth, database `test`), one fresh
schema per use, dropped afterwards. Where it is not running the tests that need it skip —
except when RAMPLIGHT_REQUIRE_PG or CI is set (.ci/run sets the first): then they fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest

BASE = os.environ.get("RAMPLIGHT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def available() -> str | None:
    """None when PostgreSQL answers; else why not."""
    import psycopg

    try:
        with psycopg.connect(BASE, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {BASE} is not reachable: {str(exc).strip()}"
    return None


def require() -> None:
    reason = available()
    if reason is None:
        return
    if os.environ.get("RAMPLIGHT_REQUIRE_PG") or os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def schema_url() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema; the schema is dropped afterwards."""
    import psycopg

    require()
    name = f"rl_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(BASE, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    try:
        yield f"{BASE}?options={quote(f'-csearch_path={name}')}"
    finally:
        with psycopg.connect(BASE, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {name} CASCADE")
