"""Control-plane operations shared by the HTTP server and the CLI.

Each function validates, computes the new state with `core`, and writes it with its
`flag_changes` rows in one store transaction. Callers parse input and format output only.
"""

from __future__ import annotations

import difflib
import hashlib
import secrets
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from ramplight.core.audit import ChangeAction, FlagChange
from ramplight.core.bucketing import SLOTS, percent_to_slots, slots_to_percent
from ramplight.core.contract import FlagFacts
from ramplight.core.errors import AuthError, NotFoundError, ValidationError
from ramplight.core.flags import (
    KEY_PATTERN,
    Flag,
    Rollout,
    SdkConfig,
    Segment,
    assignment_unit_change_problem,
    check_flag,
    check_segment,
    convert_flag,
    convert_segment,
    sdk_flag,
    stabilize,
)
from ramplight.core.metrics import Metric, check_metric, convert_metric
from ramplight.store.base import ApiKey, Environment, Store

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)


# -- environments -----------------------------------------------------------------------


def create_environment(store: Store, key: str, name: str | None = None, clock: Clock = utcnow) -> Environment:
    if not KEY_PATTERN.match(key):
        raise ValidationError.at("key", "use 1-100 of a-z 0-9 _ . - starting alphanumeric")
    env = Environment(key=key, name=name or key, created_at=clock())
    store.create_environment(env)
    return env


def ensure_environment(store: Store, key: str, clock: Clock = utcnow) -> Environment:
    for env in store.list_environments():
        if env.key == key:
            return env
    return create_environment(store, key, clock=clock)


def ensure_default_environments(store: Store, clock: Clock = utcnow) -> None:
    """A new database starts with `production` and `staging`."""
    if not store.list_environments():
        create_environment(store, "production", "Production", clock)
        create_environment(store, "staging", "Staging", clock)


def _require_environment(store: Store, key: str) -> None:
    if key not in {e.key for e in store.list_environments()}:
        raise NotFoundError(f"no environment {key!r} (create it first: ramplight env create {key})")


# -- flags ------------------------------------------------------------------------------


def get_flag(store: Store, key: str) -> Flag:
    flag = store.get_flag(key)
    if flag is None:
        raise NotFoundError(f"no flag {key!r}")
    return flag


def _change(
    flag: Flag,
    before: Flag | None,
    action: ChangeAction,
    environment: str | None,
    actor: str,
    reason: str | None,
    clock: Clock,
) -> FlagChange:
    return FlagChange(
        change_id=uuid.uuid4().hex,
        ts=clock(),
        environment=environment,
        flag_key=flag.key,
        version=flag.version,
        actor=actor,
        action=action,
        before=_builtins(before) if before is not None else None,
        after=_builtins(flag),
        reason=reason,
    )


def _changes_for_update(
    flag: Flag, before: Flag, action: ChangeAction, actor: str, reason: str | None, clock: Clock
) -> list[FlagChange]:
    """One change row per environment whose config changed (phases are read per environment);
    a single flag-level row when only flag-wide fields changed."""
    envs = sorted(set(flag.environments) | set(before.environments))
    changed = [e for e in envs if flag.environments.get(e) != before.environments.get(e)]
    flag_wide = msgspec.structs.replace(flag, environments={}, version=0) != msgspec.structs.replace(
        before, environments={}, version=0
    )
    if flag_wide or not changed:
        return [_change(flag, before, action, None, actor, reason, clock)] + [
            _change(flag, before, action, e, actor, reason, clock) for e in changed
        ]
    return [_change(flag, before, action, e, actor, reason, clock) for e in changed]


def _segments(store: Store) -> dict[str, Segment]:
    return {s.key: s for s in store.list_segments()}


def _validated(store: Store, flag: Flag, previous: Flag | None) -> Flag:
    check_flag(flag, _segments(store))
    known = {e.key for e in store.list_environments()}
    missing = sorted(set(flag.environments) - known)
    if missing:
        raise ValidationError.at(f"environments.{missing[0]}", "no such environment (create it first)")
    if previous is not None:
        problem = assignment_unit_change_problem(flag, previous)
        if problem:
            raise ValidationError.at("assignment_unit", problem)
    return stabilize(flag, previous)


def create_flag(
    store: Store, doc: Mapping[str, Any], actor: str, reason: str | None = None, clock: Clock = utcnow
) -> Flag:
    flag = convert_flag(doc)
    flag = msgspec.structs.replace(_validated(store, flag, None), version=1)
    store.save_flag(flag, None, [_change(flag, None, "create", None, actor, reason, clock)])
    return flag


