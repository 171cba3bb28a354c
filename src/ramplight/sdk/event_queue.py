"""Where a Client's evidence goes: the `EvidenceSink` seam, and the queue that sends it to the
server (bounded, batched on a background thread, kept and retried through an outage).
`ramplight.sdk.testing.InMemory` is the other sink: it keeps what a test's code emitted."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import msgspec

from ramplight.core.contract import EvalScore, Event, Exposure
from ramplight.sdk.retry import RETRYABLE_STATUS, Backoff, retry_after_seconds

log = logging.getLogger("ramplight.sdk")

Item = Exposure | Event | EvalScore
Kind = Literal["exposures", "events", "evals"]
DropReason = Literal["queue_full", "refused", "unsent_at_close"]
_KIND: dict[type, Kind] = {Exposure: "exposures", Event: "events", EvalScore: "evals"}
_KIND_NAMED: dict[bytes, Kind] = {kind.encode(): kind for kind in _KIND.values()}
_encoder = msgspec.json.Encoder()

DROPPED_EVENT = "ramplight.sdk.dropped"
"""The event a queue sends when the server answers again, one per kind and reason it dropped."""
DROPPED_UNIT = "sdk_instance"


@dataclass
class QueueStats:
    """Counters an operator can read from `client.stats` (and should alert on `dropped`).

    `queued`: items taken in; `sent`: acknowledged by the server (accepted or duplicate);
    `rejected`: answered invalid in a 200's `rejected`, not retried; `retries`: requests
    retried; `pending`/`pending_bytes`: held now, waiting for the server; `dropped`: items lost,
    by reason in `dropped_by_reason` (`queue_full`, `refused`, `unsent_at_close`); `spooled`:
    unsent at close but written to the spool directory, `unspooled`: read back from it;
    `failed`: items the client could not build (an event without an assignment unit)."""

    queued: int = 0
    sent: int = 0
    rejected: int = 0
    dropped: int = 0
    failed: int = 0
    retries: int = 0
    spooled: int = 0
    unspooled: int = 0
    pending: int = 0
    pending_bytes: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)


class EvidenceSink(Protocol):
    """What a Client needs of its evidence's destination; `put` never blocks nor raises.
    `close` returns what it could not send, as counts by kind."""

    stats: QueueStats

    def put(self, item: Item) -> bool: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def close(self, timeout: float | None = None) -> dict[str, int]: ...


class _Throttled:
    """At most one log line per key per `interval` seconds, saying how many were held back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, level: int, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self.interval) < self.interval:
            self._held[key] = self._held.get(key, 0) + 1
            return
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            message += " (%d similar messages held back)"
            args = (*args, held)
        log.log(level, message, *args)


_Entry = tuple[Kind, bytes]


