"""Process-wide server state: the store, the ingestion log and caches derived from them.

Caches are invalidated when this process changes flags, segments, plans or keys, and — with a
control plane shared by several processes (PostgreSQL) — when any other process commits a
change: the store's `listen` calls `invalidate` within a fraction of a second of the commit.
Each invalidation also wakes the SDK config streams (`ConfigFeed`), so a kill, a rollback or a
guardian action reaches every connected SDK, whichever process made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import logging
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ramplight import control
from ramplight.core.contract import FlagFacts
from ramplight.core.keys import hash_key
from ramplight.core.otlp import AttributePolicy
from ramplight.server.workers import IngestWorkers
from ramplight.settings import Settings
from ramplight.store.base import ApiKey, Store
from ramplight.store.identity import build_index
from ramplight.store.log import IngestLog

log = logging.getLogger("ramplight.server")


def deflated(data: bytes) -> bytes:
    """`data` as raw deflate blocks that end in a sync flush, from a compressor of its own: such
    runs can follow one another in any order and make one valid deflate stream (each ends on a
    byte boundary, none marked final, none refers to bytes before its own)."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@dataclass(slots=True)
class CachedConfig:
    """One config version as served: its JSON, the same gzipped once (for every poll), and its
    Server-Sent Event (for every stream), deflated once the first gzip stream needs it."""

    etag: str
    body: bytes
    gzipped: bytes
    event: bytes = b""
    """`event: config`, the ETag as `id` and the body as `data` (compact JSON: one line)."""
    _deflated_event: bytes | None = None
    _deflating: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.event = b"event: config\nid: " + self.etag.encode() + b"\ndata: " + self.body + b"\n\n"

    @property
    def gzip_etag(self) -> str:
        """A representation's strong ETag changes with its content coding (RFC 9110 §8.8.3)."""
        return self.etag[:-1] + '-gzip"'

    @property
    def deflated_event(self) -> bytes | None:
        """The event deflated (`deflated`), if a stream has needed it yet."""
        return self._deflated_event

    def deflate_event(self) -> bytes:
        """The event deflated, computed once however many streams ask at the same moment."""
        with self._deflating:
            if self._deflated_event is None:
                self._deflated_event = deflated(self.event)
            return self._deflated_event


