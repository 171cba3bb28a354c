"""The measurement contract: typed exposures, events and eval scores, validated item by item.

`validate_batch` decodes each raw item on its own and checks it against the flags of its
environment, so one bad item is reported (kind, index, field, reason) and the rest are kept.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, NamedTuple, cast

import msgspec

from ramplight.core.errors import FieldProblem, PayloadTooLarge, ValidationError
from ramplight.core.identity import canonical_forms, derived_event_id, identity_keys, payload_hashes

Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
Key = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
JsonObject = dict[str, Any]

MAX_ITEM_BYTES = 16 * 1024
"""An item larger than this is rejected on its own: events carry labels and numbers, not text."""
MAX_STRING_PROPERTY = 1024
"""Longer string values in properties/attributes look like prompts or transcripts: rejected."""
MAX_FUTURE_SKEW = timedelta(hours=1)


# `gc=False`: the collector does not track the items (their fields are decoded JSON and
# strings, never a cycle back to one), so the collections ingestion's hundreds of thousands of
# short-lived items trigger are half as many and walk less (3.30 → 3.15 µs an event judged).
class Exposure(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """The assigned behavior actually ran for `unit_id` (not merely: the flag was evaluated)."""

    ts: Timestamp
    flag_key: Key
    assignment_unit: Key
    unit_id: Id
    assigned_variation: Key
    served_variation: Key
    event_id: Id | None = None
    environment: Key | None = None
    flag_version: int | None = None
    fallback_reason: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    evaluation_reason: Literal["rollout", "rule", "default", "off"] | None = None
    """Why the flag assigned this variation (the SDK's evaluation reason). Only `rollout` units
    were randomized by the phase's weights, not a targeting rule's (staff, say), a default or a
    killed flag's off variation. None (an older SDK, an import without it): taken as `rollout`."""
    behavior: Any = None
    ids: dict[str, str] | None = None
    attributes: JsonObject | None = None
    trace_id: Id | None = None
    sdk: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    received_at: datetime | None = None
    identity: int | None = None
    payload_hash: int | None = None


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """An outcome, guardrail or product signal about a unit."""

    ts: Timestamp
    name: Key
    unit_id: Id
    assignment_unit: Key
    event_id: Id | None = None
    environment: Key | None = None
    value: float | None = None
    ids: dict[str, str] | None = None
    properties: JsonObject | None = None
    flag_key: Key | None = None
    variation: Key | None = None
    trace_id: Id | None = None
    received_at: datetime | None = None
    identity: int | None = None
    payload_hash: int | None = None


Evaluator = Literal["llm_judge", "human", "heuristic", "code"]


class EvalScore(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True, gc=False):
    """An evaluation score (LLM judge, human, heuristic or code) about a unit or a trace."""

    ts: Timestamp
    name: Key
    score: float
    evaluator: Evaluator
    event_id: Id | None = None
    environment: Key | None = None
    unit_id: Id | None = None
    trace_id: Id | None = None
    span_id: Id | None = None
    label: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    evaluator_version: Annotated[str, msgspec.Meta(max_length=100)] | None = None
    flag_key: Key | None = None
    variation: Key | None = None
    comment: Annotated[str, msgspec.Meta(max_length=MAX_STRING_PROPERTY)] | None = None
    response_id: Id | None = None
    """The provider's id of the judged generation (`gen_ai.response.id`): joins the score to its
    span, and through it to the unit, when the score carries no unit or span of its own."""
    run_id: Id | None = None
    """The offline evaluation run the score belongs to (`ramplight gate --run`)."""
    received_at: datetime | None = None
    identity: int | None = None
    payload_hash: int | None = None


Item = Exposure | Event | EvalScore
KIND_TYPES: dict[str, type[Exposure] | type[Event] | type[EvalScore]] = {
    "exposures": Exposure,
    "events": Event,
    "evals": EvalScore,
}


_DECODERS = {kind: msgspec.json.Decoder(tp) for kind, tp in KIND_TYPES.items()}


class Batch(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A request body for ingestion; items are decoded one by one for precise errors."""

    exposures: list[msgspec.Raw] = msgspec.field(default_factory=list)
    events: list[msgspec.Raw] = msgspec.field(default_factory=list)
    evals: list[msgspec.Raw] = msgspec.field(default_factory=list)


_batch_decoder = msgspec.json.Decoder(Batch)
_encoder = msgspec.json.Encoder()
_STRUCTURE = re.compile(rb'["\[\]{}]')
_STRING_END = re.compile(rb'["\\]')
_WHITESPACE = b" \t\r\n"


def split_batch(body: bytes) -> dict[str, list[bytes]]:
    """The item bytes of each kind in a batch body, items not decoded yet, so one malformed item
    (invalid UTF-8, a lone surrogate, a bad escape) cannot take its batch down with it.

    Raises ValidationError only when the envelope itself is not `{kind: [item, …], …}`."""
    try:
        batch = _batch_decoder.decode(body)
        return {"exposures": batch.exposures, "events": batch.events, "evals": batch.evals}  # type: ignore[dict-item]
    except msgspec.ValidationError as exc:
        raise ValidationError(f"request body is not a batch: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return _split_slowly(body)


def _skip(body: bytes, i: int) -> int:
    while i < len(body) and body[i] in _WHITESPACE:
        i += 1
    return i


def _string_end(body: bytes, i: int) -> int:
    """Index after the string starting at `i` (a quote)."""
    i += 1
    while True:
        found = _STRING_END.search(body, i)
        if found is None:
            raise ValidationError("request body is not a batch: a string never ends")
        if found.group() == b"\\":
            i = found.end() + 1
            continue
        return found.end()


def _value_end(body: bytes, i: int) -> int:
    """Index after the JSON value starting at `i`, found by structure alone (nothing decoded)."""
    if body[i : i + 1] == b'"':
        return _string_end(body, i)
    if body[i : i + 1] not in (b"{", b"["):
        while i < len(body) and body[i] not in b",]}" and body[i] not in _WHITESPACE:
            i += 1
        return i
    depth = 0
    while True:
        found = _STRUCTURE.search(body, i)
        if found is None:
            raise ValidationError("request body is not a batch: an item never ends")
        token = found.group()
        if token == b'"':
            i = _string_end(body, found.start())
            continue
        depth += 1 if token in (b"{", b"[") else -1
        i = found.end()
        if depth == 0:
            return i


def _split_slowly(body: bytes) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {kind: [] for kind in KIND_TYPES}
    i = _skip(body, 0)
    if body[i : i + 1] != b"{":
        raise ValidationError("request body is not a batch: expected a JSON object")
    i = _skip(body, i + 1)
    while body[i : i + 1] != b"}":
        if body[i : i + 1] != b'"':
            raise ValidationError(f"request body is not a batch: expected a key at byte {i}")
        end = _string_end(body, i)
        try:
            kind = msgspec.json.decode(body[i:end], type=str)
        except (msgspec.DecodeError, UnicodeDecodeError) as exc:
            raise ValidationError(f"request body is not a batch: bad key at byte {i}") from exc
        if kind not in out:
            raise ValidationError.at(kind, "unknown kind (exposures, events or evals)")
        i = _skip(body, end)
        if body[i : i + 1] != b":":
            raise ValidationError(f"request body is not a batch: expected ':' at byte {i}")
        i = _skip(body, i + 1)
        if body[i : i + 1] != b"[":
            raise ValidationError.at(kind, "must be a list of items")
        i = _skip(body, i + 1)
        while body[i : i + 1] != b"]":
            start = i
            i = _value_end(body, i)
            out[kind].append(body[start:i])
            i = _skip(body, i)
            if body[i : i + 1] == b",":
                i = _skip(body, i + 1)
            elif body[i : i + 1] != b"]":
                raise ValidationError(f"request body is not a batch: expected ',' or ']' at byte {i}")
        i = _skip(body, i + 1)
        if body[i : i + 1] == b",":
            i = _skip(body, i + 1)
        elif body[i : i + 1] != b"}":
            raise ValidationError(f"request body is not a batch: expected ',' or '}}' at byte {i}")
    if _skip(body, i + 1) != len(body):
        raise ValidationError("request body is not a batch: data after the object")
    return out


@dataclass(frozen=True, slots=True)
class FlagFacts:
    """What ingestion needs to know of a flag in one environment."""

    assignment_unit: str
    variations: frozenset[str]


@dataclass(frozen=True, slots=True)
class AcceptedItems:
    """One kind's accepted items, column by column in request order: what the identity check
    and the log need, without a stamped copy of each item."""

    items: list[Item] = field(default_factory=list)
    """As decoded: the server's fields are in the other columns."""
    indexes: list[int] = field(default_factory=list)
    """Each item's index in its kind's list of the request."""
    event_ids: list[str] = field(default_factory=list)
    identities: list[int] = field(default_factory=list)
    payload_hashes: list[int] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    """Each item as the log stores it (no newline): its canonical form plus the server's fields."""


@dataclass(frozen=True, slots=True)
class ValidatedBatch:
    kinds: dict[str, AcceptedItems]
    problems: tuple[FieldProblem, ...]
    environment: str
    received_at: datetime

    @property
    def accepted(self) -> dict[str, list[Item]]:
        """The accepted items stamped as stored (environment, received_at, event_id, hashes)."""
        replace = msgspec.structs.replace
        return {
            kind: [
                replace(
                    item,
                    event_id=event_id,
                    environment=self.environment,
                    received_at=self.received_at,
                    identity=identity,
                    payload_hash=payload,
                )
                for item, event_id, identity, payload in zip(
                    a.items, a.event_ids, a.identities, a.payload_hashes, strict=True
                )
            ]
            for kind, a in self.kinds.items()
        }

    @property
    def accepted_count(self) -> int:
        return sum(len(a.items) for a in self.kinds.values())


def _decode_problem(exc: msgspec.ValidationError | msgspec.DecodeError) -> tuple[str, str]:
    text = str(exc)
    reason, _, path = text.partition(" - at `")
    field = path.rstrip("`").removeprefix("$").lstrip(".")
    if reason.startswith("Object contains unknown field"):
        field = reason.split("`")[1]
        reason = "unknown field (the contract's names: see docs/contract.md)"
    elif reason.startswith("Object missing required field"):
        field = reason.split("`")[1]
        reason = "required"
    return field, reason


def snake_case(name: str) -> str:
    """flagKey, FlagKey, flag-key → flag_key: how other tools spell the contract's names."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).replace("-", "_")
    return name.lower()


def _unknown_fields(kind: str, data: msgspec.Raw | bytes) -> list[tuple[str, str]]:
    """Every field of the item the contract does not know, each with the contract's name when
    one is close (`flagKey` → `flag_key`), so a mapping is fixed in one round."""
    try:
        item = msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return []
    if not isinstance(item, dict):
        return []
    known = KIND_TYPES[kind].__struct_fields__
    out = []
    for name in item:
        if name in known:
            continue
        snake = snake_case(name)
        close = [snake] if snake in known else difflib.get_close_matches(snake, known, n=1, cutoff=0.75)
        hint = (
            f"; the contract's name is {close[0]!r}"
            if close
            else " (the contract's names: see docs/contract.md)"
        )
        out.append((name, "unknown field" + hint))
    return out


def _long_string(values: Any, path: str = "") -> str | None:
    """The path of the first string longer than MAX_STRING_PROPERTY, at any depth."""
    if isinstance(values, str):
        return path if len(values) > MAX_STRING_PROPERTY else None
    items: Any = (
        values.items() if isinstance(values, dict) else enumerate(values) if isinstance(values, list) else ()
    )
    for key, value in items:
        found = _long_string(value, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _contract_problem(
    kind: str,
    item: Item,
    environment: str,
    flags: Mapping[str, FlagFacts],
    latest: datetime,
    allowed_properties: frozenset[str] | None,
    short: bool = False,
) -> tuple[str, str] | None:
    """The first contract problem of a decoded item; `latest`: the latest `ts` accepted (now
    plus the allowed skew); `short`: its JSON is too small to hold a string past
    MAX_STRING_PROPERTY, so the text scan is skipped (the common case)."""
    if item.environment is not None and item.environment != environment:
        return "environment", f"is {item.environment!r} but this batch is for {environment!r}"
    if item.ts > latest:
        return "ts", f"{item.ts.isoformat()} is more than an hour in the future"
    if type(item) is Exposure:
        facts = flags.get(item.flag_key)
        if facts is None:
            return "flag_key", f"no flag {item.flag_key!r} in environment {environment!r}"
        if item.assignment_unit != facts.assignment_unit:
            return "assignment_unit", (
                f"flag {item.flag_key!r} is assigned by {facts.assignment_unit!r}, "
                f"not {item.assignment_unit!r}"
            )
        for attr in ("assigned_variation", "served_variation"):
            if getattr(item, attr) not in facts.variations:
                return attr, f"flag {item.flag_key!r} has no variation {getattr(item, attr)!r}"
        if item.served_variation != item.assigned_variation and not item.fallback_reason:
            return "fallback_reason", "required when served_variation differs from assigned"
        field = None if short else _long_string(item.attributes)
        if field is not None:
            return f"attributes.{field}", f"longer than {MAX_STRING_PROPERTY} characters"
        field = None if short else _long_string(item.behavior)
        if field is not None:
            return f"behavior.{field}".rstrip("."), f"longer than {MAX_STRING_PROPERTY} characters"
        if allowed_properties is not None and item.attributes:
            extra = sorted(set(item.attributes) - allowed_properties)
            if extra:
                return f"attributes.{extra[0]}", "not in the property allowlist"
        return None
    # `type() is` rather than isinstance: a miss of isinstance on a Struct class costs ~0.3 µs,
    # a tenth of an item's whole budget on the ingestion path. Items are never subclassed.
    item = cast("Event | EvalScore", item)
    if type(item) is Event:
        field = None if short else _long_string(item.properties)
        if field is not None:
            return f"properties.{field}", f"longer than {MAX_STRING_PROPERTY} characters"
        if allowed_properties is not None and item.properties:
            extra = sorted(set(item.properties) - allowed_properties)
            if extra:
                return f"properties.{extra[0]}", "not in the property allowlist"
    if (
        type(item) is EvalScore
        and item.unit_id is None
        and item.trace_id is None
        and item.response_id is None
    ):
        return "unit_id", "an eval score needs unit_id, trace_id or response_id to be joinable"
    if item.flag_key is not None:
        facts = flags.get(item.flag_key)
        if facts is None:
            return "flag_key", f"no flag {item.flag_key!r} in environment {environment!r}"
        if type(item) is Event and item.assignment_unit != facts.assignment_unit:
            return "assignment_unit", (
                f"flag {item.flag_key!r} is assigned by {facts.assignment_unit!r}, "
                f"not {item.assignment_unit!r}"
            )
        if item.variation is not None and item.variation not in facts.variations:
            return "variation", f"flag {item.flag_key!r} has no variation {item.variation!r}"
    return None


def log_lines(
    canonicals: Sequence[bytes],
    environment: str,
    event_ids: Sequence[str],
    identities: Sequence[int],
    payloads: Sequence[int],
    now: datetime,
) -> list[bytes]:
    """Each item's log line: its canonical form with the server's fields spliced in before its
    closing brace (JSON keys are matched by name when loading), encoded once per batch."""
    head = b',"environment":%b,"event_id":' % _encoder.encode(environment)
    tail = b',"received_at":%b}' % _encoder.encode(now)
    # The event ids and both hashes of the batch are encoded in one call each (their decimal
    # digits by msgspec: `%d` on 64-bit ints cost 1.1 k instructions an item more).
    encoded = _encoder.encode_lines([*event_ids, *identities, *payloads]).split(b"\n")
    n = len(canonicals)
    return [
        b"".join(
            (canonical[:-1], head, event_id, b',"identity":', identity, b',"payload_hash":', payload, tail)
        )
        for canonical, event_id, identity, payload in zip(
            canonicals, encoded[:n], encoded[n : 2 * n], encoded[2 * n : 3 * n], strict=True
        )
    ]


def validate_batch(
    batch: Mapping[str, Sequence[msgspec.Raw | bytes]],
    environment: str,
    flags: Mapping[str, FlagFacts],
    now: datetime,
    allowed_properties: frozenset[str] | None = None,
) -> ValidatedBatch:
    """Decode and check every item; give each accepted one its `environment`, `received_at`,
    a stable `event_id`, its identity and payload hashes (core/identity.py) and its log line.

    An item without `event_id` gets one derived from its canonical form, so a retry is
    recognised as the same item whatever its byte layout.
    """
    kinds = {kind: AcceptedItems() for kind in KIND_TYPES}
    problems: list[FieldProblem] = []
    latest = now + MAX_FUTURE_SKEW
    for kind, raws in batch.items():
        accepted = kinds[kind]
        items = accepted.items
        decode = _DECODERS[kind].decode
        for index, data in enumerate(raws):
            size = len(data)
            try:  # inline, the usual item: a call to _decode_item for each cost ~0.4 k instructions
                if size > MAX_ITEM_BYTES:
                    raise _TooLarge
                item: Item = decode(data)
            except Exception:  # _decode_item names the problem (or re-raises what it does not know)
                named = _decode_item(kind, index, data, problems)
                if named is None:
                    continue
                item = named
            short = size <= MAX_STRING_PROPERTY
            problem = _contract_problem(kind, item, environment, flags, latest, allowed_properties, short)
            if problem is not None:
                problems.append(FieldProblem(problem[0], problem[1], index, kind))
                continue
            items.append(item)
            accepted.indexes.append(index)
        if not items:
            continue
        canonicals = canonical_forms(items)
        event_ids = [
            item.event_id or derived_event_id(environment, kind, canonical)
            for item, canonical in zip(items, canonicals, strict=True)
        ]
        accepted.event_ids.extend(event_ids)
        accepted.identities.extend(identity_keys(environment, kind, event_ids))
        accepted.payload_hashes.extend(payload_hashes(canonicals))
        accepted.lines.extend(
            log_lines(canonicals, environment, event_ids, accepted.identities, accepted.payload_hashes, now)
        )
    return ValidatedBatch(kinds=kinds, problems=tuple(problems), environment=environment, received_at=now)


class BatchRequest(NamedTuple):
    """An `/ingest/batch` body with what judging it needs: the same in the server's thread and
    in an ingestion worker (server/workers.py)."""

    body: bytes
    environment: str
    flags: Mapping[str, FlagFacts]
    now: datetime
    allowed_properties: frozenset[str] | None
    max_items: int


def judge_batch(request: BatchRequest) -> ValidatedBatch:
    """A whole `/ingest/batch` body split and judged as far as it can be without the identity
    index: in the server's thread or in an ingestion worker (server/workers.py), the same way.

    Raises ValidationError for a body that is not a batch, PayloadTooLarge past `max_items`."""
    batch = split_batch(request.body)
    items = sum(len(v) for v in batch.values())
    if items > request.max_items:
        raise PayloadTooLarge(
            f"batch has {items} items; the limit is {request.max_items} (RAMPLIGHT_MAX_BATCH_ITEMS)"
        )
    return validate_batch(batch, request.environment, request.flags, request.now, request.allowed_properties)


class _TooLarge(Exception):
    """An item past MAX_ITEM_BYTES, sent to `_decode_item` to be named."""


def _decode_item(
    kind: str, index: int, data: msgspec.Raw | bytes, problems: list[FieldProblem]
) -> Item | None:
    """The item decoded on its own, or None with its problem recorded."""
    size = len(data)
    if size > MAX_ITEM_BYTES:
        problems.append(FieldProblem("", f"item is {size} bytes; the limit is {MAX_ITEM_BYTES}", index, kind))
        return None
    try:
        return _DECODERS[kind].decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        field, reason = _decode_problem(exc)
        unknown = _unknown_fields(kind, data) if reason.startswith("unknown field") else []
        if unknown:
            problems.extend(FieldProblem(f, r, index, kind) for f, r in unknown)
        else:
            problems.append(FieldProblem(field, reason, index, kind))
    except UnicodeDecodeError as exc:
        problems.append(FieldProblem("", f"not valid UTF-8 (byte {exc.start} of the item)", index, kind))
    except RecursionError:
        problems.append(FieldProblem("", "nested too deeply", index, kind))
    return None
