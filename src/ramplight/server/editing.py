"""What the flag page's edit section shows: the environment's targeting and rollout and the
measurement plan as YAML texts with the versions they were read at, a refused edit's collision
(who changed what since, as a diff), and the stamp the page's auto-refresh compares.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

import msgspec
import yaml

from ramplight.core.errors import ValidationError
from ramplight.core.flags import Flag
from ramplight.store.base import Store

# -- texts --------------------------------------------------------------------


def _yaml(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, default_flow_style=False)


def _strip_ranges(env: dict[str, Any]) -> dict[str, Any]:
    """Slot ranges are derived from the stored ones on save (assignments stay stable): the editor
    shows weights only."""
    if env.get("rollout"):
        env["rollout"].pop("ranges", None)
    for rule in env.get("rules", []):
        if rule.get("rollout"):
            rule["rollout"].pop("ranges", None)
    return env


def config_text(flag: Flag, environment: str) -> str:
    """The environment's targeting and rollout as the editor shows it (YAML)."""
    config = flag.environments.get(environment)
    if config is None:
        return ""
    return _yaml(_strip_ranges(msgspec.to_builtins(config)))


def plan_text(store: Store, flag_key: str, environment: str) -> tuple[str, int]:
    """The measurement plan as the editor shows it (no key, environment or version: the page
    says those), and its version (0: none yet, the defaults apply)."""
    plan = store.get_plan(flag_key, environment)
    if plan is None:
        return "", 0
    doc = msgspec.to_builtins(plan)
    for field in ("flag_key", "environment", "version"):
        doc.pop(field, None)
    return _yaml(doc), plan.version


@dataclass(frozen=True, slots=True)
class Stale:
    """Someone else's change that refused this edit."""

    who: str
    when: Any
    reason: str | None
    version: int
    diff: str


@dataclass(frozen=True, slots=True)
class Editor:
    """What the flag page's edit section shows: the texts, the versions they were read at, and
    (after a refused edit) the text that was sent with the change it collided with."""

    config: str
    config_base: str
    flag_version: int
    plan: str
    plan_base: str
    plan_version: int
    variations: list[str]
    weights: dict[str, float]
    stale_config: Stale | None = None
    stale_plan: Stale | None = None
    error_config: str | None = None
    error_plan: str | None = None
    error_ramp: str | None = None


def editor(store: Store, flag: Flag, environment: str) -> Editor:
    text = config_text(flag, environment)
    plan, plan_version = plan_text(store, flag.key, environment)
    config = flag.environments.get(environment)
    weights = dict(config.rollout.weights) if config and config.rollout else {}
    return Editor(
        config=text,
        config_base=text,
        flag_version=flag.version,
        plan=plan,
        plan_base=plan,
        plan_version=plan_version,
        variations=flag.variation_keys(),
        weights=weights,
    )


def diff(before: str, after: str, label: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        f"{label} as this form read it",
        f"{label} as stored now",
    )
    return "".join(lines) or "(the text is the same; only the version moved)\n"


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors and aliases: a line of nested aliases expands to gigabytes once the
    document is encoded (a "billion laughs"); nobody writes a flag or a plan with them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.YAMLError(
                f"aliases (*name) are not accepted (line {mark.line + 1}, column {mark.column + 1})"
            )
        node = super().compose_node(parent, index)
        return node


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_NoAliases)


def parse_variations(text: str) -> list[dict[str, Any]]:
    """`key: value` lines, the key taken as written (YAML would read `on`/`off` as booleans) and
    the value as YAML (`false`, `3`, `{profile: v2}`); blank lines and `#` comments are skipped."""
    out: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, colon, raw = line.partition(":")
        if not colon or not key.strip():
            raise ValidationError.at("variations", f"line {number} is {line.strip()!r}; write `key: value`")
        try:
            value = _load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            raise ValidationError.at(
                "variations", f"line {number}: the value is not valid YAML: {problem}"
            ) from None
        out.append({"key": key.strip(), "value": value})
    if not out:
        raise ValidationError.at("variations", "at least one `key: value` line (e.g. `off: false`)")
    return out


def last_change(
    store: Store, flag_key: str, environment: str, plan: bool
) -> tuple[str, Any, str | None, int]:
    """Who made the newest change of the flag (or its plan) in `environment`."""
    for change in reversed(store.flag_changes(flag_key)):
        if change.environment not in (None, environment):
            continue
        if (change.action == "plan") != plan:
            continue
        return change.actor, change.ts, change.reason, change.version
    return "someone", None, None, 0


def parse_yaml(text: str, field: str) -> dict[str, Any]:
    try:
        doc = _load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationError.at(field, f"is not valid YAML{where}: {problem}") from None
    if not isinstance(doc, dict):
        raise ValidationError.at(field, f"must be a mapping of fields, not {type(doc).__name__}")
    return doc


def page_stamp(store: Store, flag: Flag, environment: str) -> dict[str, Any]:
    plan = store.get_plan(flag.key, environment) if environment else None
    decisions = sum(1 for d in store.decisions(flag.key) if d.environment == environment)
    return {
        "release": f"{flag.version}.{plan.version if plan else 0}.{decisions}",
        "evidence": store.segments_loaded(),
    }
