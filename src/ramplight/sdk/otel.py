"""The SDK and OpenTelemetry: when a span is active, an exposure scope records the flag
evaluation on it — the conventions' `feature_flag.evaluation` event with `feature_flag.key`,
`feature_flag.result.variant`, `feature_flag.context.id`, `feature_flag.provider.name`,
`feature_flag.result.reason` and `feature_flag.version` — and the exposure carries the span's
trace id, so spans and exposures join both ways.

`opentelemetry-api` is optional: without it (or without an active, valid span) nothing happens.
The server does not turn these events into exposures (their provider is `ramplight`): the SDK
sends its own exposure, with the variation actually served.
"""

from __future__ import annotations

from typing import Any

from ramplight.core.evaluate import Evaluation

PROVIDER = "ramplight"

try:
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised where opentelemetry-api is not installed
    _trace = None  # type: ignore[assignment]


def active_trace_id() -> str | None:
    """The active span's trace id (hex), or None without a valid one."""
    if _trace is None:
        return None
    context = _trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def record_evaluation(evaluation: Evaluation, unit_id: str) -> str | None:
    """Add the evaluation event to the active span; its trace id (hex), or None without one."""
    if _trace is None:
        return None
    span: Any = _trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid:
        return None
    attributes: dict[str, Any] = {
        "feature_flag.key": evaluation.flag_key,
        "feature_flag.context.id": unit_id,
        "feature_flag.provider.name": PROVIDER,
        "feature_flag.result.reason": evaluation.reason,
    }
    if evaluation.variation is not None:
        attributes["feature_flag.result.variant"] = evaluation.variation
    if evaluation.flag_version is not None:
        attributes["feature_flag.version"] = str(evaluation.flag_version)
    if evaluation.error_code is not None:
        attributes["error.type"] = evaluation.error_code
    if span.is_recording():
        span.add_event("feature_flag.evaluation", attributes)
    return format(context.trace_id, "032x")
