"""The identity index: every stored or acknowledged item's identity and payload hash, in memory,
so ingestion answers a resend as a duplicate and a changed payload as a conflict before anything
is written, at any time distance, without an index inside the evidence tables.

Keys are 64-bit hashes of (environment, kind, event_id) (core/identity.py): a sorted numpy array
of everything loaded at start plus a dict of what arrived since, merged now and then. 16 bytes an
item (10 M items: 160 MB). Two different identities share a 64-bit key with probability about
n²/2⁶⁵ (3·10⁻⁶ at 10 M items); such a pair is answered as a conflict — visible, never dropped.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import msgspec
import numpy as np

from ramplight.core.contract import ValidatedBatch
from ramplight.core.errors import FieldProblem

if TYPE_CHECKING:
    from ramplight.store.base import EvidenceKind, Store

Verdict = Literal["new", "duplicate", "conflict"]

UNKNOWN_PAYLOAD = 0
"""Rows stored before payload hashes existed: a resend of one is a duplicate, not a conflict."""

MERGE_AT = 500_000
"""Fold the recent dict into the sorted arrays once it holds this many keys."""


@dataclass
class IdentityIndex:
    _keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    _payloads: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    _recent: dict[int, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    def load(self, keys: np.ndarray, payloads: np.ndarray) -> None:
        """Add stored identities in bulk (at start); later duplicates of a key keep the first."""
        with self._lock:
            all_keys = np.concatenate([self._keys, keys.astype(np.uint64, copy=False)])
            all_payloads = np.concatenate([self._payloads, payloads.astype(np.uint64, copy=False)])
            order = np.argsort(all_keys, kind="stable")
            sorted_keys = all_keys[order]
            first = np.ones(len(sorted_keys), dtype=bool)
            first[1:] = sorted_keys[1:] != sorted_keys[:-1]
            self._keys = sorted_keys[first]
            self._payloads = all_payloads[order][first]

    def admit(self, keys: Sequence[int], payloads: Sequence[int]) -> list[Verdict]:
        """Judge each item against everything seen (and earlier items of the same call); record
        the new ones. Call `forget` with the new keys if they could not be made durable."""
        if not keys:
            return []
        with self._lock:
            if self._all_new(keys):
                self._recent.update(zip(keys, payloads, strict=True))
                if len(self._recent) >= MERGE_AT:
                    self._merge()
                return ["new"] * len(keys)
            stored = self._lookup(np.fromiter(keys, dtype=np.uint64, count=len(keys)))
            verdicts: list[Verdict] = []
            recent = self._recent
            for key, payload, known in zip(keys, payloads, stored, strict=True):
                seen = recent.get(key, known)
                if seen is None:
                    recent[key] = payload
                    verdicts.append("new")
                elif seen in (payload, UNKNOWN_PAYLOAD):
                    verdicts.append("duplicate")
                else:
                    verdicts.append("conflict")
            if len(recent) >= MERGE_AT:
                self._merge()
            return verdicts

    def forget(self, keys: Iterable[int]) -> None:
        """Undo `admit` for items that were not acknowledged (a failed write)."""
        with self._lock:
            for key in keys:
                if self._recent.pop(key, None) is None:
                    position = int(np.searchsorted(self._keys, np.uint64(key)))
                    if position < len(self._keys) and int(self._keys[position]) == key:
                        self._keys = np.delete(self._keys, position)
                        self._payloads = np.delete(self._payloads, position)

    def _all_new(self, keys: Sequence[int]) -> bool:
        """Whether no key was seen before nor repeats within `keys`: judged for the whole batch
        at once (sets and one sorted search), the usual case of a batch of new items."""
        unique = set(keys)
        if len(unique) != len(keys) or not self._recent.keys().isdisjoint(unique):
            return False
        if not len(self._keys):
            return True
        wanted = np.fromiter(keys, dtype=np.uint64, count=len(keys))
        positions = np.searchsorted(self._keys, wanted)
        positions[positions >= len(self._keys)] = 0
        return not bool((self._keys[positions] == wanted).any())

    def _lookup(self, keys: np.ndarray) -> list[int | None]:
        if not len(self._keys):
            return [None] * len(keys)
        positions = np.searchsorted(self._keys, keys)
        positions[positions >= len(self._keys)] = 0
        hit = self._keys[positions] == keys
        payloads = self._payloads[positions]
        return [int(p) if h else None for h, p in zip(hit.tolist(), payloads.tolist(), strict=True)]

    def _merge(self) -> None:
        keys = np.fromiter(self._recent.keys(), dtype=np.uint64, count=len(self._recent))
        payloads = np.fromiter(self._recent.values(), dtype=np.uint64, count=len(self._recent))
        all_keys = np.concatenate([self._keys, keys])
        order = np.argsort(all_keys, kind="stable")
        self._keys = all_keys[order]
        self._payloads = np.concatenate([self._payloads, payloads])[order]
        self._recent = {}


@dataclass(frozen=True, slots=True)
class Admitted:
    """A validated batch after the identity check: what to write, and what was not new."""

    accepted: dict[str, int]
    """How many items of each kind are new."""
    lines: dict[str, list[bytes]]
    """The new items' log lines, by kind."""
    duplicates: dict[str, int]
    conflicts: tuple[FieldProblem, ...]
    keys: tuple[int, ...]
    """Identity keys admitted: `forget` them if the write fails."""

    def chunks(self) -> dict[EvidenceKind, bytes]:
        """NDJSON bytes per kind, ready for `IngestLog.append`."""
        # One join with a last empty line: `join(…) + b"\n"` would copy the whole chunk again.
        return {kind: b"\n".join([*lines, b""]) for kind, lines in self.lines.items() if lines}  # type: ignore[misc]


