"""Ramplight as an OpenFeature provider (the `openfeature` extra: `openfeature-sdk`).

    api.set_provider(RamplightProvider(Client(sdk_key, url=...)))
    details = api.get_client().get_object_details("support_assistant_profile", {}, context)

The unit is the context's attribute named after the flag's `assignment_unit` (a conversation id
under "conversation"), else its `targeting_key`; the other attributes are targeting attributes.
Evaluation is not an exposure: pass `RECORD_EXPOSURE` as the evaluation options when the value
is used at once, or run the behavior in `provider.exposure(...)` when it may fall back. Every
evaluation is recorded on the active OpenTelemetry span as `sdk/otel.py` does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode, ProviderNotReadyError
from openfeature.flag_evaluation import (
    FlagEvaluationDetails,
    FlagEvaluationOptions,
    FlagResolutionDetails,
    FlagValueType,
    Reason,
)
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from ramplight.core.evaluate import ErrorCode as RamplightErrorCode
from ramplight.core.evaluate import Evaluation, error_evaluation
from ramplight.core.evaluate import Reason as RamplightReason
from ramplight.sdk.client import Client, ExposureScope
from ramplight.sdk.otel import PROVIDER, active_trace_id, record_evaluation

__all__ = ["EXPOSURE_HINT", "RECORD_EXPOSURE", "RamplightProvider"]

log = logging.getLogger("ramplight.sdk")

EXPOSURE_HINT = "ramplight.exposure"
"""A hook hint: True when the evaluated value is the behavior that runs now (an exposure)."""
RECORD_EXPOSURE = FlagEvaluationOptions(hook_hints={EXPOSURE_HINT: True})
"""Evaluation options recording the exposure after a successful evaluation."""

REASONS: dict[RamplightReason, Reason] = {
    "rule": Reason.TARGETING_MATCH,
    "rollout": Reason.SPLIT,
    "default": Reason.DEFAULT,
    "off": Reason.DISABLED,
    "error": Reason.ERROR,
}
ERROR_CODES: dict[RamplightErrorCode, ErrorCode] = {
    "flag_not_found": ErrorCode.FLAG_NOT_FOUND,
    "type_mismatch": ErrorCode.TYPE_MISMATCH,
    "invalid_flag": ErrorCode.PARSE_ERROR,
    "general": ErrorCode.GENERAL,
}
_RAMPLIGHT_REASONS: dict[str, RamplightReason] = {of: rl for rl, of in REASONS.items()}
# Keys of flag_metadata; contextId and version are OpenFeature's telemetry names (appendix D).
_UNIT_ID, _VERSION, _ASSIGNMENT_UNIT, _RULE_ID = "contextId", "version", "assignment_unit", "rule_id"


def _unit_and_attributes(
    client: Client,
    flag_key: str | None,
    context: EvaluationContext | None,
    assignment_unit: str | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """The unit id for `flag_key` (its assignment unit's attribute, else the targeting key) and
    the remaining attributes."""
    attributes = dict(context.attributes) if context is not None else {}
    unit = assignment_unit or (client.assignment_unit(flag_key) if flag_key else None)
    unit_id = attributes.pop(unit, None) if unit is not None else None
    if not isinstance(unit_id, str) or not unit_id:
        unit_id = context.targeting_key if context is not None else None
    return unit_id or None, attributes


class RamplightProvider(AbstractProvider):
    """Resolves OpenFeature flags with a Ramplight `Client` (local evaluation, no network per
    call); `track` sends Ramplight events. `shutdown()` closes the client."""

    def __init__(self, client: Client, *, init_timeout: float = 5.0) -> None:
        self.client = client
        self.init_timeout = init_timeout
        self._hooks: list[Hook] = [_ExposureHook(client)]
        self._ready = False
        self._warned: set[str] = set()
        client.on_config_change(self._config_changed)

    def get_metadata(self) -> Metadata:
        return Metadata(name=PROVIDER)

    def get_provider_hooks(self) -> list[Hook]:
        return self._hooks

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Wait up to `init_timeout` for the first config, else raise ProviderNotReadyError (the
        provider's status is ERROR, defaults are served with PROVIDER_NOT_READY) and emit
        PROVIDER_READY when it arrives."""
        if not self.client.wait_until_ready(self.init_timeout):
            raise ProviderNotReadyError(f"no Ramplight config within {self.init_timeout:g}s")
        self._ready = True

    def _config_changed(self, flags_changed: list[str]) -> None:
        if not self._ready:
            self._ready = True
            self.emit_provider_ready(ProviderEventDetails(message="the first config arrived"))
        else:
            self.emit_provider_configuration_changed(ProviderEventDetails(flags_changed=flags_changed))

    def shutdown(self) -> None:
        self.client.close()

    # -- resolution -------------------------------------------------------------------

    def _resolve(
        self,
        flag_key: str,
        default: Any,
        context: EvaluationContext | None,
        expected: str,
    ) -> FlagResolutionDetails[Any]:
        unit_id, attributes = _unit_and_attributes(self.client, flag_key, context)
        unit = self.client.assignment_unit(flag_key)
        if unit_id is None and unit is not None:  # an unknown flag is reported as such below
            return FlagResolutionDetails(
                value=default,
                reason=Reason.ERROR,
                error_code=ErrorCode.TARGETING_KEY_MISSING,
                error_message=(
                    f"flag {flag_key!r} needs the unit: a {unit!r} attribute or a targeting_key "
                    f"in the evaluation context"
                ),
            )
        evaluation = self.client.evaluate(flag_key, unit_id or "", attributes or None, default)
        metadata: dict[str, str] = {}
        if unit_id is not None:
            record_evaluation(evaluation, unit_id)
            metadata[_UNIT_ID] = unit_id
        if evaluation.flag_version is not None:
            metadata[_VERSION] = str(evaluation.flag_version)
        if evaluation.assignment_unit is not None:
            metadata[_ASSIGNMENT_UNIT] = evaluation.assignment_unit
        if evaluation.rule_id is not None:
            metadata[_RULE_ID] = evaluation.rule_id
        if evaluation.reason == "error":
            code = ERROR_CODES[evaluation.error_code or "general"]
            if code is ErrorCode.FLAG_NOT_FOUND and not self.client.ready:
                code = ErrorCode.PROVIDER_NOT_READY
            return FlagResolutionDetails(
                value=default,
                reason=Reason.ERROR,
                error_code=code,
                error_message=evaluation.error_message,
                flag_metadata=metadata,
            )
        value, problem = _as_type(evaluation.value, expected)
        if problem is not None:
            return FlagResolutionDetails(
                value=default,
                reason=Reason.ERROR,
                error_code=ErrorCode.TYPE_MISMATCH,
                error_message=f"flag {flag_key!r} is {problem}, asked for {expected}",
                flag_metadata=metadata,
            )
        return FlagResolutionDetails(
            value=value,
            reason=REASONS[evaluation.reason],
            variant=evaluation.variation,
            flag_metadata=metadata,
        )

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean")

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string")

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer")

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float")

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, "object")

    # -- evidence ---------------------------------------------------------------------

    def exposure(
        self, flag_key: str, evaluation_context: EvaluationContext | None = None, default: Any = None
    ) -> ExposureScope:
        """`Client.exposure` with the OpenFeature context: run the behavior in the `with`
        block; the exposure, with the variation served (after `fallback()`), fires at its end."""
        unit_id, attributes = _unit_and_attributes(self.client, flag_key, evaluation_context)
        if unit_id is None:  # nothing can be assigned: serve the default, record nothing
            missing = error_evaluation(flag_key, default, "general", f"flag {flag_key!r} needs the unit")
            return ExposureScope(self.client, missing, "", attributes or None, None)
        return self.client.exposure(flag_key, unit_id, attributes or None, default)

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """A Ramplight event: `value` is its value; the attributes `assignment_unit`, `flag_key`,
        `variation` and `trace_id` are its fields of those names, the others its properties."""
        properties = dict(tracking_event_details.attributes) if tracking_event_details else {}
        fields: dict[str, str] = {
            k: str(properties.pop(k))
            for k in ("assignment_unit", "flag_key", "variation", "trace_id")
            if k in properties
        }
        flag_key = fields.get("flag_key")
        unit = fields.get("assignment_unit") or (self.client.assignment_unit(flag_key) if flag_key else None)
        unit = unit or self.client.default_assignment_unit
        unit_id, _ = _unit_and_attributes(self.client, None, evaluation_context, unit)
        if unit_id is None:
            if tracking_event_name not in self._warned:
                self._warned.add(tracking_event_name)
                log.warning(
                    "ramplight: track(%r) needs a unit id (targeting_key); events without it are not recorded",
                    tracking_event_name,
                )
            self.client.stats.failed += 1
            return
        self.client.track(
            tracking_event_name,
            unit_id,
            value=tracking_event_details.value if tracking_event_details else None,
            properties=properties or None,
            assignment_unit=unit,
            flag_key=flag_key,
            variation=fields.get("variation"),
            trace_id=fields.get("trace_id") or active_trace_id(),
        )


