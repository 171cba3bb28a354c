"""The web UI in a real headless Chromium against the real server: sign in, the flags list, a
flag's page, acting from it, and the server's refusals."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

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
    """Wait for `condition`. While a page is being replaced, chromedriver may answer a read of the
    old page's element with "Node with given id does not belong to the document" (a plain
    WebDriverException rather than a stale element): such a read is tried again, like a missing
    element; a condition that never holds still ends in a timeout."""
    return WebDriverWait(browser, 20, ignored_exceptions=(WebDriverException,)).until(condition)


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


def send_demo_like_evidence(server: RunningServer, units: range) -> None:
    """Conversations, stamped as they are sent, with a targeting attribute, a latency and a tokens
    event each, an LLM judge score for every third, and a two-span trace (the root names the unit;
    the model call inherits it) over OTLP for every fourth."""
    rng = random.Random(units.start)
    share = weights(server).get("candidate", 0) / 100
    exposures, events, evals, spans = [], [], [], []
    for i in units:
        unit, at = f"c{i}", datetime.now(UTC)
        time.sleep(0.004)  # the checkpoints need the evidence spread over time
        variation = "candidate" if rng.random() < share else "control"
        ts = at.isoformat()
        exposures.append({"ts": ts, "flag_key": FLAG, "assignment_unit": "conversation", "unit_id": unit,
                          "assigned_variation": variation, "served_variation": variation,
                          "attributes": {"plan": ("free", "pro", "enterprise")[i % 3]}})  # fmt: skip
        slow = 1.03 if variation == "candidate" else 1.0
        for name, value in (("latency_ms", rng.gauss(1000, 100) * slow), ("tokens", rng.gauss(300, 30))):
            events.append({"ts": ts, "name": name, "unit_id": unit, "assignment_unit": "conversation",
                           "value": value})  # fmt: skip
        if i % 3 == 0:
            evals.append({"ts": ts, "name": "faithfulness", "score": min(1.0, rng.gauss(0.8, 0.1)),
                          "evaluator": "llm_judge", "unit_id": unit})  # fmt: skip
        if i % 4 == 0:
            trace, began = f"{i + 1:032x}", int(at.timestamp() * 1e9) + 1_000_000
            took = int(rng.uniform(400, 1500) * slow * 1e6)
            spans.append({"traceId": trace, "spanId": f"{2 * i + 1:016x}", "name": "invoke_agent",
                          "startTimeUnixNano": str(began), "endTimeUnixNano": str(began + took),
                          "attributes": [{"key": "feature_flag.context.id", "value": {"stringValue": unit}}]})  # fmt: skip
            spans.append({"traceId": trace, "spanId": f"{2 * i + 2:016x}", "parentSpanId": f"{2 * i + 1:016x}",
                          "name": "chat", "startTimeUnixNano": str(began + 50_000_000),
                          "endTimeUnixNano": str(began + took - 1_000_000),
                          "attributes": [{"key": "gen_ai.usage.output_tokens", "value": {"intValue": "120"}},
                                         {"key": "gen_ai.usage.cost", "value": {"doubleValue": 0.002}}]})  # fmt: skip
    headers = {"Authorization": f"Bearer {server.sdk_key()}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as sdk:
        response = sdk.post("/ingest/batch", json={"exposures": exposures, "events": events, "evals": evals})
        assert response.status_code == 200 and not response.json()["rejected"], response.text
        otlp = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}  # fmt: skip
        response = sdk.post("/v1/traces", json=otlp)
        assert response.status_code == 200 and response.json() == {}, response.text


def test_the_flag_page_shows_the_difference_over_time_the_segments_and_the_llm_evidence(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag(
        environments={"production": {"default_variation": "control", "off_variation": "control",
                                     "rollout": {"weights": {"control": 80, "candidate": 20}}}}
    )  # fmt: skip
    for key in ("latency_ms", "tokens"):
        metric = {"type": "event", "event": key, "aggregation": "mean", "direction": "decrease"}
        assert server.admin.put(f"/api/metrics/{key}", json=metric).status_code == 200
    send_demo_like_evidence(server, range(0, 200))
    ramp = {"environment": "production", "variation": "candidate", "percent": 50, "reason": "wider"}
    assert server.admin.post(f"/api/flags/{FLAG}/ramp", json=ramp).status_code == 200
    plan = {"guardrails": [{"metric": "latency_ms", "margin": 0.05}], "candidate": "candidate",
            "goals": [{"metric": "tokens"}]}  # fmt: skip
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    send_demo_like_evidence(server, range(200, 400))

    add_user("ana", "viewer")
    sign_in(browser, server, "ana")
    browser.get(f"{server.url}/flags/{FLAG}")

    def charted(driver: Any) -> bool:
        """The series is computed on the server's worker: on a busy machine the page may say it is
        still being computed (it waits 5 s); reload until it is drawn."""
        if driver.find_elements(By.CSS_SELECTOR, "svg.difference-chart"):
            return True
        driver.refresh()
        return False

    WebDriverWait(browser, 90, poll_frequency=2, ignored_exceptions=(WebDriverException,)).until(charted)
    # Page order: the decision first, then the metrics and the evidence behind them.
    order = [h.get_attribute("id") for h in browser.find_elements(By.CSS_SELECTOR, "section > h2")]
    assert order.index("rec-title") < order.index("metrics-title") < order.index("diff-title")
    assert order.index("diff-title") < order.index("segments-title") < order.index("llm-title")
    assert order.index("llm-title") < order.index("timeline-title")

    latency = browser.find_element(By.ID, "difference-latency_ms")
    chart = latency.find_element(By.CSS_SELECTOR, "svg.difference-chart")
    assert chart.get_attribute("role") == "img"
    assert "latency_ms: difference over time at" in (chart.get_attribute("aria-label") or "")
    assert chart.find_elements(By.CSS_SELECTOR, "line.margin") and chart.find_elements(
        By.CSS_SELECTOR, "line.zero"
    )
    assert len(chart.find_elements(By.CSS_SELECTOR, "circle.estimate")) >= 2
    assert chart.find_elements(By.CSS_SELECTOR, "polygon.band")
    assert chart.find_elements(By.CSS_SELECTOR, "line.event-marker.event-change")  # the ramp
    assert "Smallest harm this stage could detect now:" in latency.text
    assert browser.find_element(By.ID, "difference-tokens").find_elements(
        By.CSS_SELECTOR, "svg.difference-chart"
    )

    segments = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=segments-title]")
    assert "Exploratory." in segments.text
    table = segments.find_element(By.CSS_SELECTOR, "table.segments[data-metric=latency_ms]")
    values = sorted(
        r.find_element(By.TAG_NAME, "th").text for r in table.find_elements(By.CSS_SELECTOR, "tr.segment-row")
    )
    assert values == ["enterprise", "free", "pro"]
    assert table.find_elements(By.CSS_SELECTOR, "svg.interval-plot line.margin")
    # The attribute is chosen with a plain GET form: the choice is in the address.
    Select(segments.find_element(By.ID, "segment")).select_by_value("plan")
    segments.find_element(By.CSS_SELECTOR, "form.segment-form button").click()
    wait(browser, seen.url_contains("segment=plan"))

    llm = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=llm-title]")
    evals = llm.find_element(By.CSS_SELECTOR, "table.evals")
    assert "faithfulness · llm_judge" in evals.text and "control" in evals.text and "candidate" in evals.text
    traces = llm.find_element(By.CSS_SELECTOR, "table.traces")
    assert {r.find_element(By.TAG_NAME, "th").text for r in traces.find_elements(By.CSS_SELECTOR, "tr.trace-row")} == {
        "control", "candidate",
    }  # fmt: skip
    waterfalls = llm.find_elements(By.CSS_SELECTOR, "figure.waterfall svg.waterfall-chart")
    assert len(waterfalls) == 2
    critical = waterfalls[0].find_elements(By.CSS_SELECTOR, "g.span.critical")
    assert [g.get_attribute("data-depth") for g in critical] == ["0", "1"]  # invoke_agent → chat
    assert "critical path: invoke_agent → chat" in (waterfalls[0].get_attribute("aria-label") or "")


def test_without_evals_or_spans_the_page_says_how_to_send_them(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    send_traffic(server, 50, candidate_slowdown=0.0, extra="tokens")
    add_user("ana", "viewer")
    sign_in(browser, server, "ana")
    browser.get(f"{server.url}/flags/{FLAG}")
    llm = wait(
        browser, seen.presence_of_element_located((By.CSS_SELECTOR, "section[aria-labelledby=llm-title]"))
    )
    assert "No evals or spans yet" in llm.text and "/v1/traces" in llm.text
    assert not llm.find_elements(By.CSS_SELECTOR, "table")
