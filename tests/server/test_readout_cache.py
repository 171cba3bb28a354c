"""The web UI's cache of the audit verification: a page view does not re-verify the whole
history, a new change is verified at once, and a row altered in place shows within max_age_s."""

from __future__ import annotations

import threading
import time
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


def test_the_evidence_worker_runs_only_the_newest_stamp_and_reports_a_failure(tmp_path: Path) -> None:
    """Changes while a long computation runs queue one job per change; the superseded ones are
    skipped (the queue never outgrows one job per entry), and a store failure is said on the
    page instead of leaving it "being computed" forever."""
    store = DuckDBStore(tmp_path / "ramplight.duckdb")
    cache = ReadoutCache()
    try:
        control.ensure_default_environments(store)
        control.create_flag(store, flag_doc("checkout_copy"), "user:ana")
        release_first = threading.Event()
        ran: list[int] = []

        def compute(n: int) -> Any:
            def run() -> int:
                if n == 1:
                    release_first.wait(30)
                ran.append(n)
                return n

            return run

        def ask(n: int) -> Any:
            flag = store.get_flag("checkout_copy")
            assert flag is not None
            return cache.evidence("series", store, flag, "production", [], compute(n), wait_s=0.0)

        assert ask(1).pending  # running, blocked
        control.kill(store, "checkout_copy", "production", "user:ana")  # a change: a new stamp
        assert ask(2).pending  # queued behind the first
        control.restore(store, "checkout_copy", "production", "user:ana")  # and another
        assert ask(3).pending
        release_first.set()
        deadline = time.monotonic() + 30
        while ran[-1:] != [3] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ran == [1, 3]  # the job for the second stamp was superseded before it ran
        assert ask(3).value == 3

        def broken() -> int:
            raise KeyError("column vanished")

        control.kill(store, "checkout_copy", "production", "user:ana")
        flag = store.get_flag("checkout_copy")
        assert flag is not None
        failed = cache.evidence("series", store, flag, "production", [], broken, wait_s=30)
        assert failed.value is None and not failed.pending
        assert failed.error == "could not be computed (KeyError); the server log has the details"
    finally:
        cache.close()
        store.close()
