"""Change requests, promote and clean up, and the users page, in a real headless Chromium
against the real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select

from tests.factories import RunningServer
from tests.ui.conftest import PASSWORD
from tests.ui.test_release_room import FLAG, sign_in, wait, weights

APPROVED_PLAN = {
    "stages": [{"percent": 5}, {"percent": 20}, {"percent": 100}],
    "candidate": "candidate",
    "approvers": 1,
}


def load(browser: Any, element: Any) -> None:
    """Click a link or a submit button and wait for the next page to replace this one (a check
    made sooner could read the page being left, or an element of it gone stale)."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    wait(browser, seen.staleness_of(page))


def sign_out(browser: Any) -> None:
    browser.find_element(By.XPATH, "//button[text()='Sign out']").click()
    wait(browser, seen.url_contains("/login"))


def alert(browser: Any) -> str:
    text: str = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "[role=alert]"))).text
    return text


def notice(browser: Any) -> str:
    text: str = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, ".notice"))).text
    return text


def test_an_editor_proposes_an_expansion_and_an_approver_applies_it(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=APPROVED_PLAN).status_code == 200
    add_user("ana", "editor")
    add_user("apu", "approver")

    sign_in(browser, server, "ana")
    browser.get(f"{server.url}/flags/{FLAG}")
    act = wait(
        browser, seen.presence_of_element_located((By.CSS_SELECTOR, "section[aria-labelledby=act-title]"))
    )
    assert "needs 1 approval from someone other than the proposer" in act.text
    assert not act.find_elements(By.XPATH, ".//button[text()='Expand']")  # it would only be refused
    browser.find_element(By.ID, "reason").send_keys("5 % looked fine for a day")
    load(browser, browser.find_element(By.XPATH, "//button[text()='Propose expand']"))
    assert notice(browser).startswith("Proposed")
    act = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=act-title]")
    assert "expand, proposed by user:ana" in act.text and "0 of 1 approval" in act.text
    assert weights(server) == {"control": 95, "candidate": 5}  # nothing acts before the approval

    # The proposer may not approve their own request: the refusal is shown on the page.
    load(browser, act.find_element(By.LINK_TEXT, "Approve or reject on the Requests page"))
    pending = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "table.pending")))
    row = pending.find_element(By.XPATH, f".//tr[th/a[text()='{FLAG}']]")
    assert "expand" in row.text and "user:ana" in row.text and "5 % looked fine" in row.text
    assert "0 of 1" in row.text
    assert not row.find_element(By.XPATH, ".//button[text()='Approve']").is_enabled()  # an editor
    sign_out(browser)
    (request,) = server.admin.get(f"/api/flags/{FLAG}/requests").json()

    sign_in(browser, server, "apu")
    load(browser, browser.find_element(By.LINK_TEXT, "Requests"))
    row = wait(browser, seen.presence_of_element_located((By.ID, f"request-{request['request_id']}")))
    load(browser, row.find_element(By.XPATH, ".//button[text()='Approve']"))
    assert notice(browser).startswith("Approved and applied")
    assert (
        "No change request is waiting"
        in browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=pending-title]").text
    )
    decided = browser.find_element(By.CSS_SELECTOR, "table.decided tbody").text
    assert "applied" in decided and "user:apu" in decided and "user:ana" in decided

    assert weights(server) == {"control": 80, "candidate": 20}
    load(browser, browser.find_element(By.LINK_TEXT, FLAG))
    facts = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, ".facts"))).text
    assert "control 80 % · candidate 20 %" in facts
    decisions = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=dec-title] tbody").text
    assert "expand" in decisions and "user:ana, approved by user:apu" in decisions


def test_the_proposer_cannot_approve_their_own_request(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=APPROVED_PLAN).status_code == 200
    add_user("apu", "approver")
    sign_in(browser, server, "apu")
    browser.get(f"{server.url}/flags/{FLAG}")
    load(
        browser, wait(browser, seen.element_to_be_clickable((By.XPATH, "//button[text()='Propose promote']")))
    )
    assert notice(browser).startswith("Proposed")
    browser.get(f"{server.url}/requests")
    load(browser, wait(browser, seen.element_to_be_clickable((By.XPATH, "//button[text()='Approve']"))))
    assert alert(browser) == "Refused: the proposer cannot approve their own change request"
    (request,) = server.admin.get(f"/api/flags/{FLAG}/requests").json()
    assert request["state"] == "proposed" and request["approvals"] == []
    # Rejecting one's own request is allowed: it withdraws it.
    row = browser.find_element(By.ID, f"request-{request['request_id']}")
    row.find_element(By.NAME, "reason").send_keys("promote after the holiday")
    load(browser, row.find_element(By.XPATH, ".//button[text()='Reject']"))
    assert notice(browser).startswith("Rejected")
    assert "promote after the holiday" in browser.find_element(By.CSS_SELECTOR, "table.decided").text
    assert server.admin.get(f"/api/flags/{FLAG}/requests").json()[0]["state"] == "rejected"


