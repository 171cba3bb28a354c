"""The web UI in a real headless Chromium against the real server: sign in, the flags list, a
flag's page, acting from it, and the server's refusals."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from tests.factories import RunningServer
from tests.ui.conftest import PASSWORD

FLAG = "support_assistant_profile"


def send_traffic(server: RunningServer, units: int, candidate_slowdown: float, extra: str) -> None:
    """`units` conversations split by the flag's weights, each with a latency and an `extra` event."""
    rng = random.Random(7)
    share = weights(server).get("candidate", 0) / 100
    now = datetime.now(UTC).isoformat()
    exposures, events = [], []
    for i in range(units):
        unit = f"c{i}"
        variation = "candidate" if rng.random() < share else "control"
        exposures.append({"ts": now, "flag_key": FLAG, "assignment_unit": "conversation", "unit_id": unit,
                          "assigned_variation": variation, "served_variation": variation})  # fmt: skip
        slow = 1 + candidate_slowdown if variation == "candidate" else 1
        for name, value in (("latency_ms", rng.gauss(1000, 100) * slow), (extra, rng.gauss(300, 30))):
            events.append({"ts": now, "name": name, "unit_id": unit, "assignment_unit": "conversation",
                           "value": value})  # fmt: skip
    headers = {"Authorization": f"Bearer {server.sdk_key()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as sdk:
        response = sdk.post("/ingest/batch", json={"exposures": exposures, "events": events})
        assert response.status_code == 200 and not response.json()["rejected"]


def wait(browser: Any, condition: Any) -> Any:
    return WebDriverWait(browser, 20).until(condition)


def sign_in(browser: Any, server: RunningServer, name: str) -> None:
    browser.get(server.url + "/")
    wait(browser, seen.url_contains("/login?next="))
    browser.find_element(By.ID, "name").send_keys(name)
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "table.flags")))


def weights(server: RunningServer) -> dict[str, float]:
    doc = server.admin.get(f"/api/flags/{FLAG}").json()
    result: dict[str, float] = doc["environments"]["production"]["rollout"]["weights"]
    return result


def test_an_editor_signs_in_sees_the_flags_and_rolls_back_from_the_flag_page(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    add_user("ana", "editor")
    sign_in(browser, server, "ana")
    row = browser.find_element(By.XPATH, f"//table[@class='flags']//tr[th/a[text()='{FLAG}']]")
    assert "production" in row.text and "json · conversation" in row.text
    assert "control 95 % · candidate 5 %" in row.text and "ramping" in row.text
    assert "continue\n0 of 1,000 units at 5 %" in row.text  # the recommendation and its reason
    assert browser.find_element(By.CSS_SELECTOR, ".who").text.startswith("ana editor")

    row.find_element(By.LINK_TEXT, FLAG).click()
    wait(browser, seen.presence_of_element_located((By.ID, "rec-title")))
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith(FLAG)
    browser.find_element(By.ID, "reason").send_keys("latency looks worse in the traces")
    browser.find_element(By.CSS_SELECTOR, "button[value=rollback]").click()
    notice = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, ".notice")))
    assert notice.text.startswith("Rolled back")
    decisions = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=dec-title] tbody").text
    assert "rollback" in decisions and "user:ana" in decisions and "latency looks worse" in decisions

    assert weights(server) == {"control": 100, "candidate": 0}
    (decision,) = server.admin.get(f"/api/flags/{FLAG}/decisions").json()
    assert (decision["state"], decision["actor"], decision["reason"]) == (
        "rollback", "user:ana", "latency looks worse in the traces",
    )  # fmt: skip
    browser.get(server.url + "/?status=rolled+back")
    assert FLAG in browser.find_element(By.CSS_SELECTOR, "table.flags tbody").text


def test_a_viewer_sees_disabled_buttons_and_the_server_refuses_the_action_anyway(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    add_user("vic", "viewer")
    sign_in(browser, server, "vic")
    browser.get(f"{server.url}/flags/{FLAG}")
    kill = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "button[value=kill]")))
    assert not kill.is_enabled()
    # A page edited in the browser (or a crafted request) is still refused by the server.
    browser.execute_script("arguments[0].disabled = false; arguments[0].click();", kill)
    alert = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert "your role (viewer) may look but not act" in alert.text
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1


