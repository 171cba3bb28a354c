"""An AI agent drives a release through `/mcp` with the MCP SDK's own client against the real
server on 127.0.0.1: it reads flags, the readout and its SQL, and acts only as far as its key
and the measurement plan let it — the same refusals, audit entries and forced marks as the API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from tests.e2e.test_decisions import FLAG, planned, send_traffic  # noqa: F401 - `planned` is a fixture
from tests.factories import RunningServer

READ_TOOLS = {
    "list_flags", "get_flag", "get_readout", "get_sql", "list_metrics", "get_plan", "get_timeline",
    "list_decisions",
}  # fmt: skip
ACTING_TOOLS = {"apply_decision", "propose_decision", "kill_flag", "restore_flag"}


def as_agent(server: RunningServer, key: str, session: Callable[[Client], Awaitable[Any]]) -> Any:
    """Run `session` with an MCP client connected to the server's /mcp with `key`."""

    async def run() -> Any:
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client,
        ):
            return await session(client)

    return anyio.run(run)


def call(server: RunningServer, key: str, tool: str, **arguments: Any) -> CallToolResult:
    async def session(client: Client) -> CallToolResult:
        return await client.call_tool(tool, arguments)

    result: CallToolResult = as_agent(server, key, session)
    return result


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    (content,) = result.content
    text: str = getattr(content, "text", "")
    assert "Traceback" not in text
    return text


@pytest.fixture
def breached(planned: RunningServer) -> RunningServer:  # noqa: F811 - the fixture imported above
    """A flag under a plan whose latency guardrail the candidate breaches (+30 %)."""
    send_traffic(planned, 4000, candidate_slowdown=0.3)
    return planned


def admin_key(server: RunningServer, name: str, can_force: bool = False) -> str:
    response = server.admin.post("/api/keys", json={"kind": "admin", "name": name, "can_force": can_force})
    assert response.status_code == 201, response.text
    key: str = response.json()["key"]
    return key


def test_an_agent_lists_the_tools_and_the_flags_with_their_ramp(server: RunningServer) -> None:
    server.create_flag()

    async def session(client: Client) -> tuple[Any, CallToolResult, CallToolResult]:
        return (
            await client.list_tools(),
            await client.call_tool("list_flags", {}),
            await client.call_tool("get_flag", {"flag_key": FLAG}),
        )

    tools, flags, flag = as_agent(server, server.admin_key, session)
    by_name = {t.name: t for t in tools.tools}
    assert set(by_name) == READ_TOOLS | ACTING_TOOLS
    assert all(t.description and t.output_schema for t in tools.tools)
    assert {n for n, t in by_name.items() if t.annotations and t.annotations.read_only_hint} == READ_TOOLS
    assert by_name["apply_decision"].input_schema["properties"]["action"]["enum"] == [
        "expand", "rollback", "pause", "promote", "cleanup", "continue",
    ]  # fmt: skip

    (listed,) = ok(flags)["flags"]
    assert listed["key"] == FLAG and listed["enabled"] is True and listed["paused"] is False
    assert listed["weights"] == {"control": 95, "candidate": 5}
    assert [v["key"] for v in ok(flag)["variations"]] == ["control", "candidate", "fallback"]


def test_an_agent_reads_the_recommendation_and_the_sql_behind_it(breached: RunningServer) -> None:
    readout = ok(call(breached, breached.admin_key, "get_readout", flag_key=FLAG))
    recommendation = readout["recommendation"]
    assert recommendation["action"] == "rollback"
    assert recommendation["sentence"].startswith("roll back: latency_ms is worse by +")
    assert recommendation["plan_source"] == "plan"
    assert readout["data_quality"]["exposed_units"] == 4000
    assert readout["plan"]["candidate"] == "candidate" and readout["plan"]["stages"] == [5, 20, 100]
    assert [m["key"] for m in readout["metrics"]] == ["latency_ms"]

    sql = ok(call(breached, breached.admin_key, "get_sql", flag_key=FLAG, dialect="postgres"))
    printed = breached.admin.get(f"/api/flags/{FLAG}/sql", params={"dialect": "postgres"}).text
    assert sql["sql"] == printed and sql["dialect"] == "postgres"

    plan = ok(call(breached, breached.admin_key, "get_plan", flag_key=FLAG))
    assert plan["source"] == "plan" and plan["plan"]["guardrails"][0]["metric"] == "latency_ms"
    timeline = ok(call(breached, breached.admin_key, "get_timeline", flag_key=FLAG))
    assert [e["action"] for e in timeline["events"]] == ["create", "plan"]