def update_flag(
    store: Store,
    key: str,
    doc: Mapping[str, Any],
    expected_version: int,
    actor: str,
    reason: str | None = None,
    clock: Clock = utcnow,
) -> Flag:
    """Replace a flag's document; fails with ConflictError if it is no longer at `expected_version`."""
    previous = get_flag(store, key)
    flag = convert_flag(doc)
    if flag.key != key:
        raise ValidationError.at("key", f"is {flag.key!r}; the flag being updated is {key!r}")
    flag = msgspec.structs.replace(
        _validated(store, flag, previous), version=expected_version + 1, archived=previous.archived
    )
    changes = _changes_for_update(flag, previous, "update", actor, reason, clock)
    store.save_flag(flag, expected_version, changes)
    return flag


def _env_edit(
    store: Store,
    key: str,
    environment: str,
    action: ChangeAction,
    edit: Callable[[Flag], Flag],
    actor: str,
    reason: str | None,
    clock: Clock,
    expected_version: int | None = None,
) -> Flag:
    previous = get_flag(store, key)
    if environment not in previous.environments:
        raise NotFoundError(f"flag {key!r} is not configured in environment {environment!r}")
    version = previous.version if expected_version is None else expected_version
    edited = _validated(store, edit(previous), previous)
    if edited == previous:
        return previous  # unchanged: no new version, no change row
    flag = msgspec.structs.replace(edited, version=version + 1)
    store.save_flag(flag, version, [_change(flag, previous, action, environment, actor, reason, clock)])
    return flag


def ramp_weights(
    weights: Mapping[str, float], variation: str, percent: float, donor: str
) -> dict[str, float]:
    """New weights giving `variation` `percent`, the difference taken from (or given to) `donor`."""
    if not 0 <= percent <= 100:
        raise ValidationError.at("percent", f"{percent:g} is not within 0..100")
    slots = {k: percent_to_slots(v) for k, v in weights.items()}
    target = percent_to_slots(percent)
    delta = target - slots.get(variation, 0)
    if variation == donor:
        raise ValidationError.at("from", f"{variation!r} cannot give weight to itself")
    if slots.get(donor, 0) - delta < 0:
        raise ValidationError.at(
            "percent",
            f"{donor!r} has only {slots_to_percent(slots.get(donor, 0)):g} % to give; "
            f"choose another --from variation",
        )
    slots[variation] = target
    slots[donor] = slots.get(donor, 0) - delta
    assert sum(slots.values()) == SLOTS
    return {k: slots_to_percent(v) for k, v in slots.items()}


def ramp(
    store: Store,
    key: str,
    environment: str,
    variation: str,
    percent: float,
    actor: str,
    donor: str | None = None,
    reason: str | None = None,
    expected_version: int | None = None,
    clock: Clock = utcnow,
) -> Flag:
    """Set one variation's share of the environment's rollout; others keep theirs except `donor`
    (default: the environment's default variation), so only units of the donor move."""

    def edit(flag: Flag) -> Flag:
        if variation not in flag.variation_keys():
            raise ValidationError.at("variation", f"flag {key!r} has no variation {variation!r}")
        env = flag.environments[environment]
        giver = donor or env.default_variation
        if giver not in flag.variation_keys():
            raise ValidationError.at("from", f"flag {key!r} has no variation {giver!r}")
        current = env.rollout.weights if env.rollout else {env.default_variation: 100.0}
        weights = ramp_weights(current, variation, percent, giver)
        rollout = Rollout(weights=weights)  # stabilize() derives ranges from the stored ones
        return _replace_env(flag, environment, rollout=rollout)

    return _env_edit(store, key, environment, "ramp", edit, actor, reason, clock, expected_version)


def _replace_env(flag: Flag, environment: str, **changes: Any) -> Flag:
    envs = dict(flag.environments)
    envs[environment] = msgspec.structs.replace(envs[environment], **changes)
    return msgspec.structs.replace(flag, environments=envs)


def kill(
    store: Store, key: str, environment: str, actor: str, reason: str | None = None, clock: Clock = utcnow
) -> Flag:
    """Serve the off variation to everyone in `environment`, at once."""
    return _env_edit(
        store,
        key,
        environment,
        "kill",
        lambda f: _replace_env(f, environment, enabled=False),
        actor,
        reason,
        clock,
    )


