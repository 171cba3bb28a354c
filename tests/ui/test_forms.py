"""The web UI over plain HTTP: forged forms are refused, sessions are stored hashed, and the
flags page serves readouts from its cache until something they were computed from changes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest

from ramplight.core.keys import hash_key
from tests.factories import RunningServer

FLAG = "support_assistant_profile"
Signer = Callable[[str], tuple[httpx.Client, str]]


def test_a_form_without_the_sessions_csrf_token_is_refused(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    add_user("ana", "editor")
    client, csrf = sign_in("ana")
    form = {"action": "kill", "environment": "production"}
    for forged in ({}, {"csrf": "0" * 64}, {"csrf": csrf[:-1]}):
        answer = client.post(f"/flags/{FLAG}/actions", data={**form, **forged})
        assert answer.status_code == 403 and "no valid CSRF token" in answer.text
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1
    # Another user's token is no token for this session either.
    add_user("bo", "editor")
    _, other = sign_in("bo")
    assert client.post(f"/flags/{FLAG}/actions", data={**form, "csrf": other}).status_code == 403
    answer = client.post(f"/flags/{FLAG}/actions", data={**form, "csrf": csrf})
    assert answer.status_code == 303
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 2


def test_the_sign_in_form_needs_its_own_csrf_token_and_a_right_password(
    server: RunningServer, add_user: Callable[[str, str], None]
) -> None:
    add_user("ana", "viewer")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert csrf is not None
        forged = client.post("/login", data={"name": "ana", "password": "correct horse battery staple"})
        assert forged.status_code == 403 and "ramplight_session" not in client.cookies
        wrong = client.post(
            "/login", data={"csrf": csrf.group(1), "name": "ana", "password": "wrong password"}
        )
        assert wrong.status_code == 401 and "unknown user or wrong password" in wrong.text
        away = client.post(
            "/login",
            data={"csrf": csrf.group(1), "name": "ana", "password": "correct horse battery staple",
                  "next": "//elsewhere.example/"},
        )  # fmt: skip
        assert away.status_code == 303 and away.headers["location"] == "/"
        cookie = away.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        token = client.cookies["ramplight_session"]
    store = server.thread.server.config.app.state.ramplight.store
    assert store.find_session(hash_key(token)) is not None
    assert token not in repr(store.find_session(hash_key(token)))


def test_the_flags_page_serves_cached_readouts_until_the_flag_changes(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    add_user("ana", "viewer")
    client, _ = sign_in("ana")
    cache = server.thread.server.config.app.state.ramplight.ui_readouts
    computed = cache.computed
    for _ in range(3):
        assert FLAG in client.get("/").text
    assert client.get(f"/flags/{FLAG}").status_code == 200
    assert cache.computed == computed  # served from memory: nothing changed
    ramp = {"environment": "production", "variation": "candidate", "percent": 10}
    assert server.admin.post(f"/api/flags/{FLAG}/ramp", json=ramp).status_code == 200
    page = client.get("/").text
    assert cache.computed == computed + 1 and "control 90\u00a0% · candidate 10\u00a0%" in page
    assert "ramping" in client.get("/", params={"status": "ramping", "q": "assistant"}).text
    assert "No flags match" in client.get("/", params={"q": "no-such-flag"}).text


def test_the_flag_pages_evidence_is_cached_with_the_readout(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    metric = {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"}
    assert server.admin.put("/api/metrics/latency_ms", json=metric).status_code == 200
    plan = {"guardrails": [{"metric": "latency_ms", "margin": 0.05}], "candidate": "candidate"}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    add_user("ana", "viewer")
    client, _ = sign_in("ana")
    cache = server.thread.server.config.app.state.ramplight.ui_readouts
    assert client.get(f"/flags/{FLAG}").status_code == 200
    computed = cache.computed_evidence
    assert computed >= 2  # the difference series, the attributes, the eval and trace evidence
    for _ in range(3):
        assert "Difference over time" in client.get(f"/flags/{FLAG}").text
    assert cache.computed_evidence == computed  # served from memory: nothing changed
    decision = {"environment": "production", "action": "pause", "reason": "look closer"}
    answer = server.admin.post(f"/api/flags/{FLAG}/decisions", json=decision)
    assert answer.status_code in (200, 201), answer.text
    assert client.get(f"/flags/{FLAG}").status_code == 200
    assert cache.computed_evidence > computed  # a decision changed the stamp: computed again


def test_the_segment_review_takes_only_an_attribute_the_exposures_carry(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    metric = {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"}
    assert server.admin.put("/api/metrics/latency_ms", json=metric).status_code == 200
    plan = {"guardrails": [{"metric": "latency_ms", "margin": 0.05}], "candidate": "candidate"}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    exposures = [
        {"ts": datetime.now(UTC).isoformat(), "flag_key": FLAG, "assignment_unit": "conversation", "unit_id": f"c{i}",
         "assigned_variation": ("control", "candidate")[i % 2], "served_variation": ("control", "candidate")[i % 2],
         "attributes": {"region": ("eu", "us")[i % 3 % 2], "nested": {"no": 1}}}
        for i in range(40)
    ]  # fmt: skip
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}) as sdk:
        answer = sdk.post("/ingest/batch", json={"exposures": exposures})
    assert answer.status_code == 200 and not answer.json()["rejected"], answer.text
    assert server.thread.server.config.app.state.ramplight.catch_up() is None  # loaded: the stamp holds
    add_user("ana", "viewer")
    client, _ = sign_in("ana")
    page = client.get(f"/flags/{FLAG}").text  # no choice: the first attribute with plain values
    assert '<option value="region" selected>region (2 values)</option>' in page and "nested" not in page
    assert 'table class="segments" data-metric="latency_ms"' in page
    cache = server.thread.server.config.app.state.ramplight.ui_readouts
    computed = cache.computed_evidence
    for attempt in ("nope", "x' OR 1=1", "nested"):
        page = client.get(f"/flags/{FLAG}", params={"segment": attempt}).text
        assert "No segment review: no attribute" in page and "(attributes: region)" in page
    assert cache.computed_evidence == computed  # refused before anything is computed or kept
    assert client.get(f"/flags/{FLAG}", params={"segment": "x" * 65}).status_code == 422


def test_the_segment_review_opens_on_the_attribute_the_plan_names(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    metric = {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"}
    assert server.admin.put("/api/metrics/latency_ms", json=metric).status_code == 200
    plan = {"guardrails": [{"metric": "latency_ms", "margin": 0.05}], "candidate": "candidate",
            "segments": ["missing", "tier"]}  # fmt: skip
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    assert server.admin.get(f"/api/flags/{FLAG}/plans/production").json()["segments"] == ["missing", "tier"]
    exposures = [
        {"ts": datetime.now(UTC).isoformat(), "flag_key": FLAG, "assignment_unit": "conversation", "unit_id": f"c{i}",
         "assigned_variation": ("control", "candidate")[i % 2], "served_variation": ("control", "candidate")[i % 2],
         "attributes": {"region": ("eu", "us")[i % 2], "tier": ("gold", "silver", "bronze")[i % 3]}}
        for i in range(60)
    ]  # fmt: skip
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.sdk_key()}"}) as sdk:
        answer = sdk.post("/ingest/batch", json={"exposures": exposures})
    assert answer.status_code == 200 and not answer.json()["rejected"], answer.text
    assert server.thread.server.config.app.state.ramplight.catch_up() is None
    add_user("ana", "viewer")
    client, _ = sign_in("ana")
    page = client.get(f"/flags/{FLAG}").text  # "region" sorts first, but the plan names "tier"
    assert '<option value="tier" selected>tier (3 values)</option>' in page
    chosen = client.get(f"/flags/{FLAG}", params={"segment": "region"}).text  # the form still chooses
    assert '<option value="region" selected>region (2 values)</option>' in chosen


def test_a_series_not_ready_within_the_wait_is_announced_then_shown(
    server: RunningServer,
    add_user: Callable[[str, str], None],
    sign_in: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ramplight.server.routes import ui

    monkeypatch.setattr(ui, "SERIES_WAIT_S", 0.0)  # as if the flag were large: no wait at all
    server.create_flag()
    metric = {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"}
    assert server.admin.put("/api/metrics/latency_ms", json=metric).status_code == 200
    plan = {"guardrails": [{"metric": "latency_ms", "margin": 0.05}], "candidate": "candidate"}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    add_user("ana", "viewer")
    client, _ = sign_in("ana")
    first = client.get(f"/flags/{FLAG}").text
    assert "The difference over time is being computed" in first and 'href="">Reload the page</a>' in first
    deadline = time.monotonic() + 60
    while "being computed" in client.get(f"/flags/{FLAG}").text:
        assert time.monotonic() < deadline, "the series was never computed"
        time.sleep(0.2)
