"""The guardian: a loop in the server that judges every measurement plan on an interval and acts
where the plan lets it — rolls back a breached guardrail, pauses on untrustworthy evidence,
expands when a stage's gates pass. Its decisions are recorded like a person's (actor
`guardian`); it keeps no state of its own, so a restart loses nothing, and it never acts twice
on the same evidence (the last guardian decision's fingerprint is compared first)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from ramplight import release
from ramplight.core.errors import ConflictError, RamplightError
from ramplight.core.plan import Plan
from ramplight.store.base import Store

log = logging.getLogger("ramplight.guardian")

ACTOR = "guardian"


@dataclass(frozen=True, slots=True)
class Outcome:
    flag_key: str
    environment: str
    recommendation: str
    acted: str | None
    """The action taken (None: nothing to do, not allowed, or already done on this evidence)."""
    note: str


def _allowed(action: str, plan: Plan) -> bool:
    policy = plan.guardian
    return {
        "rollback": policy.rollback,
        "pause": policy.pause,
        "expand": policy.expand,
        "promote": policy.expand,
    }.get(action, False)


def check_all(store: Store, on_decision: Callable[[dict[str, Any]], None] | None = None) -> list[Outcome]:
    """One pass over every plan; returns what it saw and did."""
    outcomes = []
    for plan in store.list_plans():
        try:
            outcomes.append(_check(store, plan.flag_key, plan.environment, on_decision))
        except RamplightError as exc:
            log.warning("guardian: %s in %s: %s", plan.flag_key, plan.environment, exc.message)
            outcomes.append(Outcome(plan.flag_key, plan.environment, "error", None, exc.message))
    return outcomes


def _check(
    store: Store, flag_key: str, environment: str, on_decision: Callable[[dict[str, Any]], None] | None
) -> Outcome:
    flag = store.get_flag(flag_key)
    if flag is None or flag.archived or environment not in flag.environments:
        return Outcome(flag_key, environment, "none", None, "flag archived or not configured here")
    j = release.judge(store, flag_key, environment)
    action = j.recommendation.action
    if action == "continue" or not _allowed(action, j.plan):
        return Outcome(flag_key, environment, action, None, "nothing the plan lets the guardian do")
    fingerprint = release.fingerprint(j.readout, j.flag)
    mine = [d for d in store.decisions(flag_key) if d.environment == environment and d.actor == ACTOR]
    if mine and mine[-1].fingerprint == fingerprint and mine[-1].state == action:
        return Outcome(flag_key, environment, action, None, "already acted on this evidence")
    try:
        decision = release.decide_action(
            store, flag_key, environment, action, ACTOR, j.recommendation.sentence, judgement=j
        )
    except ConflictError as exc:
        return Outcome(flag_key, environment, action, None, exc.message)
    log.info("guardian: %s %s in %s (%s)", action, flag_key, environment, decision.decision_id)
    if on_decision is not None:
        on_decision(
            {
                "type": "ramplight.decision",
                "decision_id": decision.decision_id,
                "flag_key": flag_key,
                "environment": environment,
                "action": action,
                "actor": ACTOR,
                "sentence": j.recommendation.sentence,
                "reasons": j.recommendation.to_json()["reasons"],
                "ts": decision.ts.isoformat(),
            }
        )
    return Outcome(flag_key, environment, action, action, decision.decision_id)


class Webhooks:
    """POSTs each decision to every configured URL from a background thread, with retries and
    backoff, so a slow or dead endpoint never holds up the rollback it reports."""

    def __init__(self, urls: Sequence[str], attempts: int = 4, backoff_s: float = 0.5) -> None:
        self.urls = list(urls)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="ramplight-webhooks", daemon=True)
        if self.urls:
            self._thread.start()

    def send(self, body: dict[str, Any]) -> None:
        if not self.urls:
            return
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.failed += len(self.urls)
            log.warning("webhooks: queue full, dropped decision %s", body.get("decision_id"))

    def _run(self) -> None:
        with httpx.Client(timeout=5.0) as client:
            while (body := self._queue.get()) is not None:
                for url in self.urls:
                    self._deliver(client, url, body)

    def _deliver(self, client: httpx.Client, url: str, body: dict[str, Any]) -> None:
        for attempt in range(self.attempts):
            try:
                response = client.post(url, json=body)
                if response.status_code < 500 and response.status_code != 429:
                    self.delivered += 1
                    return
            except httpx.HTTPError:
                pass
            time.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
        log.warning("webhook to %s failed after %d attempts", url.split("?")[0], self.attempts)

    def close(self) -> None:
        if self.urls:
            self._queue.put(None)
            self._thread.join(timeout=10)


class GuardianThread:
    """Runs `check_all` every `interval_s` seconds until closed; `flush` loads acknowledged
    evidence first so each check sees everything acknowledged before it.

    Of several servers sharing a control plane, only the one that leads (`store.try_lead`) runs
    the checks on the interval; the others ask again at each turn and take over when it stops.
    Every check, on the interval or asked for, holds `store.one_at_a_time`, so two never judge
    the same evidence at once (the second sees the first's decision and its fingerprint)."""

    def __init__(
        self,
        store: Store,
        interval_s: float,
        flush: Callable[[], object],
        webhooks: Webhooks,
        after_action: Callable[[], None],
    ) -> None:
        self.store = store
        self.interval_s = interval_s
        self.flush = flush
        self.webhooks = webhooks
        self.after_action = after_action
        self.checks = 0
        self.leading = False
        """Whether this server ran the last turn's check (it leads the guardian)."""
        self.last_check_at: float | None = None
        """When this server last finished a check (time.time())."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ramplight-guardian", daemon=True)

    def start(self) -> GuardianThread:
        self._thread.start()
        return self

    def check_now(self) -> list[Outcome]:
        self.flush()
        with self.store.one_at_a_time(ACTOR):
            outcomes = check_all(self.store, self.webhooks.send)
        self.checks += 1
        self.last_check_at = time.time()
        if any(o.acted for o in outcomes):
            self.after_action()
        return outcomes

    def status(self) -> dict[str, Any]:
        """What `GET /api/guardian` answers."""
        last = self.last_check_at
        return {
            "interval_seconds": self.interval_s,
            "running": self._thread.is_alive(),
            "leads": self.leading,
            "checks": self.checks,
            "last_check_at": None
            if last is None
            else datetime.fromtimestamp(last, UTC).isoformat().replace("+00:00", "Z"),
        }

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                leading = self.store.try_lead(ACTOR)
                if leading != self.leading:
                    log.info(
                        "guardian: this server %s the checks",
                        "now runs" if leading else "no longer runs (another server leads)",
                    )
                    self.leading = leading
                if leading:
                    self.check_now()
            except Exception:  # the loop must survive anything one check throws
                log.exception("guardian check failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.webhooks.close()
