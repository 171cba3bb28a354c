"""Process-wide server state: the store, the ingestion log and caches derived from them.

Only this process writes the database (DuckDB's file lock), so caches are invalidated
exactly when this process changes flags, segments or keys.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import msgspec

from ramplight import control
from ramplight.core.contract import FlagFacts
from ramplight.settings import Settings
from ramplight.store.base import ApiKey, Store
from ramplight.store.identity import build_index
from ramplight.store.log import IngestLog


@dataclass(frozen=True, slots=True)
class CachedConfig:
    etag: str
    body: bytes


class ServerState:
    def __init__(self, settings: Settings, store: Store, log: IngestLog) -> None:
        self.settings = settings
        self.store = store
        self.log = log
        self._lock = threading.Lock()
        self._configs: dict[str, CachedConfig] = {}
        self._facts: dict[str, dict[str, FlagFacts]] = {}
        self._keys: dict[str, ApiKey] = {}
        self.identities = build_index(store, log.pending_files())
        """Every acknowledged item's identity: resends are duplicates, changed payloads conflicts."""
        self.duplicates = 0
        self.conflicts = 0
        self.guardian: Any = None
        """The server's GuardianThread (set by the app's lifespan)."""

    def invalidate(self) -> None:
        with self._lock:
            self._configs.clear()
            self._facts.clear()
            self._keys.clear()

    def config(self, environment: str) -> CachedConfig:
        cached = self._configs.get(environment)
        if cached is None:
            body = msgspec.json.encode(control.sdk_config(self.store, environment))
            cached = CachedConfig(etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"', body=body)
            with self._lock:
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
        digest = control.hash_key(plaintext) if plaintext else ""
        key = self._keys.get(digest)
        if key is None:
            key = control.authenticate(self.store, plaintext)
            with self._lock:
                self._keys[digest] = key
        return key
