"""The readouts the web UI shows, cached so a page view does not re-scan the evidence.

A flag's judgement (readout + recommendation, `release.judge`) is kept per flag and environment
with a stamp of what it was computed from: the flag's version, its plan's version, its decisions
and the evidence segments loaded so far. A view whose stamp matches is served from memory; any
change to one of them — a ramp, a decision, a guardian action, newly loaded evidence — makes
the next view compute it again. Evidence read from the team's own tables (sources) can change
without a new segment, so an entry is also recomputed after `max_age_s` (docs/ui.md).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ramplight import audit, release
from ramplight.analysis import service as analysis
from ramplight.analysis.overview import QualityMark, Status, quality_mark, release_status
from ramplight.core.audit import Decision
from ramplight.core.errors import RamplightError
from ramplight.core.flags import Flag
from ramplight.store.base import Store

log = logging.getLogger("ramplight.server")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Judged:
    """One flag in one environment, as the pages show it."""

    candidate: str | None
    recommendation: dict[str, Any] | None
    readout: dict[str, Any] | None
    quality: QualityMark
    computed_at: datetime
    error: str | None = None
    """Why there is no readout (e.g. the flag is not configured for analysis)."""
    timeline: dict[str, Any] | None = None
    """`release.release_timeline`: events and hourly series, computed with the readout."""
    sql: str | None = None
    """The readout's SQL as `GET /api/flags/{key}/sql` returns it (`analysis.readout_sql`)."""


@dataclass(frozen=True, slots=True)
class Cached(Generic[T]):
    """A cached piece of a flag page's evidence, when and how long it took to compute."""

    value: T | None
    error: str | None
    computed_at: datetime
    seconds: float
    pending: bool = False
    """A newer one is being computed (this is the one from before the change, if any)."""


@dataclass(frozen=True, slots=True)
class FlagRow:
    flag: Flag
    environment: str
    weights: dict[str, float]
    status: Status
    judged: Judged
    last_decision: Decision | None


def _or_none(compute: Callable[[], T]) -> T | None:
    try:
        return compute()
    except RamplightError:
        return None


