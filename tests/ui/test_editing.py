"""Creating, ramping and editing flags from the web UI against the real server: the browser
journey a release owner takes, and the server's answers to stale edits, bad YAML, viewers and
forms without the CSRF token."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import httpx
import yaml
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from tests.factories import RunningServer
from tests.ui.test_release_room import FLAG, send_traffic, sign_in, wait, weights

SignIn = Callable[[str], tuple[httpx.Client, str]]


def form_fields(page: str, form_action: str, what: str | None = None) -> dict[str, str]:
    """The hidden fields of the page's form posting to `form_action` (and `what`, if given)."""
    for form in re.findall(r"<form[^>]*>.*?</form>", page, re.S):
        if f'action="{form_action}"' not in form:
            continue
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))
        if what is None or fields.get("what") == what:
            return {k: html.unescape(v) for k, v in fields.items()}
    raise AssertionError(f"no form posting to {form_action} ({what}) on the page")


def test_a_release_owner_creates_a_flag_ramps_it_reads_it_out_and_rolls_it_back_in_the_browser(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    add_user("ana", "admin")  # an admin: the plan is written on the page too
    sign_in(browser, server, "ana")
    browser.find_element(By.LINK_TEXT, "New flag").click()
    wait(browser, seen.presence_of_element_located((By.ID, "variations")))
    browser.find_element(By.ID, "key").send_keys(FLAG)
    browser.find_element(By.ID, "unit").clear()
    browser.find_element(By.ID, "unit").send_keys("conversation")
    browser.find_element(By.ID, "description").send_keys("support answers from the new prompt profile")
    variations = browser.find_element(By.ID, "variations")
    variations.clear()
    variations.send_keys("control: {profile: v1}\ncandidate: {profile: v2}\n")
    browser.find_element(By.CSS_SELECTOR, "#type option[value=json]").click()
    browser.find_element(By.CSS_SELECTOR, "form[aria-label='New flag'] button[type=submit]").click()
    wait(browser, seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Created"))
    flag = server.admin.get(f"/api/flags/{FLAG}").json()
    assert (flag["type"], flag["assignment_unit"], flag["version"]) == ("json", "conversation", 1)
    assert [v["value"] for v in flag["variations"]] == [{"profile": "v1"}, {"profile": "v2"}]
    assert weights(server) == {"control": 100}

    # Ramp the candidate to 10 % from the page.
    browser.find_element(By.CSS_SELECTOR, "#ramp-variation option[value=candidate]").click()
    share = browser.find_element(By.ID, "ramp-percent")
    share.clear()
    share.send_keys("10")
    browser.find_element(By.ID, "ramp-reason").send_keys("first stage")
    browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby=ramp-title] button").click()
    wait(browser, seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Ramped"))
    assert weights(server) == {"control": 90, "candidate": 10}
    assert "control 90 % · candidate 10 %" in browser.find_element(By.CSS_SELECTOR, ".facts").text

    # A measurement plan written on the page: latency is a guardrail (the metric catalog has it).
    metric = {"type": "event", "event": "latency_ms", "aggregation": "mean", "direction": "decrease"}
    assert server.admin.put("/api/metrics/latency_ms", json=metric).status_code == 200
    plan = browser.find_element(By.ID, "plan-text")
    plan.send_keys("candidate: candidate\nguardrails:\n- metric: latency_ms\n  margin: 0.05\n")
    browser.find_element(By.CSS_SELECTOR, "form[aria-labelledby=plan-title] button").click()
    wait(
        browser,
        seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Saved: the measurement plan"),
    )
    assert "latency_ms" in server.admin.get(f"/api/flags/{FLAG}/plans/production").text

    # Evidence arrives (the candidate half a second slower); the page reads it out and recommends.
    send_traffic(server, 600, candidate_slowdown=0.5, extra="tokens")
    server.admin.get(f"/api/flags/{FLAG}/report")  # waits until the log has loaded it
    browser.get(f"{server.url}/flags/{FLAG}")
    table = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, "table.metrics")))
    latency = table.find_element(By.CSS_SELECTOR, "tbody tr.metric-row")
    assert latency.find_element(By.TAG_NAME, "th").text == "latency_ms" and "harm detected" in latency.text
    recommendation = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=rec-title]").text
    said = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "section[aria-labelledby=rec-title] li")]
    assert said and len(said) == len(set(said))  # a breached guardrail is a reason and a blocker: told once
    assert "roll back" in recommendation.lower() or "rollback" in recommendation.lower()

    browser.find_element(By.ID, "reason").send_keys("half a second slower")
    browser.find_element(By.CSS_SELECTOR, "button[value=rollback]").click()
    wait(browser, seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Rolled back"))
    assert weights(server) == {"control": 100, "candidate": 0}
    timeline = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=timeline-title]").text
    assert "rollback" in timeline.lower() and "ramp" in timeline.lower()
    decisions = browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=dec-title] tbody").text
    assert "rollback" in decisions and "user:ana" in decisions and "half a second slower" in decisions

    # The decision's own page: the evidence it was made on, and a replay on today's data.
    browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=dec-title] tbody tr a").click()
    wait(browser, seen.presence_of_element_located((By.ID, "then-title")))
    facts = browser.find_element(By.CSS_SELECTOR, "dl.facts").text
    assert "control 90 % · candidate 10 % → control 100 %" in facts and "half a second slower" in facts
    row = browser.find_element(By.CSS_SELECTOR, "table.metrics tbody tr.metric-row")
    assert "latency_ms" in row.text and "harm detected" in row.text  # the snapshot, not today's readout
    assert (
        "Exposed units"
        in browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=dq-then-title]").text
    )
    browser.find_element(By.CSS_SELECTOR, "section[aria-labelledby=replay-title] button").click()
    wait(
        browser, seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "The figures are the same")
    )


