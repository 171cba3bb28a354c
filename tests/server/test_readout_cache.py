"""The web UI's cache of the audit verification: a page view does not re-verify the whole
history, a new change is verified at once, and a row altered in place shows within max_age_s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ramplight import audit, control
from ramplight.server.readouts import ReadoutCache
from ramplight.store.duckdb import DuckDBStore
from tests.core.builders import flag_doc


def test_the_audit_check_is_cached_until_a_head_moves_or_it_is_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [0.0]
    store = DuckDBStore(tmp_path / "ramplight.duckdb")
    try:
        control.ensure_default_environments(store)
        control.create_flag(store, flag_doc("checkout_copy"), "user:ana")
        cache = ReadoutCache(max_age_s=60, clock=lambda: now[0])
        calls: list[int] = []
        original = audit.verify

        def counted(s: DuckDBStore) -> dict[str, Any]:
            calls.append(1)
            return original(s)

        monkeypatch.setattr(audit, "verify", counted)  # counts the real verification's runs
        first = cache.audit_check(store)
        assert first["ok"] is True and first["flag_changes"]["rows"] == 1
        assert cache.audit_check(store) is first and len(calls) == 1  # served from memory
        control.kill(store, "checkout_copy", "production", "user:ana", "pager")
        moved = cache.audit_check(store)
        assert moved["flag_changes"]["rows"] == 2 and len(calls) == 2  # the head moved: verified
        store.query("UPDATE flag_changes SET reason = 'routine' WHERE seq = 2")
        assert cache.audit_check(store)["ok"] is True  # not yet: the head log did not move
        now[0] += 61
        tampered = cache.audit_check(store)
        assert tampered["ok"] is False and tampered["flag_changes"]["first_break"]["seq"] == 2
    finally:
        store.close()