def admit_batch(index: IdentityIndex, validated: ValidatedBatch) -> Admitted:
    """Keep each item whose identity is new; count resends; name each conflicting item."""
    accepted: dict[str, int] = {}
    lines: dict[str, list[bytes]] = {}
    duplicates: dict[str, int] = {}
    conflicts: list[FieldProblem] = []
    keys: list[int] = []
    for kind, items in validated.kinds.items():
        verdicts = index.admit(items.identities, items.payload_hashes)
        duplicates[kind] = 0
        if verdicts.count("new") == len(verdicts):
            lines[kind] = items.lines
            keys.extend(items.identities)
            accepted[kind] = len(items.lines)
            continue
        kept = lines[kind] = []
        for position, event_id, identity, line, verdict in zip(
            items.indexes, items.event_ids, items.identities, items.lines, verdicts, strict=True
        ):
            if verdict == "new":
                kept.append(line)
                keys.append(identity)
            elif verdict == "duplicate":
                duplicates[kind] += 1
            else:
                conflicts.append(
                    FieldProblem(
                        "event_id",
                        f"{event_id!r} was already received with a different payload (conflict); "
                        "send a new event_id for a new item",
                        position,
                        kind,
                    )
                )
        accepted[kind] = len(kept)
    return Admitted(accepted, lines, duplicates, tuple(conflicts), tuple(keys))


class _Stamp(msgspec.Struct):
    """The two fields of a log line the index needs (the rest is skipped unparsed)."""

    identity: int | None = None
    payload_hash: int | None = None


_stamp_decoder = msgspec.json.Decoder(_Stamp)


def build_index(store: Store, pending: Sequence[Path] = ()) -> IdentityIndex:
    """Everything acknowledged: files of log segments not yet loaded (read first, so a segment
    loading meanwhile is seen at least once), then the store."""
    index = IdentityIndex()
    for path in pending:
        try:
            lines = path.read_bytes().splitlines()
        except FileNotFoundError:
            continue  # loaded (and deleted) meanwhile: the store read below has it
        stamps = [_stamp_decoder.decode(line) for line in lines if line.strip()]
        known = [s for s in stamps if s.identity is not None]
        if known:
            index.load(
                np.array([s.identity for s in known], dtype=np.uint64),
                np.array([s.payload_hash or UNKNOWN_PAYLOAD for s in known], dtype=np.uint64),
            )
    keys, payloads = store.identities()
    index.load(keys, payloads)
    return index