def test_the_page_reloads_itself_when_someone_else_changes_the_release(
    server: RunningServer, browser: Any, add_user: Callable[[str, str], None]
) -> None:
    server.create_flag()
    add_user("ana", "editor")
    sign_in(browser, server, "ana")
    browser.get(f"{server.url}/flags/{FLAG}")
    facts = wait(browser, seen.presence_of_element_located((By.CSS_SELECTOR, ".facts")))
    assert "control 95 % · candidate 5 %" in facts.text
    answer = server.admin.post(
        f"/api/flags/{FLAG}/kill", json={"environment": "production", "reason": "pager"}
    )
    assert answer.status_code == 200
    # No click: the page's script sees the release moved (it polls every 10 s) and reloads.
    # (The heading read while the page reloads goes stale: such a read is tried again.)
    WebDriverWait(browser, 30, ignored_exceptions=(WebDriverException,)).until(
        lambda b: "killed" in b.find_element(By.TAG_NAME, "h1").text
    )


def test_a_stale_edit_is_refused_with_the_other_persons_change_and_the_text_kept(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    add_user("ana", "admin")
    client, _ = sign_in("ana")
    page = client.get(f"/flags/{FLAG}").text
    read = form_fields(page, f"/flags/{FLAG}/edit", "config")
    assert read["version"] == "1"
    config = yaml.safe_load(read["base"])
    assert config["rollout"] == {"weights": {"control": 95, "candidate": 5}}

    # Someone else ramps the flag meanwhile (through the API).
    moved = server.admin.post(
        f"/api/flags/{FLAG}/ramp",
        json={"environment": "production", "variation": "candidate", "percent": 20, "reason": "stage 2"},
    )
    assert moved.status_code == 200, moved.text

    mine = (
        read["base"].replace("enabled: true", "enabled: false")
        if "enabled" in read["base"]
        else (read["base"] + "enabled: false\n")
    )
    answer = client.post(
        f"/flags/{FLAG}/edit",
        data={**read, "text": mine, "reason": "turn it off"},
    )
    assert answer.status_code == 409
    assert "changed since this form was read (version 1 → 2)" in answer.text
    assert "stage 2" in answer.text and "admin" in answer.text.lower()  # who and why
    assert "-    candidate: 5" in answer.text and "+    candidate: 20" in answer.text  # their diff
    assert "enabled: false" in answer.text  # my text is kept
    assert weights(server) == {"control": 80, "candidate": 20}  # nothing overwritten

    # Saving again from the refusal page is deliberate: it is based on version 2 now.
    again = form_fields(answer.text, f"/flags/{FLAG}/edit", "config")
    assert again["version"] == "2"
    mine = (
        again["base"] + "enabled: false\n"
        if "enabled" not in again["base"]
        else again["base"].replace("enabled: true", "enabled: false")
    )
    saved = client.post(f"/flags/{FLAG}/edit", data={**again, "text": mine, "reason": "turn it off"})
    assert saved.status_code == 303 and "done=saved_config" in saved.headers["location"]
    flag = server.admin.get(f"/api/flags/{FLAG}").json()
    assert flag["version"] == 3 and flag["environments"]["production"]["enabled"] is False
    assert flag["environments"]["production"]["rollout"]["weights"] == {"control": 80, "candidate": 20}
    (change,) = [c for c in server.admin.get(f"/api/flags/{FLAG}/changes").json() if c["version"] == 3]
    assert (change["actor"], change["reason"]) == ("user:ana", "turn it off")


def test_a_plan_is_written_from_the_page_and_a_bad_one_is_refused_with_where_and_why(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    add_user("ana", "admin")
    client, _ = sign_in("ana")
    read = form_fields(client.get(f"/flags/{FLAG}").text, f"/flags/{FLAG}/edit", "plan")
    assert (read["version"], read["base"]) == ("0", "")

    broken = client.post(f"/flags/{FLAG}/edit", data={**read, "text": "candidate: [candidate\n"})
    assert broken.status_code == 422
    assert "plan: is not valid YAML at line 2, column 1: expected" in broken.text
    assert "candidate: [candidate" in broken.text  # kept for fixing
    wrong = client.post(f"/flags/{FLAG}/edit", data={**read, "text": "approvers: many\n"})
    assert wrong.status_code == 422 and "approvers" in wrong.text
    assert server.admin.get(f"/api/flags/{FLAG}/plans/production").status_code == 404

    text = "candidate: candidate\napprovers: 0\nstages:\n- percent: 5\n  min_units: 100\n- percent: 100\n"
    saved = client.post(f"/flags/{FLAG}/edit", data={**read, "text": text, "reason": "first plan"})
    assert saved.status_code == 303, saved.text
    plan = server.admin.get(f"/api/flags/{FLAG}/plans/production").json()
    assert plan["candidate"] == "candidate" and [s["percent"] for s in plan["stages"]] == [5, 100]
    shown = form_fields(client.get(f"/flags/{FLAG}").text, f"/flags/{FLAG}/edit", "plan")
    assert shown["version"] == str(plan["version"]) and "min_units: 100" in shown["base"]


def test_an_editor_ramps_through_the_plans_checks_but_cannot_rewrite_rollout_or_plan_past_them(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    plan = {"candidate": "candidate", "approvers": 1}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    add_user("eve", "editor")
    client, _ = sign_in("eve")
    page = client.get(f"/flags/{FLAG}").text
    assert "Rewriting the targeting, rollout or plan is for admins" in page
    ramp = form_fields(page, f"/flags/{FLAG}/ramp")
    grown = client.post(f"/flags/{FLAG}/ramp", data={**ramp, "variation": "candidate", "percent": "100"})
    assert grown.status_code == 409  # the plan's approvals apply to a ramp
    config = form_fields(page, f"/flags/{FLAG}/edit", "config")
    everyone = config["base"].replace("candidate: 5", "candidate: 100").replace("control: 95", "control: 0")
    refused = client.post(f"/flags/{FLAG}/edit", data={**config, "text": everyone})
    assert refused.status_code == 403 and "needs an admin" in refused.text
    plan_form = form_fields(page, f"/flags/{FLAG}/edit", "plan")
    loosened = client.post(
        f"/flags/{FLAG}/edit", data={**plan_form, "text": "candidate: candidate\napprovers: 0\n"}
    )
    assert loosened.status_code == 403
    assert weights(server) == {"control": 95, "candidate": 5}
    assert server.admin.get(f"/api/flags/{FLAG}/plans/production").json()["approvers"] == 1


def test_a_stale_ramp_is_refused_and_says_who_moved_the_flag(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    add_user("ana", "editor")
    client, _ = sign_in("ana")
    read = form_fields(client.get(f"/flags/{FLAG}").text, f"/flags/{FLAG}/ramp")
    server.admin.post(f"/api/flags/{FLAG}/kill", json={"environment": "production", "reason": "pager"})
    answer = client.post(
        f"/flags/{FLAG}/ramp", data={**read, "variation": "candidate", "percent": "10", "reason": "go"}
    )
    assert answer.status_code == 409
    assert "moved from version 1 to 2 since this page was read" in answer.text and "pager" in answer.text
    assert weights(server) == {"control": 95, "candidate": 5}
    bad = client.post(
        f"/flags/{FLAG}/ramp",
        data={**read, "version": "2", "variation": "candidate", "percent": "lots"},
    )
    assert bad.status_code == 422 and "percent: is &#39;lots&#39;; a number from 0 to 100" in bad.text


def test_a_decision_page_is_signed_in_only_and_its_replay_needs_the_csrf_token(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    decided = server.admin.post(
        f"/api/flags/{FLAG}/decisions",
        json={"environment": "production", "action": "pause", "reason": "hold"},
    )
    assert decided.status_code == 201, decided.text
    decision_id = decided.json()["decision_id"]
    add_user("vic", "viewer")
    viewer, csrf = sign_in("vic")
    page = viewer.get(f"/flags/{FLAG}/decisions/{decision_id}")
    assert page.status_code == 200 and "pause" in page.text and "hold" in page.text
    assert "made without metric definitions: there is nothing to replay" in page.text
    assert viewer.get(f"/flags/{FLAG}/decisions/nope").status_code == 404
    forged = viewer.post(f"/flags/{FLAG}/decisions/{decision_id}/replay", data={"csrf": "forged"})
    assert forged.status_code == 403 and "no valid CSRF token" in forged.text
    nothing = viewer.post(f"/flags/{FLAG}/decisions/{decision_id}/replay", data={"csrf": csrf})
    assert nothing.status_code == 422 and "nothing to replay" in nothing.text


def test_viewers_and_forms_without_the_csrf_token_cannot_create_ramp_or_edit(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    add_user("vic", "viewer")
    add_user("ana", "editor")
    viewer, viewer_csrf = sign_in("vic")
    editor, _ = sign_in("ana")
    page = viewer.get(f"/flags/{FLAG}").text
    assert 'name="text" rows=' in page and "readonly" in page  # shown, not editable
    read = form_fields(page, f"/flags/{FLAG}/ramp")
    posts = [
        ("/new-flag", {"key": "another", "variations": "off: false\non: true\n"}),
        (f"/flags/{FLAG}/ramp", {**read, "variation": "candidate", "percent": "50"}),
        (f"/flags/{FLAG}/edit", {**read, "what": "config", "text": "enabled: false\n"}),
    ]
    for url, data in posts:
        refused = viewer.post(url, data={**data, "csrf": viewer_csrf})
        assert refused.status_code == 403 and "may look but not edit" in refused.text, url
        forged = editor.post(url, data={**data, "csrf": "forged"})
        assert forged.status_code == 403 and "no valid CSRF token" in forged.text, url
    assert server.admin.get("/api/flags/another").status_code == 404
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1


def test_creating_a_flag_that_exists_or_has_bad_variations_says_why_and_keeps_the_form(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    add_user("ana", "editor")
    client, csrf = sign_in("ana")
    form = {"csrf": csrf, "key": FLAG, "type": "json", "unit": "conversation", "environments": "production"}
    taken = client.post("/new-flag", data={**form, "variations": "a: 1\nb: 2\n"})
    assert taken.status_code == 409 and "already exists" in taken.text
    assert 'value="conversation"' in taken.text  # the form is kept
    empty = client.post("/new-flag", data={**form, "key": "fresh", "variations": ""})
    assert empty.status_code == 422 and "variations: at least one" in empty.text
    created = client.post(
        "/new-flag", data={**form, "key": "fresh", "type": "boolean", "variations": "off: false\non: true\n"}
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/flags/fresh?environment=production&done=created#edit"
    doc = server.admin.get("/api/flags/fresh").json()
    production = doc["environments"]["production"]
    assert (production["default_variation"], production["off_variation"]) == ("off", "off")
    assert production["rollout"]["weights"] == {"off": 100}


def test_yaml_aliases_and_a_non_integer_version_are_refused_with_the_text_kept(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    add_user("ada", "admin")
    client, csrf = sign_in("ada")
    laughs = "lol: [&a [x, x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]]\n"
    bomb = client.post(
        "/new-flag",
        data={"csrf": csrf, "key": "laughs", "type": "json", "unit": "user_id", "variations": laughs},
    )
    assert bomb.status_code == 422 and "aliases (*name) are not accepted" in bomb.text
    assert server.admin.get("/api/flags/laughs").status_code == 404
    read = form_fields(client.get(f"/flags/{FLAG}").text, f"/flags/{FLAG}/edit", "config")
    aliased = client.post(f"/flags/{FLAG}/edit", data={**read, "text": read["base"] + "x: &y 1\nz: *y\n"})
    assert aliased.status_code == 422 and "aliases (*name) are not accepted" in aliased.text
    wrong = client.post(f"/flags/{FLAG}/edit", data={**read, "version": "abc", "text": "enabled: false\n"})
    assert wrong.status_code == 422 and "version: is &#39;abc&#39;" in wrong.text
    assert "enabled: false" in wrong.text and wrong.headers["content-type"].startswith("text/html")
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1


def test_the_stamp_moves_with_the_release_and_the_evidence(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: SignIn
) -> None:
    server.create_flag()
    add_user("vic", "viewer")
    client, _ = sign_in("vic")
    url = f"/flags/{FLAG}/stamp?environment=production"
    first = client.get(url).json()
    assert httpx.get(server.url + url).status_code == 401  # signed in only
    server.admin.post(f"/api/flags/{FLAG}/kill", json={"environment": "production"})
    second = client.get(url).json()
    assert second["release"] != first["release"] and second["evidence"] == first["evidence"]
    send_traffic(server, 10, candidate_slowdown=0, extra="tokens")
    server.admin.get(f"/api/flags/{FLAG}/report")  # the readout waits for the evidence to load
    third = client.get(url).json()
    assert third["release"] == second["release"] and third["evidence"] > second["evidence"]