class ConfigFeed:
    """Wakes the SDK config streams when the config may have changed.

    `changed()` is called from any thread (request threads, the guardian, the PostgreSQL
    listener); a stream awaits `next_change()` on the event loop. One future per loop is shared
    by every stream on it, so a change costs one thread-safe call, not one per connection. A
    stream takes the future *before* it reads the config, so a change that lands between the
    read and the wait is never missed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[asyncio.AbstractEventLoop, asyncio.Future[None]] = {}
        self.closed = False
        self.streams = 0
        """Streams connected now (a gauge for /healthz and the fan-out benchmark)."""

    def next_change(self) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        with self._lock:
            future = self._waiting.get(loop)
            if future is None or future.done():
                future = self._waiting[loop] = loop.create_future()
        if self.closed:
            _settle(future)
        return future

    def changed(self) -> None:
        with self._lock:
            waiting, self._waiting = self._waiting, {}
        for loop, future in waiting.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits on it any more
                loop.call_soon_threadsafe(_settle, future)

    def close(self) -> None:
        """The server is stopping: every stream ends now instead of holding the shutdown."""
        self.closed = True
        self.changed()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ServerState:
    def __init__(self, settings: Settings, store: Store, log: IngestLog) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self._lock = threading.Lock()
        self._configs: dict[str, CachedConfig] = {}
        self._building: dict[str, threading.Lock] = {}
        """Environment → the lock a thread holds while it builds that config."""
        self._facts: dict[str, dict[str, FlagFacts]] = {}
        self._keys: dict[str, ApiKey] = {}
        self._environments: frozenset[str] | None = None
        self._generation = 0
        """Bumped by every invalidation: a config built across one is not cached (it may be stale)."""
        self.feed = ConfigFeed()
        self.identities = build_index(store, log.pending_files())
        """Every acknowledged item's identity: resends are duplicates, changed payloads conflicts."""
        self.duplicates = 0
        self.spans_rejected = 0
        self.span_attributes_dropped = 0
        self.span_policy = AttributePolicy(settings.span_attributes_allow, settings.span_attributes_deny)
        """Which span attributes intake keeps (prompt and completion text is dropped)."""
        self.workers = (
            IngestWorkers(
                settings.otlp_workers, settings.span_attributes_allow, settings.span_attributes_deny
            )
            if settings.otlp_workers > 0
            else None
        )
        """Processes that judge large OTLP trace requests and event batches beside the event loop
        (None: none)."""
        self.evaluations_not_exposures = 0
        self.log_records_ignored = 0
        self.conflicts = 0
        self.guardian: Any = None
        """The server's GuardianThread (set by the app's lifespan)."""
        listen = getattr(store, "listen", None)
        self.stop_listening = listen(self.invalidate) if callable(listen) else None

    CATCH_UP_SECONDS = 10.0

    def catch_up(self) -> dict[str, Any] | None:
        """Load what was acknowledged before a readout; when loading is far behind, wait at most
        CATCH_UP_SECONDS and go on with what is loaded. Returns how far behind the evidence is
        *as the readout starts* (None: everything acknowledged is loaded) — asked after the
        readout, a load that finished meanwhile would hide that it ran on part of the evidence."""
        try:
            self.log.flush(timeout=self.CATCH_UP_SECONDS)
            return None
        except TimeoutError:
            pressure = self.log.pressure()
            log.warning("readout on partly loaded evidence: %d bytes waiting", pressure.backlog_bytes)
        except Exception:
            log.exception("readout on partly loaded evidence: a segment failed to load")
        return self.loading()

    def loading(self) -> dict[str, Any] | None:
        """How far loading is behind, when it is; None when everything acknowledged is loaded."""
        pressure = self.log.pressure()
        if not pressure.backlog_bytes:
            return None
        return {
            "behind_bytes": pressure.backlog_bytes,
            "behind_items": pressure.backlog_items,
            "oldest_seconds": round(pressure.oldest_seconds, 1),
            "note": "this readout covers only the evidence loaded so far",
        }

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._configs.clear()
            self._facts.clear()
            self._keys.clear()
            self._environments = None
        self.feed.changed()

    def known_environments(self) -> frozenset[str] | None:
        """The environments' keys if they are cached (no store access: safe on the event loop)."""
        return self._environments

    def environments(self) -> frozenset[str]:
        """The environments' keys, read from the store when not cached (an invalidation drops them)."""
        with self._lock:
            generation = self._generation
        keys = frozenset(e.key for e in self.store.list_environments())
        with self._lock:
            if generation == self._generation:  # read across an invalidation: not cached
                self._environments = keys
        return keys

    def cached_config(self, environment: str) -> CachedConfig | None:
        """The environment's config if it is cached (no store access: safe on the event loop)."""
        return self._configs.get(environment)

    def config(self, environment: str) -> CachedConfig:
        cached = self._configs.get(environment)
        if cached is not None:
            return cached
        # One build at a time: after a change every open stream wants the new config at once,
        # and each would otherwise read the store and compress the body itself.
        with self._lock:
            building = self._building.setdefault(environment, threading.Lock())
        with building:
            return self._build_config(environment)

    def _build_config(self, environment: str) -> CachedConfig:
        cached = self._configs.get(environment)  # built while this thread waited
        if cached is None:
            generation = self._generation
            body = msgspec.json.encode(control.sdk_config(self.store, environment))
            cached = CachedConfig(
                etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                body=body,
                gzipped=gzip.compress(body, compresslevel=6, mtime=0),
            )
            with self._lock:
                # A change committed while this was built invalidated it already: do not cache
                # the older config over the newer one (a stream would serve it until the next change).
                if generation == self._generation:
                    self._configs[environment] = cached
        return cached

    def facts(self, environment: str) -> dict[str, FlagFacts]:
        facts = self._facts.get(environment)
        if facts is None:
            facts = control.flag_facts(self.store, environment)
            with self._lock:
                self._facts[environment] = facts
        return facts

    def authenticate(self, plaintext: str | None) -> ApiKey:
        digest = hash_key(plaintext) if plaintext else ""
        key = self._keys.get(digest)
        if key is None:
            from ramplight.server.auth import authenticate  # auth's dependencies need this module

            key = authenticate(self.store, plaintext)
            with self._lock:
                self._keys[digest] = key
        return key
