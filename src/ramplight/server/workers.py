"""Worker processes that judge large ingestion requests beside the event loop: OTLP trace
requests and `/ingest/batch` bodies, in one pool.

One thread (the event loop's, holding the GIL) decoded and judged every item — for spans about
two thirds of its time, for events about half — so intake could not pass what that thread did
alone. A worker receives the request's bytes and returns each accepted item's log line, identity
key and payload hash and each refusal (`otlp.judge_traces`, `contract.judge_batch`); the identity
check, the log append and its fsync stay in the server's process, so what "acknowledged" means
and how a resend is recognised do not change. A worker that dies (killed, out of memory) fails
only the requests it held: they are answered 503 with Retry-After before anything of them was
admitted or written, and the next request starts a new pool.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import datetime
from pathlib import Path
from typing import Any

from ramplight.core import otlp
from ramplight.core.contract import BatchRequest, ValidatedBatch, judge_batch
from ramplight.core.errors import FieldProblem, Overloaded, ValidationError

log = logging.getLogger(__name__)

PARENT_CHECK_SECONDS = 0.5
"""How often a worker checks that the server that started it still runs."""

_policy = otlp.AttributePolicy()
"""A worker's attribute policy (set by `_start`), its decisions remembered per name as in the server."""


def _start(allow: frozenset[str], deny: frozenset[str], parent: int) -> None:
    global _policy
    _policy = otlp.AttributePolicy(allow, deny)
    threading.Thread(target=_exit_with, args=(parent,), name="parent-watch", daemon=True).start()
    # As in the server (app.py): the collections a request's short-lived objects trigger must not
    # walk the modules imported at start.
    gc.collect()
    gc.freeze()
    # …and unfrozen at exit, so that finalization frees that heap: objects left frozen are never
    # freed, and DuckDB's bindings, where the parent's main module imported them (a script that
    # runs a server), report each as leaked.
    atexit.register(gc.unfreeze)


