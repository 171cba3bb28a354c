"""Testing an application without a server: `InMemory` serves flags a test declares and keeps
the evidence the application's code emitted, through a real `Client` (same evaluator, same
exposure rule), with no network and no thread.

    memory = InMemory()
    memory.flag("support_assistant_profile", {"control": {...}, "candidate": {...}},
                serve="candidate", assignment_unit="conversation")
    client = memory.client()
    ...  # the code under test
    assert [x.served_variation for x in memory.exposures] == ["candidate"]

It is both seams of a Client: its `ConfigSource` and its `EvidenceSink`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import msgspec

from ramplight.core.contract import EvalScore, Event, Exposure, FlagFacts, validate_batch
from ramplight.core.errors import FieldProblem, ValidationError
from ramplight.core.evaluate import CompiledConfig
from ramplight.core.flags import (
    Clause,
    Flag,
    Rollout,
    Rule,
    SdkConfig,
    SdkFlag,
    Segment,
    check_flag,
    check_segment,
    convert_flag,
    convert_segment,
    sdk_flag,
)
from ramplight.sdk.client import Client
from ramplight.sdk.config_source import Install
from ramplight.sdk.event_queue import Item, QueueStats

__all__ = ["InMemory", "Rejected"]

_KIND = {Exposure: "exposures", Event: "events", EvalScore: "evals"}
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item the server's ingestion would refuse, and why (kind, field, reason)."""

    item: Item
    problem: FieldProblem

    def __str__(self) -> str:
        return self.problem.render()


