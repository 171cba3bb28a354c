"""The application-facing client: local evaluation, explicit exposures, track and score.

    client = Client(sdk_key, url="http://127.0.0.1:8700")
    with client.exposure("support_assistant_profile", conversation_id, attrs) as x:
        try:
            answer = run_assistant(profile=x.value)
        except TimeoutError:
            answer = run_assistant(profile=x.fallback("timeout"))
    client.track("resolved_without_escalation", conversation_id, value=1)

Nothing here raises into the application for a flag problem, a server problem or a full
queue: evaluation serves the default and says why; evidence is queued or counted as dropped.
"""

from __future__ import annotations

import atexit
import logging
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from ramplight.core.contract import EvalScore, Evaluator, Event, Exposure
from ramplight.core.evaluate import Attributes, CompiledConfig, Evaluation
from ramplight.core.flags import SdkConfig
from ramplight.sdk.config_source import ConfigPoller, ConfigSource, ConfigStream
from ramplight.sdk.event_queue import EventQueue, EvidenceSink, QueueStats
from ramplight.sdk.otel import record_evaluation
from ramplight.sdk.retry import Backoff

log = logging.getLogger("ramplight.sdk")

SDK_NAME = "ramplight-python/0.1.0"
_EMPTY = CompiledConfig(SdkConfig(environment="", flags={}))


def _now() -> datetime:
    return datetime.now(UTC)


class ExposureScope:
    """The assigned behavior, running. Exposure is recorded when the `with` block ends, with
    what was actually served: the assigned variation, or the one `fallback()` switched to."""

    __slots__ = (
        "_client",
        "_served",
        "_started",
        "attributes",
        "behavior",
        "evaluation",
        "fallback_reason",
        "trace_id",
        "unit_id",
    )

    def __init__(
        self,
        client: Client,
        evaluation: Evaluation,
        unit_id: str,
        attributes: Attributes | None,
        trace_id: str | None,
    ) -> None:
        self._client = client
        self.evaluation = evaluation
        self.unit_id = unit_id
        self.attributes = attributes
        self.trace_id = trace_id
        self._served = evaluation.variation
        self._started = _now()
        self.fallback_reason: str | None = None
        self.behavior: Any = None

    @property
    def value(self) -> Any:
        """The value of the variation being served now (after a fallback, the fallback's)."""
        if self._served is None or self._served == self.evaluation.variation:
            return self.evaluation.value
        return self._client._variation_value(self.evaluation.flag_key, self._served, self.evaluation.value)

    @property
    def variation(self) -> str | None:
        return self._served

    def fallback(self, reason: str, variation: str | None = None) -> Any:
        """Record that `variation` (default: the flag's default, i.e. control) ran instead of the
        assigned one, because of `reason` (e.g. "timeout"); returns its value."""
        self.fallback_reason = reason
        self._served = variation or self._client._default_variation(self.evaluation.flag_key) or self._served
        return self.value

    def __enter__(self) -> ExposureScope:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._client._record_exposure(self)


def _close_at_exit(ref: weakref.ref[Client]) -> None:
    client = ref()
    if client is not None:
        client.close()