def _as_type(value: Any, expected: str) -> tuple[Any, str | None]:
    """`value` as OpenFeature's `expected` type, or what it is instead: a boolean is no number,
    a whole float is an integer and an integer a float."""
    if expected == "boolean":
        ok = isinstance(value, bool)
    elif expected == "string":
        ok = isinstance(value, str)
    elif expected == "object":
        ok = isinstance(value, dict | list)
    elif isinstance(value, bool) or not isinstance(value, int | float):
        ok = False
    elif expected == "integer":
        ok = isinstance(value, int) or value.is_integer()
        if not ok:
            return value, f"the float {value!r}"
        value = int(value)
    else:
        value, ok = float(value), True
    return (value, None) if ok else (value, f"a {type(value).__name__}")


class _ExposureHook(Hook):
    """Records the exposure of an evaluation asked for with the `EXPOSURE_HINT` hint, as the
    assigned variation served; evaluations without it record nothing."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def after(
        self, hook_context: HookContext, details: FlagEvaluationDetails[FlagValueType], hints: HookHints
    ) -> None:
        if not hints.get(EXPOSURE_HINT) or details.error_code is not None or details.variant is None:
            return
        metadata = details.flag_metadata
        version = metadata.get(_VERSION)
        evaluation = Evaluation(
            flag_key=details.flag_key,
            value=details.value,
            variation=details.variant,
            reason=_RAMPLIGHT_REASONS.get(str(details.reason), "default"),
            rule_id=str(metadata[_RULE_ID]) if _RULE_ID in metadata else None,
            flag_version=int(version) if version is not None else None,
            assignment_unit=str(metadata.get(_ASSIGNMENT_UNIT, "")) or None,
        )
        unit_id = str(metadata[_UNIT_ID])
        _, attributes = _unit_and_attributes(self.client, details.flag_key, hook_context.evaluation_context)
        with ExposureScope(self.client, evaluation, unit_id, attributes or None, active_trace_id()):
            pass
