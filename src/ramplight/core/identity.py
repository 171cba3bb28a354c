"""What makes two evidence items the same item.

An item's identity is (environment, kind, `event_id`). Without an `event_id` from the client,
one is derived from the item's canonical form — its decoded fields, dictionary keys sorted,
timestamps in UTC — so a resend with other whitespace, key order or time-zone notation is the
same item. The payload hash is the canonical form without the identity: the same identity with
another payload is a conflict, never a silent drop (docs/contract.md).
"""

from __future__ import annotations

from datetime import UTC

import msgspec
import xxhash

_canonical = msgspec.json.Encoder(order="sorted")
_SERVER_FIELDS = {
    "event_id": None,
    "environment": None,
    "received_at": None,
    "identity": None,
    "payload_hash": None,
}


def canonical_form(item: msgspec.Struct) -> bytes:
    """The item's fields the client sent, without its identity, in one byte layout."""
    fields = dict(_SERVER_FIELDS)
    ts = getattr(item, "ts", None)
    if ts is not None:
        fields["ts"] = ts.astimezone(UTC)
    return _canonical.encode(msgspec.structs.replace(item, **fields))


def payload_hash(canonical: bytes) -> int:
    """64-bit hash of an item's canonical form (its payload)."""
    return xxhash.xxh3_64_intdigest(canonical)


def derived_event_id(environment: str, kind: str, canonical: bytes) -> str:
    """The `event_id` of an item the client sent without one."""
    return xxhash.xxh3_128_hexdigest(b"%s\0%s\0%s" % (environment.encode(), kind.encode(), canonical))


def identity_key(environment: str, kind: str, event_id: str) -> int:
    """64-bit key of (environment, kind, event_id) for the in-memory identity index."""
    return xxhash.xxh3_64_intdigest(b"%s\0%s\0%s" % (environment.encode(), kind.encode(), event_id.encode()))