def test_a_decision_an_agent_applies_is_in_the_audit_log_under_its_key(breached: RunningServer) -> None:
    agent = admin_key(breached, "release agent")
    decided = ok(call(breached, agent, "apply_decision", flag_key=FLAG, action="rollback", reason="latency"))
    assert decided["state"] == "rollback" and decided["forced"] is False
    assert decided["rollout_after"]["rollout"]["weights"] == {"control": 100, "candidate": 0}

    (recorded,) = breached.admin.get(f"/api/flags/{FLAG}/decisions").json()
    assert recorded["decision_id"] == decided["decision_id"]
    assert recorded["actor"].endswith("(release agent)") and recorded["reason"] == "latency"
    change = breached.admin.get(f"/api/flags/{FLAG}/changes").json()[-1]
    assert change["action"] == "rollback" and change["actor"] == recorded["actor"]
    assert breached.admin.get("/api/audit/verify").json()["ok"] is True
    served = breached.admin.get(f"/api/flags/{FLAG}").json()["environments"]["production"]["rollout"]
    assert served["weights"] == {"control": 100, "candidate": 0}

    again = error_text(call(breached, agent, "apply_decision", flag_key=FLAG, action="rollback"))
    assert "conflict: rollback changes nothing" in again
    (listed,) = ok(call(breached, agent, "list_decisions", flag_key=FLAG))["result"]
    assert listed["state"] == "rollback" and "sql" not in listed


def test_an_agent_cannot_force_what_its_key_cannot_force(breached: RunningServer) -> None:
    agent = admin_key(breached, "release agent")
    refused = error_text(call(breached, agent, "apply_decision", flag_key=FLAG, action="expand"))
    assert "conflict: expand refused: latency_ms is worse" in refused
    forced = error_text(
        call(breached, agent, "apply_decision", flag_key=FLAG, action="expand", force=True, reason="ship it")
    )
    assert "forbidden: this key may not force an action against the plan" in forced
    assert breached.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1
    assert breached.admin.get(f"/api/flags/{FLAG}/decisions").json() == []

    operator = admin_key(breached, "on-call", can_force=True)
    no_reason = error_text(
        call(breached, operator, "apply_decision", flag_key=FLAG, action="expand", force=True)
    )
    assert "a forced action needs a reason" in no_reason
    overridden = ok(
        call(
            breached,
            operator,
            "apply_decision",
            flag_key=FLAG,
            action="expand",
            force=True,
            reason="load test",
        )
    )
    assert overridden["forced"] is True
    change = breached.admin.get(f"/api/flags/{FLAG}/changes").json()[-1]
    assert change["reason"] == "forced: load test"


def test_a_kill_is_never_refused_and_a_restore_is_gated_like_the_api(breached: RunningServer) -> None:
    agent = admin_key(breached, "release agent")
    killed = ok(call(breached, agent, "kill_flag", flag_key=FLAG, reason="latency page"))
    assert killed["changed"] is True and killed["flag"]["environments"]["production"]["enabled"] is False
    assert ok(call(breached, agent, "kill_flag", flag_key=FLAG))["changed"] is False
    refused = error_text(call(breached, agent, "restore_flag", flag_key=FLAG))
    assert "conflict: restore refused: roll back: latency_ms is worse" in refused
    forced = error_text(call(breached, agent, "restore_flag", flag_key=FLAG, force=True, reason="x"))
    assert "forbidden" in forced
    assert breached.admin.get(f"/api/flags/{FLAG}").json()["environments"]["production"]["enabled"] is False


def test_an_expansion_the_plan_puts_to_approval_is_proposed_not_applied(breached: RunningServer) -> None:
    plan = breached.admin.get(f"/api/flags/{FLAG}/plans/production").json()
    response = breached.admin.put(f"/api/flags/{FLAG}/plans/production", json={**plan, "approvers": 1})
    assert response.status_code == 200, response.text
    agent = admin_key(breached, "release agent")
    refused = error_text(call(breached, agent, "apply_decision", flag_key=FLAG, action="expand"))
    assert "needs 1 approval(s)" in refused
    proposed = ok(
        call(breached, agent, "propose_decision", flag_key=FLAG, action="expand", reason="stage met")
    )
    assert proposed["state"] == "proposed" and proposed["proposed_by"].endswith("(release agent)")
    (listed,) = breached.admin.get(f"/api/flags/{FLAG}/requests").json()
    assert listed["request_id"] == proposed["request_id"] and listed["required"] == 1
    assert breached.admin.get(f"/api/flags/{FLAG}").json()["version"] == 1


def test_an_unknown_flag_or_environment_is_a_tool_error_naming_it(server: RunningServer) -> None:
    server.create_flag()
    assert "not_found: no flag 'no_such_flag'" in error_text(
        call(server, server.admin_key, "get_readout", flag_key="no_such_flag")
    )
    assert "'nowhere'" in error_text(
        call(server, server.admin_key, "apply_decision", flag_key=FLAG, action="pause", environment="nowhere")
    )
    invalid = error_text(call(server, server.admin_key, "apply_decision", flag_key=FLAG, action="ship"))
    assert "action" in invalid


def test_the_mcp_endpoint_refuses_no_key_an_unknown_key_and_an_sdk_key(server: RunningServer) -> None:
    sdk_key = server.sdk_key()
    for headers, status in (
        ({}, 401),
        ({"Authorization": "Bearer rl_admin_not-a-key"}, 401),
        ({"Authorization": f"Bearer {sdk_key}"}, 403),
    ):
        response = httpx.post(f"{server.url}/mcp", json={}, headers=headers)
        assert response.status_code == status
        assert set(response.json()) == {"error", "message", "problems"}
    with pytest.raises(ExceptionGroup) as refused:
        as_agent(server, sdk_key, lambda client: client.list_tools())
    assert refused.group_contains(MCPError)