def _flag_type(values: list[Any]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "boolean"
    if all(isinstance(v, str) for v in values):
        return "string"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "number"
    return "json"


class InMemory:
    """Flags pinned by a test and the evidence its code emitted, for `Client(config_source=…,
    evidence=…)` or `client()`. Every change is installed at once; evidence lands in
    `exposures`, `events` and `evals`, checked as the server would check it when this object
    also serves the client's flags (refusals land in `rejected`)."""

    def __init__(self, environment: str = "test") -> None:
        self.environment = environment
        self.exposures: list[Exposure] = []
        self.events: list[Event] = []
        self.evals: list[EvalScore] = []
        self.rejected: list[Rejected] = []
        self.stats = QueueStats()
        self._flags: dict[str, Flag] = {}
        self._segments: dict[str, Segment] = {}
        self._pinned: dict[str, str] = {}
        self._pinned_units: dict[str, dict[str, str]] = {}
        self._installs: list[Install] = []
        self._compiled = CompiledConfig(SdkConfig(environment=environment, flags={}))
        self._lock = threading.Lock()

    def client(self, **options: Any) -> Client:
        """A real Client on these flags and this evidence (options as for `Client`)."""
        return Client(config_source=self, evidence=self, **options)

    # -- flags -------------------------------------------------------------------------

    def flag(
        self,
        flag_key: str,
        variations: Mapping[str, Any] | None = None,
        *,
        serve: str | None = None,
        default: str | None = None,
        assignment_unit: str = "user",
    ) -> None:
        """Declare a flag serving `serve` to every unit (else its `default`, else its first
        variation). Without `variations`: a boolean flag, `on` (True) and `off` (False, default)."""
        if variations is None:
            variations = {"on": True, "off": False}
            default = default or "off"
        if not variations:
            raise ValidationError(f"flag {flag_key!r}: variations: needs at least one variation")
        default = default or next(iter(variations))
        self.add(
            {
                "key": flag_key,
                "type": _flag_type(list(variations.values())),
                "assignment_unit": assignment_unit,
                "variations": [{"key": k, "value": v} for k, v in variations.items()],
                "environments": {self.environment: {"default_variation": default, "off_variation": default}},
            }
        )
        if serve is not None:
            self.pin(flag_key, serve)

    def add(self, document: Mapping[str, Any] | Flag) -> None:
        """Add (or replace, dropping its pins) a full flag document, as the admin API and
        `ramplight apply` take it: its targeting rules and rollout in this environment run."""
        flag = document if isinstance(document, Flag) else convert_flag(document)
        check_flag(flag, self._segments)
        if self.environment not in flag.environments:
            have = ", ".join(sorted(flag.environments)) or "none"
            raise ValidationError(
                f"flag {flag.key!r} has no environment {self.environment!r} (has {have}); "
                f"use InMemory(environment=...) to pick one"
            )
        self._flags[flag.key] = flag
        self._pinned.pop(flag.key, None)
        self._pinned_units.pop(flag.key, None)
        self._publish()

    def add_segment(self, document: Mapping[str, Any] | Segment) -> None:
        """Add (or replace) a segment for `in_segment` clauses; add it before its flags."""
        segment = document if isinstance(document, Segment) else convert_segment(document)
        check_segment(segment)
        self._segments[segment.key] = segment
        self._publish()

    def pin(self, flag_key: str, variation: str, *, unit_id: str | None = None) -> None:
        """Serve `variation` to `unit_id` (reason `rule`), or to every unit not pinned on its
        own (reason `rollout`, as a 100 % rollout), over the flag's own targeting."""
        flag = self._flags.get(flag_key)
        if flag is None:
            known = ", ".join(sorted(self._flags)) or "none"
            raise ValidationError(
                f"no flag {flag_key!r} to pin (declared: {known}); flag() or add() it first"
            )
        if variation not in flag.variation_keys():
            raise ValidationError(
                f"flag {flag_key!r} has no variation {variation!r} (has {', '.join(flag.variation_keys())})"
            )
        if unit_id is None:
            self._pinned[flag_key] = variation
        else:
            self._pinned_units.setdefault(flag_key, {})[unit_id] = variation
        self._publish()

    def _sdk_flag(self, flag: Flag) -> SdkFlag:
        served = sdk_flag(flag, self.environment)
        assert served is not None  # add() checked the environment
        everyone = self._pinned.get(flag.key)
        units = self._pinned_units.get(flag.key, {})
        if everyone is None and not units:
            return served
        rules, rollout = served.rules, served.rollout
        if not served.enabled:  # pinned units see their variation; the others still see "off"
            rules, rollout = [], Rollout(weights={served.off_variation: 100})
        if everyone is not None:
            rules, rollout = [], Rollout(weights={everyone: 100})
        by_variation: dict[str, list[str]] = {}
        for unit_id, variation in units.items():
            by_variation.setdefault(variation, []).append(unit_id)
        pinned = [
            Rule(id=f"pinned-{v}", clauses=[Clause(op="in", values=list(ids))], variation=v)
            for v, ids in by_variation.items()
        ]
        return msgspec.structs.replace(served, enabled=True, rules=pinned + rules, rollout=rollout)

    def _publish(self) -> None:
        config = SdkConfig(
            environment=self.environment,
            flags={key: self._sdk_flag(flag) for key, flag in self._flags.items()},
            segments=dict(self._segments),
        )
        self._compiled = CompiledConfig(config)
        for install in self._installs:
            install(self._compiled)

    # -- ConfigSource ------------------------------------------------------------------

    def start(self, install: Install) -> None:
        self._installs.append(install)
        install(self._compiled)

    def wait_ready(self, timeout: float) -> bool:
        return True

    def refresh(self) -> bool:
        return False  # every change is installed when it is made

    def stop(self) -> None:
        """Nothing runs in the background."""

    # -- EvidenceSink ------------------------------------------------------------------

    def put(self, item: Item) -> bool:
        problem = self._problem(item) if self._installs else None
        with self._lock:
            self.stats.queued += 1
            if problem is not None:
                self.stats.rejected += 1
                self.rejected.append(Rejected(item, problem))
                return True
            self.stats.sent += 1
            if isinstance(item, Exposure):
                self.exposures.append(item)
            elif isinstance(item, Event):
                self.events.append(item)
            else:
                self.evals.append(item)
        return True

    def _problem(self, item: Item) -> FieldProblem | None:
        """What the server's ingestion would say of `item` (None: it would be accepted)."""
        facts = {
            key: FlagFacts(flag.assignment_unit, frozenset(flag.variation_keys()))
            for key, flag in self._flags.items()
        }
        checked = validate_batch(
            {_KIND[type(item)]: [_encoder.encode(item)]}, self.environment, facts, datetime.now(UTC)
        )
        return replace(checked.problems[0], index=None) if checked.problems else None  # one item: no index

    def flush(self, timeout: float = 10.0) -> bool:
        return True

    def close(self, timeout: float | None = None) -> dict[str, int]:
        """Nothing to send: the evidence stays readable after the client closes."""
        return {}

    def clear(self) -> None:
        """Forget the evidence kept so far (flags and pins stay)."""
        with self._lock:
            self.exposures.clear()
            self.events.clear()
            self.evals.clear()
            self.rejected.clear()
            self.stats = QueueStats()
