"""Flags and segments: create, update, ramp, kill, restore, archive — each write with its
`flag_changes` rows in one store transaction — and what SDKs and ingestion read of them."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ramplight.control.common import Clock, _builtins, utcnow
from ramplight.core.audit import ChangeAction, FlagChange
from ramplight.core.contract import FlagFacts
from ramplight.core.errors import NotFoundError, ValidationError
from ramplight.core.flags import (
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
from ramplight.core.rollout import ramp_weights
from ramplight.store.base import ControlStore as Store


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


def stored_problems(store: Store) -> list[dict[str, Any]]:
    """Stored segments and flags (archived ones too) that today's checks refuse: saved under
    older rules (a regex shape now refused as catastrophic, say). Such a flag still loads, but
    the SDK cannot compile it and serves the caller's default (reason `error`, `invalid_flag`)
    until it is fixed; a flag using such a segment likewise. Segments first, then flags, by key."""
    found: list[dict[str, Any]] = []
    segments = _segments(store)
    for key, segment in sorted(segments.items()):
        try:
            check_segment(segment)
        except ValidationError as exc:
            found.append(_problem_row("segment", key, exc))
    for flag in store.list_flags(include_archived=True):
        try:
            check_flag(flag, segments)
        except ValidationError as exc:
            found.append(_problem_row("flag", flag.key, exc))
    return found


def _problem_row(kind: str, key: str, exc: ValidationError) -> dict[str, Any]:
    return {
        "kind": kind,
        "key": key,
        "message": exc.message,
        "problems": [{"field": p.field, "reason": p.reason} for p in exc.problems],
    }


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


def save_segment(store: Store, doc: Mapping[str, Any], expected_version: int | None) -> Segment:
    segment = convert_segment(doc)
    check_segment(segment)
    segment = msgspec.structs.replace(segment, version=(expected_version or 0) + 1)
    store.save_segment(segment, expected_version)
    return segment


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
