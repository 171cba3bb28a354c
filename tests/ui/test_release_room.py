"""The web UI in a real headless Chromium against the real server: sign in, the flags list, a
flag's page, acting from it, and the server's refusals."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from tests.factories import RunningServer
from tests.ui.conftest import PASSWORD

FLAG = "support_assistant_profile"


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