def restore(
    store: Store, key: str, environment: str, actor: str, reason: str | None = None, clock: Clock = utcnow
) -> Flag:
    return _env_edit(
        store,
        key,
        environment,
        "restore",
        lambda f: _replace_env(f, environment, enabled=True),
        actor,
        reason,
        clock,
    )


def archive(store: Store, key: str, actor: str, reason: str | None = None, clock: Clock = utcnow) -> Flag:
    """Stop serving the flag to SDKs; its evidence and history stay."""
    previous = get_flag(store, key)
    flag = msgspec.structs.replace(previous, archived=True, version=previous.version + 1)
    store.save_flag(flag, previous.version, [_change(flag, previous, "archive", None, actor, reason, clock)])
    return flag


# -- flags as code ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """What `apply` does (or would do) to one flag, with a readable diff."""

    key: str
    action: Literal["create", "update", "unchanged"]
    diff: str
    version: int | None = None


def _display(flag: Flag | None) -> list[str]:
    if flag is None:
        return []
    doc = _builtins(msgspec.structs.replace(flag, version=0))
    doc.pop("version", None)
    for env in doc.get("environments", {}).values():
        if env.get("rollout"):
            env["rollout"].pop("ranges", None)
        for rule in env.get("rules", []):
            if rule.get("rollout"):
                rule["rollout"].pop("ranges", None)
    text = msgspec.json.format(msgspec.json.encode(doc), indent=2).decode()
    return text.splitlines(keepends=True)


def plan_apply(store: Store, docs: Iterable[Mapping[str, Any]]) -> list[tuple[PlannedChange, Flag | None]]:
    planned: list[tuple[PlannedChange, Flag | None]] = []
    seen: set[str] = set()
    for i, doc in enumerate(docs):
        try:
            flag = convert_flag(doc)
        except ValidationError as exc:
            raise ValidationError(f"flags[{i}]: {exc.message}", exc.problems) from exc
        if flag.key in seen:
            raise ValidationError.at(f"flags[{i}].key", f"{flag.key!r} appears twice")
        seen.add(flag.key)
        previous = store.get_flag(flag.key)
        candidate = _validated(store, flag, previous)
        before, after = _display(previous), _display(candidate)
        if previous is not None and before == after:
            planned.append((PlannedChange(flag.key, "unchanged", "", previous.version), None))
            continue
        diff = "".join(difflib.unified_diff(before, after, f"{flag.key} (stored)", f"{flag.key} (file)"))
        action: Literal["create", "update"] = "create" if previous is None else "update"
        planned.append((PlannedChange(flag.key, action, diff, previous.version if previous else None), flag))
    return planned


def apply(
    store: Store,
    docs: Iterable[Mapping[str, Any]],
    actor: str,
    dry_run: bool = False,
    reason: str | None = None,
    clock: Clock = utcnow,
) -> list[PlannedChange]:
    """Make the stored flags match the documents; idempotent (a second run changes nothing)."""
    planned = plan_apply(store, docs)
    if dry_run:
        return [p for p, _ in planned]
    results = []
    for change, flag in planned:
        if flag is None:
            results.append(change)
        elif change.action == "create":
            created = create_flag(store, _builtins(flag), actor, reason, clock)
            results.append(PlannedChange(change.key, "create", change.diff, created.version))
        else:
            assert change.version is not None
            updated = update_flag(store, change.key, _builtins(flag), change.version, actor, reason, clock)
            results.append(PlannedChange(change.key, "update", change.diff, updated.version))
    return results


# -- metrics ----------------------------------------------------------------------------


def save_metric(
    store: Store,
    doc: Mapping[str, Any],
    expected_version: int | None,
    known: Mapping[str, Metric] | None = None,
) -> Metric:
    """Create (expected_version None) or replace a metric definition, checked against the others
    (`known`: the stored ones, or those of a whole file being applied)."""
    metric = convert_metric(doc)
    check_metric(
        metric,
        known if known is not None else {m.key: m for m in store.list_metrics()},
        store.sandbox.readable,
    )
    metric = msgspec.structs.replace(metric, version=(expected_version or 0) + 1)
    store.save_metric(metric, expected_version)
    return metric


