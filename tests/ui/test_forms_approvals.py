"""The change-request, flag-action and users forms over plain HTTP: each refuses a form without
the session's CSRF token and a role that may not use it, on the server, before anything acts."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.factories import RunningServer
from tests.ui.conftest import PASSWORD
from tests.ui.test_approvals import APPROVED_PLAN

FLAG = "support_assistant_profile"
Signer = Callable[[str], tuple[httpx.Client, str]]
FORGERIES = ({}, {"csrf": "0" * 64})


def requests_of(server: RunningServer) -> list[dict[str, object]]:
    answer: list[dict[str, object]] = server.admin.get(f"/api/flags/{FLAG}/requests").json()
    return answer


def test_proposing_needs_the_csrf_token_and_an_editor(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=APPROVED_PLAN).status_code == 200
    add_user("ana", "editor")
    add_user("vic", "viewer")
    form = {"action": "expand", "environment": "production", "reason": "ready"}
    ana, csrf = sign_in("ana")
    for forged in FORGERIES:
        answer = ana.post(f"/flags/{FLAG}/requests", data={**form, **forged})
        assert answer.status_code == 403 and "no valid CSRF token" in answer.text
    vic, vic_csrf = sign_in("vic")
    answer = vic.post(f"/flags/{FLAG}/requests", data={**form, "csrf": vic_csrf})
    assert answer.status_code == 403 and "your role (viewer) may look but not propose" in answer.text
    assert requests_of(server) == []
    answer = ana.post(f"/flags/{FLAG}/requests", data={**form, "action": "rollback", "csrf": csrf})
    assert answer.status_code == 422 and "expand or promote" in answer.text
    assert ana.post(f"/flags/{FLAG}/requests", data={**form, "csrf": csrf}).status_code == 303
    (request,) = requests_of(server)
    assert (request["proposed_by"], request["action"], request["reason"]) == ("user:ana", "expand", "ready")
    # On a plan that needs no approval, the refusal says to decide directly.
    unapproved = {**APPROVED_PLAN, "approvers": 0, "version": 1}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=unapproved).status_code == 200
    answer = ana.post(f"/flags/{FLAG}/requests", data={**form, "csrf": csrf})
    assert answer.status_code == 422 and "needs no approval: decide directly" in answer.text


def test_approving_and_rejecting_need_the_csrf_token_and_an_approver(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=APPROVED_PLAN).status_code == 200
    for name, role in (("ana", "editor"), ("vic", "viewer"), ("apu", "approver")):
        add_user(name, role)
    ana, ana_csrf = sign_in("ana")
    form = {"action": "expand", "environment": "production", "csrf": ana_csrf}
    assert ana.post(f"/flags/{FLAG}/requests", data=form).status_code == 303
    (request,) = requests_of(server)
    approve, reject = (f"/requests/{request['request_id']}/{verb}" for verb in ("approve", "reject"))

    vic, vic_csrf = sign_in("vic")
    page = vic.get("/requests")
    assert page.status_code == 200 and "user:ana" in page.text and "may look but not approve" in page.text
    for client, csrf, role in ((vic, vic_csrf, "viewer"), (ana, ana_csrf, "editor")):
        for url in (approve, reject):
            answer = client.post(url, data={"csrf": csrf})
            assert answer.status_code == 403 and f"Your role ({role}) may not approve" in answer.text
    apu, apu_csrf = sign_in("apu")
    for url in (approve, reject):
        for forged in FORGERIES:
            answer = apu.post(url, data=forged)
            assert answer.status_code == 403 and "no valid CSRF token" in answer.text
    assert apu.post(f"/requests/{request['request_id']}/apply", data={"csrf": apu_csrf}).status_code == 404
    assert requests_of(server)[0]["state"] == "proposed"
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1

    answer = apu.post(approve, data={"csrf": apu_csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/requests?done=applied"
    assert requests_of(server)[0]["state"] == "applied"
    again = apu.post(approve, data={"csrf": apu_csrf})
    assert again.status_code == 409 and "is already applied" in again.text
    assert apu.post("/requests/nope/approve", data={"csrf": apu_csrf}).status_code == 404


def test_forcing_promote_or_clean_up_needs_the_force_permission_and_a_reason(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    add_user("ana", "editor")
    add_user("ada", "admin")  # an admin user may force
    form = {"action": "cleanup", "environment": "production", "force": "true"}
    ana, ana_csrf = sign_in("ana")
    answer = ana.post(f"/flags/{FLAG}/actions", data={**form, "csrf": ana_csrf, "reason": "tidy"})
    assert answer.status_code == 403 and "may not force" in answer.text
    ada, ada_csrf = sign_in("ada")
    answer = ada.post(f"/flags/{FLAG}/actions", data={**form, "csrf": ada_csrf})
    assert answer.status_code == 422 and "a forced action needs a reason" in answer.text
    assert not server.admin.get(f"/api/flags/{FLAG}").json()["archived"]
    answer = ada.post(f"/flags/{FLAG}/actions", data={**form, "csrf": ada_csrf, "reason": "never shipped"})
    assert answer.status_code == 303
    (decision,) = server.admin.get(f"/api/flags/{FLAG}/decisions").json()
    assert (decision["state"], decision["forced"], decision["actor"]) == ("cleanup", True, "user:ada")
    assert server.admin.get(f"/api/flags/{FLAG}").json()["archived"]


def test_the_users_forms_need_the_csrf_token_and_an_admin(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    add_user("ada", "admin")
    add_user("apu", "approver")
    new = {"name": "cy", "role": "editor", "password": PASSWORD, "password_again": PASSWORD}
    apu, apu_csrf = sign_in("apu")
    assert apu.get("/users").status_code == 403
    answer = apu.post("/users", data={**new, "csrf": apu_csrf})
    assert answer.status_code == 403 and "Only admins manage users" in answer.text
    ada, csrf = sign_in("ada")
    for forged in FORGERIES:
        answer = ada.post("/users", data={**new, **forged})
        assert answer.status_code == 403 and "no valid CSRF token" in answer.text
    assert [u["name"] for u in server.admin.get("/api/users").json()] == ["ada", "apu"]

    short = ada.post("/users", data={**new, "password": "short", "password_again": "short", "csrf": csrf})
    assert short.status_code == 422 and "password: at least 10 characters" in short.text
    taken = ada.post("/users", data={**new, "name": "apu", "csrf": csrf})
    assert taken.status_code == 409 and "user &#39;apu&#39; already exists" in taken.text
    assert ada.post("/users", data={**new, "csrf": csrf}).status_code == 303
    cy = next(u for u in server.admin.get("/api/users").json() if u["name"] == "cy")
    assert cy["role"] == "editor"

    # Changing a user: the same token and role checks.
    change = f"/users/{cy['id']}"
    answer = apu.post(change, data={"change": "role", "role": "admin", "csrf": apu_csrf})
    assert answer.status_code == 403 and "Only admins manage users" in answer.text
    assert ada.post(change, data={"change": "role", "role": "admin"}).status_code == 403
    bad = ada.post(change, data={"change": "role", "role": "owner", "csrf": csrf})
    assert bad.status_code == 422 and "one of viewer, editor, approver, admin" in bad.text
    assert ada.post("/users/nobody", data={"change": "disabled", "csrf": csrf}).status_code == 404
    me = next(u for u in server.admin.get("/api/users").json() if u["name"] == "ada")
    own = ada.post(f"/users/{me['id']}", data={"change": "disabled", "csrf": csrf})
    assert own.status_code == 409 and "disable yourself" in own.text
    assert ada.post(change, data={"change": "role", "role": "approver", "csrf": csrf}).status_code == 303
    assert next(u for u in server.admin.get("/api/users").json() if u["name"] == "cy")["role"] == "approver"


def test_a_disabled_users_session_stops_working_at_once(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    add_user("ada", "admin")
    add_user("ana", "editor")
    ana, ana_csrf = sign_in("ana")
    ada, csrf = sign_in("ada")
    (user,) = [u for u in server.admin.get("/api/users").json() if u["name"] == "ana"]
    assert ada.post(f"/users/{user['id']}", data={"change": "disabled", "csrf": csrf}).status_code == 303
    assert ana.get("/").status_code == 303  # back to the sign-in page
    kill = {"action": "kill", "environment": "production", "csrf": ana_csrf}
    assert ana.post(f"/flags/{FLAG}/actions", data=kill).headers["location"].startswith("/login")
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1
    with httpx.Client(base_url=server.url, timeout=60) as again:
        form = again.get("/login").text
        token = form.split('name="csrf" value="')[1].split('"')[0]
        answer = again.post("/login", data={"csrf": token, "name": "ana", "password": PASSWORD})
        assert answer.status_code == 401
    # Enabled again, she signs in anew (her old session stays ended).
    assert ada.post(f"/users/{user['id']}", data={"change": "enabled", "csrf": csrf}).status_code == 303
    assert ana.get("/").status_code == 303
    sign_in("ana")


def test_a_request_needing_two_approvals_waits_for_a_second_approver(
    server: RunningServer, add_user: Callable[[str, str], None], sign_in: Signer
) -> None:
    server.create_flag()
    plan = {**APPROVED_PLAN, "approvers": 2}
    assert server.admin.put(f"/api/flags/{FLAG}/plans/production", json=plan).status_code == 200
    for name, role in (("ana", "editor"), ("apu", "approver"), ("abe", "approver")):
        add_user(name, role)
    ana, ana_csrf = sign_in("ana")
    form = {"action": "expand", "environment": "production", "csrf": ana_csrf}
    assert ana.post(f"/flags/{FLAG}/requests", data=form).status_code == 303
    assert "needs 2 approvals" in ana.get(f"/flags/{FLAG}").text
    (request,) = requests_of(server)
    approve = f"/requests/{request['request_id']}/approve"
    apu, apu_csrf = sign_in("apu")
    answer = apu.post(approve, data={"csrf": apu_csrf})
    assert answer.status_code == 303 and answer.headers["location"] == "/requests?done=approved"
    page = apu.get("/requests?done=approved").text
    assert "waits for more approvals" in page and "1 of 2" in page and "(user:apu)" in page
    twice = apu.post(approve, data={"csrf": apu_csrf})
    assert twice.status_code == 409 and "you have already approved this change request" in twice.text
    assert server.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1
    abe, abe_csrf = sign_in("abe")
    assert abe.post(approve, data={"csrf": abe_csrf}).headers["location"] == "/requests?done=applied"
    (decision,) = server.admin.get(f"/api/flags/{FLAG}/decisions").json()
    assert decision["actor"] == "user:ana, approved by user:apu, user:abe"
