"""What makes two evidence items the same item.

An item's identity is (environment, kind, `event_id`). Without an `event_id` from the client,
one is derived from the item's canonical form — its decoded fields, dictionary keys sorted,
timestamps in UTC — so a resend with other whitespace, key order or time-zone notation is the
same item. The payload hash is the canonical form without the identity: the same identity with
another payload is a conflict, never a silent drop (docs/contract.md).

Ingestion computes these for a whole batch at once (one encoder call per kind, one hashing pass),
so the functions come in batch form; the bytes are the same as item by item.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

import msgspec
import xxhash

_canonical = msgspec.json.Encoder(order="sorted")
_SERVER_FIELDS = ("event_id", "environment", "received_at", "identity", "payload_hash")


def _canonical_view(item: Any) -> msgspec.Struct:
    """The item with its server-stamped fields and identity unset and `ts` in UTC: only what
    the client sent. No copy when there is nothing to change."""
    if (
        item.environment is None
        and item.received_at is None
        and item.identity is None
        and item.payload_hash is None
        and item.ts.tzinfo is UTC
    ):  # the usual item: at most an event_id to leave out
        return item if item.event_id is None else msgspec.structs.replace(item, event_id=None)  # type: ignore[no-any-return]
    fields: dict[str, Any] = dict.fromkeys(_SERVER_FIELDS)
    fields["ts"] = item.ts.astimezone(UTC)
    return msgspec.structs.replace(item, **fields)  # type: ignore[no-any-return]


def canonical_forms(items: Sequence[msgspec.Struct]) -> list[bytes]:
    """Each item's fields the client sent, without its identity, in one byte layout (JSON with
    keys sorted at every depth, no newline: JSON text never holds a raw one).

    One `encode` per item: `encode_lines` and a split of its output cost 2.8 k more
    instructions an item (callgrind), the split scanning every byte in Python's loop."""
    encode = _canonical.encode
    return [encode(_canonical_view(i)) for i in items]


def canonical_form(item: msgspec.Struct) -> bytes:
    """One item's canonical form, as `canonical_forms` gives it."""
    return _canonical.encode(_canonical_view(item))


def payload_hashes(canonicals: Sequence[bytes]) -> list[int]:
    """64-bit hash of each item's canonical form (its payload)."""
    return list(map(xxhash.xxh3_64_intdigest, canonicals))


def derived_event_id(environment: str, kind: str, canonical: bytes) -> str:
    """The `event_id` of an item the client sent without one."""
    return xxhash.xxh3_128_hexdigest(b"%s\0%s\0%s" % (environment.encode(), kind.encode(), canonical))


def identity_key(environment: str, kind: str, event_id: str) -> int:
    """64-bit key of (environment, kind, event_id) for the in-memory identity index."""
    return xxhash.xxh3_64_intdigest(b"%s\0%s\0%s" % (environment.encode(), kind.encode(), event_id.encode()))


def identity_keys(environment: str, kind: str, event_ids: Sequence[str]) -> list[int]:
    """`identity_key` of each event id of one environment and kind."""
    prefix = b"%s\0%s\0" % (environment.encode(), kind.encode())
    digest = xxhash.xxh3_64_intdigest
    return [digest(prefix + e.encode()) for e in event_ids]