class ReadoutCache:
    def __init__(self, max_age_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age_s = max_age_s
        self.clock = clock
        self.computed = 0
        """How many judgements were computed (not served from memory): what the tests watch."""
        self._lock = threading.Lock()
        self._judged: dict[tuple[str, str], tuple[Hashable, float, Judged]] = {}
        self._stale: tuple[Hashable, float, set[tuple[str, str]]] | None = None
        self._audit: dict[Hashable, tuple[Hashable, float, dict[str, Any]]] = {}
        self._evidence: dict[tuple[str, str, Hashable], tuple[Hashable, float, Any]] = {}
        self._running: dict[tuple[str, str, Hashable], tuple[Hashable, threading.Event]] = {}
        self._worker: ThreadPoolExecutor | None = None
        self.computed_evidence = 0
        """How many evidence entries were computed (not served from memory)."""

    def _fresh(self, stamp: Hashable, entry: tuple[Hashable, float, Any] | None) -> bool:
        return entry is not None and entry[0] == stamp and self.clock() - entry[1] < self.max_age_s

    @staticmethod
    def _stamp(store: Store, flag: Flag, environment: str, decisions: list[Decision]) -> Hashable:
        plan = store.get_plan(flag.key, environment)
        return (flag.version, plan.version if plan else 0, len(decisions), store.segments_loaded())

    def evidence(
        self,
        name: Hashable,
        store: Store,
        flag: Flag,
        environment: str,
        decisions: list[Decision],
        compute: Callable[[], T],
        wait_s: float | None = None,
    ) -> Cached[T]:
        """More of the page's evidence (the difference over time, a segment review, the evals and
        traces): computed by `compute`, kept under the same stamp as the judgement and recomputed
        when it changes; a RamplightError is kept as the entry's error.

        With `wait_s`, the computation runs on the cache's worker thread (once per entry and stamp) and
        the view waits for it at most that long: past it, the view gets the entry computed before
        the change, if any, marked `pending` (a large flag's series takes tens of seconds; the page
        says so rather than hang), and a later view the new one."""
        stamp = self._stamp(store, flag, environment, decisions)
        key = (flag.key, environment, name)
        entry = self._evidence.get(key)
        if entry is not None and self._fresh(stamp, entry):
            kept: Cached[T] = entry[2]
            return kept
        if wait_s is None:
            return self._compute_evidence(key, stamp, compute)
        with self._lock:
            running = self._running.get(key)
            if running is None or running[0] != stamp:
                done = threading.Event()
                self._running[key] = (stamp, done)
                if self._worker is None:
                    # One long-lived thread: the store keeps a cursor per thread, and one
                    # computation at a time spares the machine the pages are served from.
                    self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ramplight-evidence")
                self._worker.submit(self._compute_evidence, key, stamp, compute, done)
            else:
                done = running[1]
        done.wait(wait_s)
        entry = self._evidence.get(key)
        if entry is not None and self._fresh(stamp, entry):
            ready: Cached[T] = entry[2]
            return ready
        before: Cached[T] | None = entry[2] if entry is not None else None
        if before is None:
            return Cached(None, None, datetime.now(UTC), 0.0, pending=True)
        return Cached(before.value, before.error, before.computed_at, before.seconds, pending=True)

    def _compute_evidence(
        self, key: tuple[str, str, Hashable], stamp: Hashable, compute: Callable[[], T], done: Any = None
    ) -> Cached[T]:
        started = time.perf_counter()
        try:
            if done is not None:
                with self._lock:
                    current = self._running.get(key)
                if current is not None and current[1] is not done:
                    # Superseded while queued (new evidence or a change since): only the newest
                    # stamp's computation runs, so the queue never outgrows one job per entry.
                    return Cached(None, None, datetime.now(UTC), 0.0, pending=True)
            try:
                value: T | None = compute()
                error = None
            except RamplightError as exc:
                value, error = None, exc.message
            except Exception as exc:  # a store or engine failure: said on the page, logged here
                log.exception("computing %s for %s in %s failed", key[2], key[0], key[1])
                value, error = (
                    None,
                    f"could not be computed ({type(exc).__name__}); the server log has the details",
                )
            cached = Cached(value, error, datetime.now(UTC), time.perf_counter() - started)
            with self._lock:
                self.computed_evidence += 1
                self._evidence[key] = (stamp, self.clock(), cached)
            return cached
        finally:
            if done is not None:
                with self._lock:
                    if self._running.get(key, (None, None))[1] is done:
                        del self._running[key]
                done.set()

    def close(self) -> None:
        """Stop the evidence worker: queued computations are dropped, a running one finishes."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.shutdown(wait=False, cancel_futures=True)

    def judged(self, store: Store, flag: Flag, environment: str, decisions: list[Decision]) -> Judged:
        stamp = self._stamp(store, flag, environment, decisions)
        entry = self._judged.get((flag.key, environment))
        if entry is not None and self._fresh(stamp, entry):
            return entry[2]
        judged = self._judge(store, flag, environment)
        with self._lock:
            self.computed += 1
            self._judged[(flag.key, environment)] = (stamp, self.clock(), judged)
        return judged

    @staticmethod
    def _judge(store: Store, flag: Flag, environment: str) -> Judged:
        now = datetime.now(UTC)
        # The timeline's hourly series scan the evidence too: computed here, cached with the readout.
        timeline = _or_none(lambda: release.release_timeline(store, flag.key, environment))
        sql = _or_none(lambda: analysis.readout_sql(store, flag.key, environment))
        try:
            j = release.judge(store, flag.key, environment)
        except RamplightError as exc:
            plan, _ = release.plan_for(store, flag, environment)
            candidate = release.candidate_of(flag, environment, plan)
            none = QualityMark("none", "no readout")
            return Judged(candidate, None, None, none, now, exc.message, timeline, sql)
        return Judged(
            j.state.candidate,
            j.recommendation.to_json(),
            j.readout,
            quality_mark(j.readout),
            now,
            None,
            timeline,
            sql,
        )

    def stale(self, store: Store, flags: list[Flag]) -> set[tuple[str, str]]:
        """(flag, environment) pairs `release.stale_flags` names (one scan of the exposures)."""
        stamp = (tuple((f.key, f.version) for f in flags), store.segments_loaded())
        if self._stale is not None and self._fresh(stamp, self._stale):
            return self._stale[2]
        found = {(s["flag_key"], s["environment"]) for s in release.stale_flags(store)}
        self._stale = (stamp, self.clock(), found)
        return found

    def audit_check(self, store: Store, page: Hashable = (), extra: Hashable = ()) -> dict[str, Any]:
        """`audit.verify` (both chains, every MAC), kept per `page` (a flag's), redone when a
        chain's logged head moved, when `extra` (that flag's version and decisions) did, or after
        `max_age_s`: a view does not re-verify the whole history, and a row altered in place
        shows within `max_age_s`."""
        heads = tuple((h.chain, h.seq, h.hash) for h in store.audit_heads() or [])
        stamp = (heads, extra)
        entry = self._audit.get(page)
        if entry is not None and self._fresh(stamp, entry):
            return entry[2]
        found = audit.verify(store)
        with self._lock:
            self._audit[page] = (stamp, self.clock(), found)
        return found

    def rows(self, store: Store, environment: str | None = None) -> list[FlagRow]:
        """Every flag in every environment it is configured in (or only `environment`)."""
        flags = store.list_flags()
        stale = self.stale(store, flags)
        rows = []
        for flag in flags:
            decisions = store.decisions(flag.key)
            for env_key in flag.environments:
                if environment is None or env_key == environment:
                    rows.append(self.row(store, flag, env_key, decisions, (flag.key, env_key) in stale))
        return rows

    def row(
        self, store: Store, flag: Flag, environment: str, decisions: list[Decision], stale: bool
    ) -> FlagRow:
        mine = [d for d in decisions if d.environment == environment]
        judged = self.judged(store, flag, environment, mine)
        env = flag.environments[environment]
        weights = dict(env.rollout.weights) if env.rollout else {env.default_variation: 100.0}
        return FlagRow(
            flag=flag,
            environment=environment,
            weights=weights,
            status=release_status(flag, environment, judged.candidate, mine, stale),
            judged=judged,
            last_decision=mine[-1] if mine else None,
        )