class Client:
    """Evaluates flags locally from the environment's config and sends evidence in batches."""

    def __init__(
        self,
        sdk_key: str | None = None,
        url: str = "http://127.0.0.1:8700",
        *,
        poll_interval: float = 15.0,
        stream: bool = True,
        init_timeout: float = 5.0,
        queue_capacity: int = 100_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        queue_max_bytes: int = 64 * 1024 * 1024,
        close_timeout: float = 5.0,
        retry_backoff: Backoff | None = None,
        spool_dir: str | Path | None = None,
        default_assignment_unit: str | None = None,
        transport: httpx.BaseTransport | None = None,
        config_source: ConfigSource | None = None,
        evidence: EvidenceSink | None = None,
    ) -> None:
        """Config follows the server's push stream (`stream=True`; a kill reaches this client
        within a second) and falls back to polling every `poll_interval` seconds while the
        stream is unavailable; `stream=False` only polls.
        `config_source` and `evidence` replace the server for flags and for evidence
        (`ramplight.sdk.testing.InMemory` is both); `sdk_key` is needed for what they leave.
        Evidence the server does not take is held (up to `queue_capacity` items and
        `queue_max_bytes`) and retried on `retry_backoff`; `close()` waits `close_timeout`, then
        writes what is left to `spool_dir` (if given), which the next Client on it sends."""
        if not sdk_key and (config_source is None or evidence is None):
            raise ValueError(
                "Client needs an sdk_key to reach the server, unless both config_source and "
                "evidence are given (ramplight.sdk.testing.InMemory is both)"
            )
        headers = {"Authorization": f"Bearer {sdk_key}", "User-Agent": SDK_NAME}
        timeout = httpx.Timeout(10.0, connect=3.0)
        self._http: list[httpx.Client] = []

        def http() -> httpx.Client:
            client = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)
            self._http.append(client)
            return client

        self._config = _EMPTY
        self.default_assignment_unit = default_assignment_unit
        self.close_timeout = close_timeout
        if config_source is None:
            source = ConfigStream if stream else ConfigPoller
            config_source = source(http(), interval=poll_interval)
        self._source: ConfigSource = config_source
        self._queue: EvidenceSink = evidence or EventQueue(
            http(),
            capacity=queue_capacity,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_bytes=queue_max_bytes,
            backoff=retry_backoff,
            close_timeout=close_timeout,
            spool_dir=spool_dir,
        )
        self._closed = False
        self._warned: set[str] = set()
        self._listeners: list[Callable[[list[str]], None]] = []
        self._source.start(self._install)
        if init_timeout > 0 and not self._source.wait_ready(init_timeout):
            log.warning("ramplight: no config within %.1fs; serving defaults until it arrives", init_timeout)
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- config -------------------------------------------------------------------------

    def _install(self, config: CompiledConfig) -> None:
        previous, self._config = self._config, config  # one swap: never half a config
        if not self._listeners:
            return
        changed = config.changed_keys(previous)
        for listener in self._listeners:
            try:
                listener(changed)
            except Exception:  # a listener's bug must not stop the config source
                log.exception("ramplight: a config listener failed")

    def on_config_change(self, listener: Callable[[list[str]], None]) -> None:
        """Call `listener(flag_keys)` after each new config with the keys of the flags it added,
        changed or removed, on the thread that installed it (the poller's)."""
        self._listeners.append(listener)

    @property
    def ready(self) -> bool:
        return self._source.wait_ready(0)

    def wait_until_ready(self, timeout: float = 5.0) -> bool:
        return self._source.wait_ready(timeout)

    def refresh(self) -> bool:
        """Fetch the config now (synchronously); True if it changed. A failure is logged and
        the last good config kept."""
        return self._source.refresh()

    @property
    def environment(self) -> str:
        return self._config.environment

    def assignment_unit(self, flag_key: str) -> str | None:
        """The unit `flag_key` is assigned by (conversation, user, …); None for an unknown flag."""
        facts = self._config.facts(flag_key)
        return facts.assignment_unit if facts is not None else None

    def _variation_value(self, flag_key: str, variation: str, default: Any) -> Any:
        facts = self._config.facts(flag_key)
        return facts.values.get(variation, default) if facts is not None else default

    def _default_variation(self, flag_key: str) -> str | None:
        facts = self._config.facts(flag_key)
        return facts.default_variation if facts is not None else None

    # -- evaluation ---------------------------------------------------------------------

    def evaluate(
        self, flag_key: str, unit_id: str, attributes: Attributes | None = None, default: Any = None
    ) -> Evaluation:
        """Value, variation and reason for one unit; no network, no exposure recorded."""
        return self._config.evaluate(flag_key, unit_id, attributes, default)

    def bool_value(
        self, flag_key: str, unit_id: str, attributes: Attributes | None = None, default: bool = False
    ) -> bool:
        value: bool = self._config.evaluate_typed(flag_key, unit_id, attributes, default, "boolean").value
        return value

    def string_value(
        self, flag_key: str, unit_id: str, attributes: Attributes | None = None, default: str = ""
    ) -> str:
        value: str = self._config.evaluate_typed(flag_key, unit_id, attributes, default, "string").value
        return value

    def number_value(
        self, flag_key: str, unit_id: str, attributes: Attributes | None = None, default: float = 0.0
    ) -> float:
        value: float = self._config.evaluate_typed(flag_key, unit_id, attributes, default, "number").value
        return value

    def json_value(
        self, flag_key: str, unit_id: str, attributes: Attributes | None = None, default: Any = None
    ) -> Any:
        return self._config.evaluate_typed(flag_key, unit_id, attributes, default, "json").value

    # -- evidence -----------------------------------------------------------------------

    def exposure(
        self,
        flag_key: str,
        unit_id: str,
        attributes: Attributes | None = None,
        default: Any = None,
        trace_id: str | None = None,
    ) -> ExposureScope:
        """Evaluate and return a scope to run the behavior in; the exposure fires at its end.
        Inside an OpenTelemetry span, the evaluation is recorded on it and the exposure carries
        its trace id (unless `trace_id` is given)."""
        evaluation = self.evaluate(flag_key, unit_id, attributes, default)
        active = record_evaluation(evaluation, unit_id)
        return ExposureScope(self, evaluation, unit_id, attributes, trace_id or active)

    def _record_exposure(self, scope: ExposureScope) -> None:
        evaluation = scope.evaluation
        if evaluation.reason == "error" or evaluation.variation is None or self._closed:
            return  # no flag served anything: there is nothing to attribute
        served = scope.variation or evaluation.variation
        behavior = scope.behavior
        if behavior is None:
            behavior = scope.value if isinstance(scope.value, dict) else {"value": scope.value}
        attributes = dict(scope.attributes) if scope.attributes else None
        self._queue.put(
            Exposure(
                ts=scope._started,
                flag_key=evaluation.flag_key,
                flag_version=evaluation.flag_version,
                assignment_unit=evaluation.assignment_unit or "",
                unit_id=scope.unit_id,
                assigned_variation=evaluation.variation,
                served_variation=served,
                fallback_reason=scope.fallback_reason,
                evaluation_reason=evaluation.reason,
                behavior=behavior,
                attributes=attributes,
                trace_id=scope.trace_id,
                sdk=SDK_NAME,
                event_id=uuid.uuid4().hex,
            )
        )

    def _unit_of(self, flag_key: str | None, assignment_unit: str | None) -> str | None:
        if assignment_unit is not None:
            return assignment_unit
        if flag_key is not None:
            facts = self._config.facts(flag_key)
            if facts is not None:
                return facts.assignment_unit
        return self.default_assignment_unit

    def track(
        self,
        name: str,
        unit_id: str,
        value: float | None = None,
        properties: Mapping[str, Any] | None = None,
        *,
        assignment_unit: str | None = None,
        flag_key: str | None = None,
        variation: str | None = None,
        ids: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        ts: datetime | None = None,
    ) -> bool:
        """Queue an outcome or guardrail event; False if it could not be queued (see `stats`)."""
        unit = self._unit_of(flag_key, assignment_unit)
        if unit is None:
            if name not in self._warned:
                self._warned.add(name)
                log.warning(
                    "ramplight: track(%r) needs assignment_unit, a flag_key, or the client's "
                    "default_assignment_unit; events without it are not recorded",
                    name,
                )
            self._queue.stats.failed += 1
            return False
        return self._queue.put(
            Event(
                ts=ts or _now(),
                name=name,
                unit_id=unit_id,
                assignment_unit=unit,
                value=float(value) if value is not None else None,
                properties=dict(properties) if properties else None,
                ids=dict(ids) if ids else None,
                flag_key=flag_key,
                variation=variation,
                trace_id=trace_id,
                event_id=uuid.uuid4().hex,
            )
        )

    def score(
        self,
        name: str,
        score: float,
        *,
        unit_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        evaluator: Evaluator = "llm_judge",
        evaluator_version: str | None = None,
        label: str | None = None,
        flag_key: str | None = None,
        variation: str | None = None,
        comment: str | None = None,
        ts: datetime | None = None,
    ) -> bool:
        """Queue an evaluation score (LLM judge, human, heuristic or code) for a unit or trace."""
        return self._queue.put(
            EvalScore(
                ts=ts or _now(),
                name=name,
                score=float(score),
                evaluator=evaluator,
                evaluator_version=evaluator_version,
                unit_id=unit_id,
                trace_id=trace_id,
                span_id=span_id,
                label=label,
                flag_key=flag_key,
                variation=variation,
                comment=comment,
                event_id=uuid.uuid4().hex,
            )
        )

    @property
    def stats(self) -> QueueStats:
        return self._queue.stats

    def flush(self, timeout: float = 10.0) -> bool:
        return self._queue.flush(timeout)

    def close(self, timeout: float | None = None) -> dict[str, int]:
        """Send what is held for at most `timeout` seconds (default: `close_timeout`), stop the
        background threads, and return what the server did not acknowledge by then, by kind
        (`{}`: everything arrived). Idempotent; also runs at exit."""
        if self._closed:
            return {}
        self._closed = True
        started = time.monotonic()
        budget = self.close_timeout if timeout is None else timeout
        self._source.stop()
        unsent = self._queue.close(max(0.0, budget - (time.monotonic() - started)))
        stats = self._queue.stats
        if stats.dropped:
            log.warning(
                "ramplight: %d evidence items were dropped: %s",
                stats.dropped,
                ", ".join(f"{n} {reason}" for reason, n in sorted(stats.dropped_by_reason.items())),
            )
        for http in self._http:
            http.close()
        return unsent

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
