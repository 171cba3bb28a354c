"""ReadoutCache.evidence: kept under the judgement's stamp; with a wait, computed on the cache's
worker thread, and a view that outlasts the wait gets the previous entry marked pending."""

from __future__ import annotations

import threading
from pathlib import Path

from ramplight import control
from ramplight.core.errors import ValidationError
from ramplight.server.readouts import ReadoutCache
from ramplight.store.duckdb import DuckDBStore
from tests.factories import flag_doc


def test_a_slow_entry_is_computed_in_the_background_and_the_old_one_shown_meanwhile(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "cache.duckdb")
    try:
        control.ensure_default_environments(store)
        control.create_flag(store, flag_doc(), "test")
        flag = store.get_flag("support_assistant_profile")
        assert flag is not None
        cache = ReadoutCache()
        release = threading.Event()
        threads: list[str] = []

        def slow(value: int) -> int:
            threads.append(threading.current_thread().name)
            assert release.wait(10)
            return value

        first = cache.evidence("series", store, flag, "production", [], lambda: slow(1), wait_s=0.05)
        assert first.pending and first.value is None  # nothing before it: the page says "computing"
        again = cache.evidence("series", store, flag, "production", [], lambda: slow(99), wait_s=0.05)
        assert again.pending  # the same stamp is computed once, not twice
        release.set()
        done = cache.evidence("series", store, flag, "production", [], lambda: slow(99), wait_s=5)
        assert (done.value, done.pending, cache.computed_evidence) == (1, False, 1)
        assert threads == ["ramplight-evidence_0"]  # the worker, not the request's thread

        release.clear()
        control.ramp(store, flag.key, "production", "candidate", 10, "test")  # a new stamp
        ramped = store.get_flag(flag.key)
        assert ramped is not None
        stale = cache.evidence("series", store, ramped, "production", [], lambda: slow(2), wait_s=0.05)
        assert stale.pending and stale.value == 1  # the one from before the change, marked
        release.set()
        fresh = cache.evidence("series", store, ramped, "production", [], lambda: slow(3), wait_s=5)
        assert (fresh.value, fresh.pending) == (2, False)
        # Unchanged stamp: from memory, synchronously too.
        assert cache.evidence("series", store, ramped, "production", [], lambda: slow(4)).value == 2

        def refused() -> int:
            raise ValidationError("no plan metric")

        failed = cache.evidence("other", store, ramped, "production", [], refused)
        assert (failed.value, failed.error) == (None, "no plan metric")
    finally:
        store.close()
