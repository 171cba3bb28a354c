"""Where a Client's evidence goes: the `EvidenceSink` seam, and the queue that sends it to the
server (bounded, batched on a background thread, retried with backoff).
`ramplight.sdk.testing.InMemory` is the other sink: it keeps what a test's code emitted."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import httpx
import msgspec

from ramplight.core.contract import EvalScore, Event, Exposure

log = logging.getLogger("ramplight.sdk")

Item = Exposure | Event | EvalScore
_KIND = {Exposure: "exposures", Event: "events", EvalScore: "evals"}
_encoder = msgspec.json.Encoder()


@dataclass
class QueueStats:
    """Counters an operator can read from `client.stats` (and should alert on `dropped`)."""

    queued: int = 0
    sent: int = 0
    rejected: int = 0
    dropped: int = 0
    failed: int = 0
    retries: int = 0


class EvidenceSink(Protocol):
    """What a Client needs of its evidence's destination; `put` never blocks nor raises."""

    stats: QueueStats

    def put(self, item: Item) -> bool: ...

    def flush(self, timeout: float = 10.0) -> bool: ...

    def close(self, timeout: float = 10.0) -> None: ...


class EventQueue:
    """Items wait in a bounded queue; when it is full new items are dropped and counted, never
    blocking the application. A sender thread posts batches of up to `batch_size` every
    `flush_interval` seconds, retrying network errors and 5xx/429 with exponential backoff."""

    def __init__(
        self,
        http: httpx.Client,
        capacity: int = 100_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_retries: int = 6,
        base_backoff: float = 0.2,
    ) -> None:
        self._http = http
        self._queue: queue.Queue[Item] = queue.Queue(maxsize=capacity)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_retries = max_retries
        self.base_backoff = base_backoff
        self.stats = QueueStats()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name="ramplight-events", daemon=True)
        self._thread.start()

    def put(self, item: Item) -> bool:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            with self._lock:
                self.stats.dropped += 1
                if self.stats.dropped == 1 or self.stats.dropped % 10_000 == 0:
                    log.warning("ramplight: event queue full, %d items dropped so far", self.stats.dropped)
            return False
        with self._lock:
            self.stats.queued += 1
        if self._queue.qsize() >= self.batch_size:
            self._wake.set()
        return True

    def _take(self) -> list[Item]:
        items: list[Item] = []
        while len(items) < self.batch_size:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return items

    def _send(self, items: list[Item]) -> None:
        body: dict[str, list[Item]] = {}
        for item in items:
            body.setdefault(_KIND[type(item)], []).append(item)
        payload = _encoder.encode(body)
        for attempt in range(self.max_retries + 1):
            retry_after = 0.0
            try:
                response = self._http.post(
                    "/ingest/batch", content=payload, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                reason = f"network error: {exc}"
            else:
                if response.status_code == 200:
                    rejected = response.json().get("rejected", [])
                    with self._lock:
                        self.stats.sent += len(items) - len(rejected)
                        self.stats.rejected += len(rejected)
                    for problem in rejected[:3]:
                        log.warning(
                            "ramplight: server rejected %s[%s].%s: %s",
                            problem.get("kind"),
                            problem.get("index"),
                            problem.get("field"),
                            problem.get("reason"),
                        )
                    return
                if response.status_code not in (429, 500, 502, 503, 504):
                    with self._lock:
                        self.stats.failed += len(items)
                    log.error(
                        "ramplight: batch of %d refused (%d): %s",
                        len(items),
                        response.status_code,
                        response.text[:300],
                    )
                    return
                reason = f"server answered {response.status_code}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt == self.max_retries or (self._stop.is_set() and attempt >= 1):
                with self._lock:
                    self.stats.failed += len(items)
                log.error(
                    "ramplight: giving up on a batch of %d after %d tries (%s)",
                    len(items),
                    attempt + 1,
                    reason,
                )
                return
            with self._lock:
                self.stats.retries += 1
            backoff = self.base_backoff * 2**attempt * random.uniform(0.5, 1.0)
            time.sleep(max(backoff, retry_after))

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            while True:
                with self._idle:
                    items = self._take()
                    self._in_flight = len(items)
                if not items:
                    break
                try:
                    self._send(items)
                finally:
                    with self._idle:
                        self._in_flight = 0
                        self._idle.notify_all()
            with self._idle:
                self._idle.notify_all()
            if self._stop.is_set() and self._queue.empty():
                return

    def flush(self, timeout: float = 10.0) -> bool:
        """Send everything queued now; True if the queue drained within `timeout`."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while not self._queue.empty() or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)


def _retry_after(value: str | None, cap: float = 60.0) -> float:
    """Seconds a server asked us to wait (`Retry-After` in seconds), capped; 0 when absent."""
    try:
        return min(cap, max(0.0, float(value))) if value else 0.0
    except ValueError:
        return 0.0