def _exit_with(parent: int) -> None:
    """End this worker once the server is gone: a server killed with SIGKILL cannot stop its
    pool, and the workers' task queue never reads end-of-file (each worker holds its other end)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(0)


def _judge(
    body: bytes, json: bool, environment: str, now: datetime
) -> tuple[otlp.DecodedTraces, int, ValidatedBatch] | tuple[str, tuple[FieldProblem, ...]]:
    """In a worker: the request judged, or a request that is not OTLP as (message, problems)
    (an exception's pickle would lose its problems)."""
    try:
        return otlp.judge_traces(body, json, _policy, environment, now)
    except otlp.OtlpError as exc:
        return exc.message, exc.problems


def _judge_batch(
    request: BatchRequest,
) -> ValidatedBatch | tuple[type[ValidationError], str, tuple[FieldProblem, ...]]:
    """In a worker: the batch judged, without its decoded items (the server needs only their
    columns, and the items would cost more to send than to decode); or the refusal of a body
    that is not a batch as (class, message, problems)."""
    try:
        judged = judge_batch(request)
    except ValidationError as exc:
        return type(exc), exc.message, exc.problems
    for accepted in judged.kinds.values():
        accepted.items.clear()
    return judged


SPARE_WINDOW_SECONDS = 0.1
"""How long `SpareCpu` measures before it updates its figure."""


class SpareCpu:
    """How many of the machine's cores were idle lately, from Linux's /proc/stat (re-read at most
    every SPARE_WINDOW_SECONDS); None where it cannot be read. Called from one thread."""

    def __init__(self, path: Path = Path("/proc/stat")) -> None:
        self._path = path
        self._machine = os.cpu_count() or 1
        self._last = self._read()
        self._at = time.monotonic()
        self._idle: float | None = None if self._last is None else float(self._machine)

    def _read(self) -> tuple[int, int] | None:
        """(idle ticks, all ticks) of all cores so far."""
        try:
            with self._path.open("rb") as handle:
                ticks = [int(t) for t in handle.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        if len(ticks) < 5:
            return None
        return ticks[3] + ticks[4], sum(ticks)  # idle and iowait; guest time is counted in user

    def idle_cores(self) -> float | None:
        now = time.monotonic()
        if self._last is not None and now - self._at >= SPARE_WINDOW_SECONDS:
            current = self._read()
            if current is not None:
                idle, total = current[0] - self._last[0], current[1] - self._last[1]
                if total > 0:
                    self._idle = self._machine * idle / total
                self._last, self._at = current, now
        return self._idle


class IngestWorkers:
    """A small pool of spawned processes (not forked: the server holds threads and the store)
    started at its first request."""

    def __init__(self, workers: int, allow: frozenset[str], deny: frozenset[str]) -> None:
        self.workers = workers
        self._args = (allow, deny, os.getpid())
        self._pool: ProcessPoolExecutor | None = None
        self._starting: list[Future[int]] = []
        self._lock = threading.Lock()
        self.restarts = 0
        """Pools replaced after a worker died."""
        self.unavailable = False
        """No worker process could be started: requests are decoded in the server's thread."""
        self.spare = SpareCpu()
        """Idle cores lately: a worker adds CPU time (the trip there and back), so event batches
        go to one only while the machine has time to spare (see `worth_it`)."""

    def worth_it(self, spare_cores: float) -> bool:
        """Whether the machine had at least `spare_cores` idle lately (always, where that cannot be
        known or `spare_cores` is 0): judging an event batch in a worker costs about a fifth more
        CPU time in all than in the event loop's thread, and only pays while a core has time that
        the loop's thread, busy with every request, cannot use."""
        if spare_cores <= 0:
            return True
        idle = self.spare.idle_cores()
        return idle is None or idle >= spare_cores

    def _executor(self) -> ProcessPoolExecutor | None:
        """The pool, started if need be; None when no process can be started here."""
        with self._lock:
            if self._pool is None and not self.unavailable:
                pool = ProcessPoolExecutor(
                    self.workers,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_start,
                    initargs=self._args,
                )
                try:
                    # One process a task while none is idle: all start now, and requests wait
                    # until they have (one would otherwise wait behind a later one's start).
                    self._starting = [pool.submit(int) for _ in range(self.workers)]
                except OSError:  # no process can be started (limits, a sandbox): judge in the thread
                    log.warning("ingestion workers could not start", exc_info=True)
                    pool.shutdown(wait=False, cancel_futures=True)
                    self.unavailable = True
                    return None
                self._pool = pool
            return self._pool

    def _discard(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
                self.restarts += 1
        pool.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The live workers' process ids (none before the first request)."""
        pool = self._pool
        processes = getattr(pool, "_processes", None) or {}
        return list(processes)

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        """`work(*args)` in a worker; None when there is no worker to take it."""
        pool = self._executor()
        if pool is None:
            return None
        try:
            if self._starting:
                await asyncio.gather(*map(asyncio.wrap_future, self._starting))
                self._starting = []
            return await asyncio.wrap_future(pool.submit(work, *args))
        except BrokenProcessPool:
            self._discard(pool)
            raise Overloaded(
                "an ingestion worker stopped while holding this request; nothing of it was taken", 1.0
            ) from None

    async def judge_traces(
        self, body: bytes, json: bool, environment: str, now: datetime
    ) -> tuple[otlp.DecodedTraces, int, ValidatedBatch] | None:
        """An OTLP trace request judged in a worker; None when there is no worker to take it."""
        result = await self._run(_judge, body, json, environment, now)
        if result is not None and isinstance(result[0], str):
            message, problems = result
            raise otlp.OtlpError(message, problems)
        return result  # type: ignore[no-any-return]

    async def judge_batch(self, request: BatchRequest) -> ValidatedBatch | None:
        """An `/ingest/batch` body judged in a worker (`contract.judge_batch`, its decoded items
        left out); None when there is no worker to take it."""
        result = await self._run(_judge_batch, request)
        if isinstance(result, tuple):
            kind, message, problems = result
            raise kind(message, problems)
        return result  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