def test_an_expansion_against_the_plan_is_refused_with_its_reason_on_the_page(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    plan = {
        "stages": [{"percent": 5, "min_units": 100}, {"percent": 20}, {"percent": 100}],
        "candidate": "candidate",
    }
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    add_user("ana", "editor")
    sign_in(browser, server, "ana")
    browser.get(f"{server.url}/flags/{FLAG}")
    wait(browser, seen.element_to_be_clickable((By.CSS_SELECTOR, "button[value=expand]"))).click()
    alert = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert alert.text.startswith("Refused: expand refused:") and "100" in alert.text
    assert "Force against the plan" not in browser.page_source  # an editor may not force
    assert weights(server) == {"control": 95, "candidate": 5}


def test_an_admin_key_signs_in_as_admin_and_signs_out(server: RunningServer, browser: Any) -> None:
    server.create_flag()
    browser.get(server.url + "/login")
    browser.find_element(By.TAG_NAME, "summary").click()
    browser.find_element(By.ID, "key").send_keys(server.admin_key)
    browser.find_element(By.XPATH, "//button[text()='Sign in with the key']").click()
    who = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, ".who")))
    assert "admin" in who.text and server.admin_key not in browser.page_source
    assert not any(c["name"] == "ramplight_session" and not c["httpOnly"] for c in browser.get_cookies())
    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    wait(browser, seen.url_contains("/login"))
    browser.get(server.url + "/")
    wait(browser, seen.url_contains("/login?next="))


def test_the_api_docs_render_with_no_network(server: RunningServer, browser: Any) -> None:
    """Same-origin assets only: the browser resolves no other host, and the pages forbid it."""
    browser.get(server.url + "/docs")
    title = wait(browser, seen.visibility_of_element_located((By.CSS_SELECTOR, ".swagger-ui .info .title")))
    assert title.text.startswith("Ramplight")
    wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, ".opblock-tag")))  # the operations
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert len(loaded) >= 3 and all(url.startswith(server.url) for url in loaded), loaded
    for asset in (
        "/docs-static/swagger-ui-bundle.js",
        "/docs-static/swagger-ui.css",
        "/docs-static/favicon.png",
    ):
        assert server.admin.get(asset).status_code == 200, asset


def test_the_flag_page_draws_the_metrics_the_timeline_the_sql_and_the_audit(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    ramp = {"environment": "production", "variation": "candidate", "percent": 10, "reason": "first widening"}
    ramped = server.admin.post(f"/api/flags/{FLAG}/ramp", json=ramp)
    assert ramped.status_code == 200, ramped.text
    for key in ("latency_ms", "tokens"):
        metric = {"type": "event", "event": key, "aggregation": "mean", "direction": "decrease"}
        assert server.admin.put(f"/api/metrics/{key}", json=metric).status_code == 200
    plan = {"guardrails": [{"metric": "latency_ms", "margin": 0.05}], "candidate": "candidate",
            "goals": [{"metric": "tokens"}]}  # fmt: skip
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    send_traffic(server, 600, candidate_slowdown=0.01, extra="tokens")

    add_user("ana", "viewer")
    sign_in(browser, server, "ana")
    browser.get(f"{server.url}/flags/{FLAG}")
    table = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "table.metrics")))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr.metric-row")
    assert sorted(r.find_element(By.TAG_NAME, "th").text for r in rows) == ["latency_ms", "tokens"]
    for row in rows:
        (plot,) = row.find_elements(By.CSS_SELECTOR, "svg.interval-plot")
        assert plot.find_elements(By.CSS_SELECTOR, "line.zero") and plot.find_elements(
            By.CSS_SELECTOR, "line.fixed"
        )
    latency = next(r for r in rows if r.find_element(By.TAG_NAME, "th").text == "latency_ms")
    assert "guardrail" in latency.text and "5 % (harm above)" in latency.text
    assert latency.find_elements(By.CSS_SELECTOR, "svg line.margin")
    assert latency.find_elements(By.CSS_SELECTOR, "svg line.sequential")
    assert any(w in latency.text for w in ("harm ruled out", "harm detected", "inconclusive"))

    timeline = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=timeline-title]")
    assert timeline.find_elements(By.CSS_SELECTOR, "svg.timeline-chart g.event")
    assert timeline.find_elements(By.CSS_SELECTOR, "svg.series-chart")  # hourly means per variation
    assert "control 90 % · candidate 10 %" in timeline.text and "first widening" in timeline.text

    sql = browser.find_element(By.CSS_SELECTOR, "details.sql")
    sql.find_element(By.TAG_NAME, "summary").click()
    assert "SELECT" in sql.find_element(By.TAG_NAME, "pre").text
    assert sql.get_attribute("innerText") and server.admin.get(
        f"/api/flags/{FLAG}/sql"
    ).text.strip().startswith(sql.find_element(By.TAG_NAME, "pre").text.strip()[:40])
    audit = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=audit-title]")
    assert "✓ verified" in audit.text and "ramp" in audit.text