def apply_metrics(
    store: Store, docs: Iterable[Mapping[str, Any]], dry_run: bool = False
) -> list[PlannedChange]:
    """Make stored metric definitions match the documents (idempotent), with a diff per metric."""
    stored = {m.key: m for m in store.list_metrics()}
    metrics: list[Metric] = []
    for i, doc in enumerate(docs):
        try:
            metrics.append(convert_metric(doc))
        except ValidationError as exc:
            raise ValidationError(f"metrics[{i}]: {exc.message}", exc.problems) from exc
    known = {**stored, **{m.key: m for m in metrics}}
    results = []
    for metric in metrics:
        check_metric(metric, known, store.sandbox.readable)
        previous = stored.get(metric.key)
        before = _metric_lines(previous)
        after = _metric_lines(metric)
        if previous is not None and before == after:
            results.append(PlannedChange(metric.key, "unchanged", "", previous.version))
            continue
        diff = "".join(difflib.unified_diff(before, after, f"{metric.key} (stored)", f"{metric.key} (file)"))
        action: Literal["create", "update"] = "create" if previous is None else "update"
        version = previous.version if previous is not None else None
        if not dry_run:
            saved = save_metric(store, _builtins(metric), version, known)
            version = saved.version
        results.append(PlannedChange(metric.key, action, diff, version))
    return results


def _metric_lines(metric: Metric | None) -> list[str]:
    if metric is None:
        return []
    doc = _builtins(msgspec.structs.replace(metric, version=0))
    return msgspec.json.format(msgspec.json.encode(doc), indent=2).decode().splitlines(keepends=True)


# -- segments ---------------------------------------------------------------------------


def save_segment(store: Store, doc: Mapping[str, Any], expected_version: int | None) -> Segment:
    segment = convert_segment(doc)
    check_segment(segment)
    segment = msgspec.structs.replace(segment, version=(expected_version or 0) + 1)
    store.save_segment(segment, expected_version)
    return segment


# -- SDK config and ingestion facts -----------------------------------------------------


def sdk_config(store: Store, environment: str) -> SdkConfig:
    flags = {}
    for flag in store.list_flags():
        entry = sdk_flag(flag, environment)
        if entry is not None:
            flags[flag.key] = entry
    return SdkConfig(environment=environment, flags=flags, segments=_segments(store))


def flag_facts(store: Store, environment: str) -> dict[str, FlagFacts]:
    """Every flag configured in `environment`, archived ones too (late evidence still joins)."""
    return {
        flag.key: FlagFacts(flag.assignment_unit, frozenset(flag.variation_keys()))
        for flag in store.list_flags(include_archived=True)
        if environment in flag.environments
    }


# -- API keys ---------------------------------------------------------------------------


def hash_key(plaintext: str) -> str:
    """Keys are 160-bit random tokens, so one SHA-256 suffices (no password stretching)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_key(
    store: Store,
    kind: Literal["admin", "sdk"],
    name: str,
    environment: str | None = None,
    clock: Clock = utcnow,
    can_force: bool = False,
) -> tuple[str, ApiKey]:
    """Create a key; the plaintext is returned once and never stored. `can_force`: an admin key
    that may act against a measurement plan (recorded as forced)."""
    if can_force and kind != "admin":
        raise ValidationError.at("can_force", "only admin keys may force actions")
    if kind == "sdk":
        if environment is None:
            raise ValidationError.at("environment", "an SDK key belongs to one environment")
        _require_environment(store, environment)
    elif environment is not None:
        raise ValidationError.at("environment", "admin keys are not tied to an environment")
    plaintext = f"rl_{kind}_{secrets.token_urlsafe(20)}"
    key = ApiKey(
        id=uuid.uuid4().hex[:12],
        kind=kind,
        environment=environment,
        name=name,
        prefix=plaintext[: len(kind) + 8],
        key_hash=hash_key(plaintext),
        created_at=clock(),
        can_force=can_force,
    )
    store.create_api_key(key)
    return plaintext, key


def revoke_api_key(store: Store, key_id: str, clock: Clock = utcnow) -> None:
    """Revoke a key by id (revoking it again changes nothing); an unknown id is a NotFoundError."""
    if not any(k.id == key_id for k in store.list_api_keys()):
        raise NotFoundError(f"no API key {key_id!r}")
    store.revoke_api_key(key_id, clock())


def authenticate(store: Store, plaintext: str | None) -> ApiKey:
    if not plaintext:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    key = store.find_api_key(hash_key(plaintext))
    if key is None or key.revoked_at is not None:
        raise AuthError("unknown or revoked API key")
    return key