def test_promote_and_clean_up_from_the_flag_page(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    add_user("ana", "editor")
    sign_in(browser, server, "ana")
    browser.get(f"{server.url}/flags/{FLAG}")
    # Clean up before a promote or a rollback is refused, with the plan's reason.
    load(browser, wait(browser, seen.element_to_be_clickable((By.CSS_SELECTOR, "button[value=cleanup]"))))
    assert alert(browser) == (
        "Refused: cleanup refused: clean up follows a promote or a rollback decision; none is recorded"
        " (a key allowed to force may override with a reason)"
    )
    assert not server.admin.get(f"/api/flags/{FLAG}").json()["archived"]

    browser.find_element(By.ID, "reason").send_keys("support_v4 is better on every guardrail")
    load(browser, browser.find_element(By.CSS_SELECTOR, "button[value=promote]"))
    assert notice(browser).startswith("Promoted")
    assert weights(server) == {"control": 0, "candidate": 100}
    flag = server.admin.get(f"/api/flags/{FLAG}").json()
    assert flag["environments"]["production"]["default_variation"] == "candidate"

    load(browser, browser.find_element(By.CSS_SELECTOR, "button[value=cleanup]"))
    assert notice(browser).startswith("Cleaned up")
    assert "archived" in browser.find_element(By.TAG_NAME, "h1").text
    assert not browser.find_element(By.CSS_SELECTOR, "button[value=cleanup]").is_enabled()
    assert server.admin.get(f"/api/flags/{FLAG}").json()["archived"]
    states = [d["state"] for d in server.admin.get(f"/api/flags/{FLAG}/decisions").json()]
    assert states == ["promote", "cleanup"]
    changes = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=audit-title]").text
    assert "archive" in changes
    # Gone from the flags, but still found: the flags page lists it as archived, with a link back.
    browser.get(server.url + "/")
    assert FLAG not in browser.find_element(By.CSS_SELECTOR, "table.flags").text
    archived = browser.find_element(By.CSS_SELECTOR, "details.archived")
    archived.find_element(By.TAG_NAME, "summary").click()
    assert archived.find_element(By.TAG_NAME, "summary").text.startswith("1 archived flag ")
    archived.find_element(By.LINK_TEXT, FLAG).click()
    wait(browser, seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "archived"))


def test_an_admin_adds_a_user_on_the_users_page_who_then_signs_in(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    add_user("ada", "admin")
    sign_in(browser, server, "ada")
    load(browser, browser.find_element(By.LINK_TEXT, "Users"))
    table = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "table.users")))
    assert "ada (you)" in table.text and "admin" in table.text
    ada = browser.find_element(By.ID, "user-ada").text
    assert "never" not in ada  # she signed in just now

    # Two passwords that differ are refused, and the name and role are kept for another try.
    browser.find_element(By.ID, "new-name").send_keys("bea")
    Select(browser.find_element(By.ID, "new-role")).select_by_visible_text("approver")
    browser.find_element(By.ID, "new-password").send_keys(PASSWORD)
    browser.find_element(By.ID, "new-password-again").send_keys(PASSWORD + "!")
    load(browser, browser.find_element(By.XPATH, "//button[text()='Add user']"))
    assert alert(browser) == "Refused: password: the two passwords differ"
    assert browser.find_element(By.ID, "new-name").get_attribute("value") == "bea"
    browser.find_element(By.ID, "new-password").send_keys(PASSWORD)
    browser.find_element(By.ID, "new-password-again").send_keys(PASSWORD)
    load(browser, browser.find_element(By.XPATH, "//button[text()='Add user']"))
    assert notice(browser).startswith("Added")
    bea = browser.find_element(By.ID, "user-bea").text
    assert "approver" in bea and "never" in bea and "active" in bea
    sign_out(browser)

    sign_in(browser, server, "bea")
    assert browser.find_element(By.CSS_SELECTOR, ".who").text.startswith("bea approver")
    assert not browser.find_elements(By.LINK_TEXT, "Users")  # the nav shows it to admins only
    browser.get(server.url + "/users")
    assert alert(browser) == "Only admins manage users: your role (approver) may not."
    sign_out(browser)

    # Her role changes, then she is disabled: her session ends and she cannot sign in.
    sign_in(browser, server, "ada")
    browser.get(server.url + "/users")
    row = wait(browser, seen.presence_of_element_located((By.ID, "user-bea")))
    Select(row.find_element(By.TAG_NAME, "select")).select_by_visible_text("viewer")
    load(browser, row.find_element(By.XPATH, ".//button[text()='Change role']"))
    assert notice(browser).startswith("Role changed")
    row = browser.find_element(By.ID, "user-bea")
    assert "viewer" in row.text and "never" not in row.text  # her sign-in is shown
    load(browser, row.find_element(By.XPATH, ".//button[text()='Disable']"))
    assert notice(browser).startswith("Disabled")
    assert "disabled" in browser.find_element(By.ID, "user-bea").text
    assert [u["disabled_at"] is not None for u in server.admin.get("/api/users").json()] == [False, True]