class EventQueue:
    """Items wait in memory, bounded by `capacity` items and `max_bytes` encoded bytes; past
    the bound new items are dropped and counted, never blocking the application. A sender
    thread posts batches (up to `batch_size` items and `max_batch_bytes`) every
    `flush_interval` seconds. A batch the server did not take (network error, 408, 429, 5xx)
    is kept and retried on `backoff`, honouring `Retry-After`, for as long as the outage lasts;
    one it refused (another 4xx) is dropped and reported, never retried. With `spool_dir`,
    what is unsent at close is written there and the next queue on that directory sends it."""

    def __init__(
        self,
        http: httpx.Client,
        capacity: int = 100_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        max_batch_bytes: int = 1024 * 1024,
        backoff: Backoff | None = None,
        close_timeout: float = 5.0,
        log_interval: float = 60.0,
        spool_dir: Path | str | None = None,
    ) -> None:
        self._http = http
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.flush_interval = flush_interval
        self.backoff = backoff or Backoff()
        self.close_timeout = close_timeout
        self.instance_id = uuid.uuid4().hex
        self.stats = QueueStats()
        self._warn = _Throttled(log_interval)
        self._lock = threading.Lock()
        self._pending: deque[_Entry] = deque()
        self._batch: list[_Entry] = []  # taken from `_pending`, being delivered
        self._unreported: dict[tuple[Kind, DropReason], int] = {}
        self._closed = False
        self._abandoned = False
        self._deadline: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._halt = threading.Event()
        self._idle = threading.Condition(self._lock)
        self.spool_dir = Path(spool_dir) if spool_dir is not None else None
        if self.spool_dir is not None:
            self._unspool(self.spool_dir)
        self._thread = threading.Thread(target=self._run, name="ramplight-events", daemon=True)
        self._thread.start()

    # -- the application's side ------------------------------------------------------------

    def put(self, item: Item) -> bool:
        kind = _KIND[type(item)]
        data = _encoder.encode(item)
        with self._lock:
            stats = self.stats
            if self._closed:
                self._drop(kind, "unsent_at_close", 1)
                return False
            if not self._admit(kind, data):
                self._warn(
                    logging.WARNING,
                    "queue_full",
                    "ramplight: evidence queue full (%d items, %d bytes held; bound %d items, %d "
                    "bytes): new items are dropped, %d so far",
                    stats.pending,
                    stats.pending_bytes,
                    self.capacity,
                    self.max_bytes,
                    stats.dropped_by_reason.get("queue_full", 0),
                )
                return False
            full = len(self._pending) >= self.batch_size
        if full:
            self._wake.set()
        return True

    def _admit(self, kind: Kind, data: bytes) -> bool:
        """Hold one encoded item, or drop it past the bound (the lock is held)."""
        stats = self.stats
        if stats.pending >= self.capacity or stats.pending_bytes + len(data) > self.max_bytes:
            self._drop(kind, "queue_full", 1)
            return False
        self._pending.append((kind, data))
        stats.queued += 1
        stats.pending += 1
        stats.pending_bytes += len(data)
        return True

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything held now; True if it was all answered within `timeout` (a server
        that is down keeps it held, retried on the backoff schedule)."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self.stats.pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float | None = None) -> dict[str, int]:
        """Send what is held until the deadline (`close_timeout` seconds by default), stop the
        sender, and return what was not acknowledged by then, by kind (also logged and counted
        as dropped `unsent_at_close`)."""
        timeout = self.close_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._closed:
                return {}
            self._closed = True
            self._deadline = deadline
        self._stop.set()
        self.flush(max(0.0, deadline - time.monotonic()))
        self._halt.set()
        self._wake.set()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            self._abandoned = True  # a request still in flight no longer counts
            left = [*self._batch, *self._pending]
            spool = self._spool(left) if left and self.spool_dir is not None else None
            held: dict[Kind, int] = {}
            for kind, _ in left:
                held[kind] = held.get(kind, 0) + 1
            if spool is not None:
                self.stats.spooled += len(left)
            else:
                for kind, n in held.items():
                    self._drop(kind, "unsent_at_close", n)
            self._batch = []
            self._pending.clear()
            self.stats.pending = self.stats.pending_bytes = 0
        unsent = {str(kind): n for kind, n in held.items()}
        if unsent:
            log.warning(
                "ramplight: closed after %.1fs with evidence the server did not acknowledge: %s (%s)",
                timeout,
                ", ".join(f"{n} {kind}" for kind, n in sorted(unsent.items())),
                f"spooled to {spool}" if spool is not None else "dropped",
            )
        return unsent

    # -- the spool -------------------------------------------------------------------------

    def _spool(self, entries: list[_Entry]) -> Path | None:
        """Write `entries` durably to a new file of the spool directory; None if it failed."""
        assert self.spool_dir is not None
        path = self.spool_dir / f"{self.instance_id}.ndjson"
        partial = path.with_suffix(".partial")
        try:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as file:
                file.writelines(kind.encode() + b" " + data + b"\n" for kind, data in entries)
                file.flush()
                os.fsync(file.fileno())
            partial.rename(path)  # a reader sees a whole file or none
        except OSError as exc:
            log.error("ramplight: could not spool unsent evidence to %s: %s", self.spool_dir, exc.strerror)
            return None
        return path

    def _unspool(self, directory: Path) -> None:
        """Take in what earlier queues spooled to `directory`: each file is claimed by an
        atomic rename (one queue gets it), read into memory under the bound, and deleted."""
        for path in sorted(directory.glob("*.ndjson")) if directory.is_dir() else []:
            claimed = path.with_name(f"{path.name}.{self.instance_id}")
            try:
                path.rename(claimed)
                lines = claimed.read_bytes().splitlines()
            except OSError:
                continue  # another process claimed it first
            with self._lock:
                for line in lines:
                    name, _, data = line.partition(b" ")
                    kind = _KIND_NAMED.get(name)
                    if kind is not None and data:
                        self.stats.unspooled += 1
                        self._admit(kind, data)
            claimed.unlink(missing_ok=True)

    # -- the sender thread -----------------------------------------------------------------

    def _drop(self, kind: Kind, reason: DropReason, n: int) -> None:
        """Count `n` lost items (the lock is held)."""
        self.stats.dropped += n
        self.stats.dropped_by_reason[reason] = self.stats.dropped_by_reason.get(reason, 0) + n
        if reason != "unsent_at_close":
            self._unreported[kind, reason] = self._unreported.get((kind, reason), 0) + n

    def _take(self) -> list[_Entry]:
        with self._lock:
            batch: list[_Entry] = []
            size = 0
            while self._pending and len(batch) < self.batch_size:
                entry = self._pending[0]
                if batch and size + len(entry[1]) > self.max_batch_bytes:
                    break
                batch.append(self._pending.popleft())
                size += len(entry[1])
            self._batch = batch
            return batch

    def _settle(self, batch: list[_Entry], sent: int = 0, rejected: int = 0, refused: int = 0) -> None:
        """The batch was answered: count it and stop holding it."""
        with self._lock:
            if self._abandoned:
                return
            stats = self.stats
            stats.sent += sent
            stats.rejected += rejected
            if refused:
                for kind, _ in batch:
                    self._drop(kind, "refused", 1)
            stats.pending -= len(batch)
            stats.pending_bytes -= sum(len(data) for _, data in batch)
            self._batch = []
            self._idle.notify_all()

    def _run(self) -> None:
        while not self._halt.is_set():
            if not self._stop.is_set():
                self._wake.wait(self.flush_interval)
                self._wake.clear()
            while batch := self._take():
                if not self._deliver(batch):
                    return
            if self._stop.is_set():
                return

    def _deliver(self, batch: list[_Entry]) -> bool:
        """Post `batch` until the server answers it; False if the queue was halted first."""
        body = _body(batch)
        attempt = 0
        while True:
            answered, retry_after = self._post(batch, body)
            if answered:
                self._report_drops()
                return True
            with self._lock:
                self.stats.retries += 1
            if self._halt.wait(self.backoff.delay(attempt, retry_after)):
                return False
            attempt += 1

    def _post(self, batch: list[_Entry], body: bytes) -> tuple[bool, float]:
        """One request: (True, 0) when the server answered for the batch, else (False, the
        seconds it asked us to wait)."""
        try:
            response = self._http.post(
                "/ingest/batch",
                content=body,
                headers={"Content-Type": "application/json"},
                timeout=self._request_timeout(),
            )
        except httpx.HTTPError as exc:
            self._warn(
                logging.WARNING,
                "unreachable",
                "ramplight: server unreachable (%s); holding %d evidence items, retrying",
                type(exc).__name__,
                self.stats.pending,
            )
            return False, 0.0
        status = response.status_code
        if status == 200:
            rejected = _rejected(response)
            self._settle(batch, sent=len(batch) - len(rejected), rejected=len(rejected))
            for problem in rejected[:3]:
                self._warn(
                    logging.WARNING,
                    "rejected",
                    "ramplight: server rejected %s[%s].%s: %s",
                    problem.get("kind"),
                    problem.get("index"),
                    problem.get("field"),
                    problem.get("reason"),
                )
            return True, 0.0
        if status in RETRYABLE_STATUS:
            self._warn(
                logging.WARNING,
                "retrying",
                "ramplight: server answered %d; holding %d evidence items, retrying",
                status,
                self.stats.pending,
            )
            return False, retry_after_seconds(response.headers.get("Retry-After"))
        self._settle(batch, refused=len(batch))
        self._warn(
            logging.ERROR,
            "refused",
            "ramplight: a batch of %d items was refused (%d), dropped: %s",
            len(batch),
            status,
            response.text[:300],
        )
        return True, 0.0

    def _request_timeout(self) -> float | httpx.Timeout | None:
        """The client's timeout, shortened to what is left before a close's deadline."""
        if self._deadline is None:
            return self._http.timeout
        return max(0.05, self._deadline - time.monotonic())

    def _report_drops(self) -> None:
        """Tell the server, now that it answers, what was dropped (one event per kind and
        reason); counts go back to the tally if it does not take them."""
        with self._lock:
            counts, self._unreported = self._unreported, {}
        if not counts:
            return
        now = datetime.now(UTC)
        events = [
            Event(
                ts=now,
                name=DROPPED_EVENT,
                unit_id=self.instance_id,
                assignment_unit=DROPPED_UNIT,
                value=float(n),
                properties={"kind": kind, "reason": reason},
                event_id=uuid.uuid4().hex,
            )
            for (kind, reason), n in sorted(counts.items())
        ]
        try:
            response = self._http.post(
                "/ingest/batch",
                content=_encoder.encode({"events": events}),
                headers={"Content-Type": "application/json"},
                timeout=self._request_timeout(),
            )
            taken = response.status_code == 200
            if taken and _rejected(response):
                log.error(
                    "ramplight: the server rejected the dropped-evidence report: %s", _rejected(response)
                )
        except httpx.HTTPError:
            taken = False
        if not taken:
            with self._lock:
                for key, n in counts.items():
                    self._unreported[key] = self._unreported.get(key, 0) + n


def _body(batch: list[_Entry]) -> bytes:
    """A `/ingest/batch` body from items encoded when they were queued."""
    by_kind: dict[str, list[bytes]] = {}
    for kind, data in batch:
        by_kind.setdefault(kind, []).append(data)
    return b"{" + b",".join(b'"%s":[%s]' % (k.encode(), b",".join(v)) for k, v in by_kind.items()) + b"}"


def _rejected(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        rejected = response.json().get("rejected", [])
    except ValueError:
        return []
    return rejected if isinstance(rejected, list) else []
