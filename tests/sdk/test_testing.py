"""`ramplight.sdk.testing.InMemory`: a real Client on flags a test pins, keeping the evidence its
code emitted, with no server and no thread."""

from __future__ import annotations

import threading

import pytest

from ramplight import Client
from ramplight.core.errors import ValidationError
from ramplight.sdk.testing import InMemory
from tests.factories import RunningServer, flag_doc

PROFILES = {"control": {"prompt_profile": "support_v3"}, "candidate": {"prompt_profile": "support_v4"}}


def test_a_pinned_variation_is_served_to_every_unit_and_a_unit_pin_wins() -> None:
    memory = InMemory()
    memory.flag("support_assistant_profile", PROFILES, serve="candidate", assignment_unit="conversation")
    memory.pin("support_assistant_profile", "control", unit_id="conv_2")
    with memory.client() as client:
        first = client.evaluate("support_assistant_profile", "conv_1")
        second = client.evaluate("support_assistant_profile", "conv_2")
    assert (first.variation, first.value, first.reason) == ("candidate", PROFILES["candidate"], "rollout")
    assert (second.variation, second.reason, second.rule_id) == ("control", "rule", "pinned-control")


def test_a_flag_without_variations_is_a_boolean_that_is_off_until_pinned() -> None:
    memory = InMemory()
    memory.flag("new_checkout")
    client = memory.client()
    assert client.bool_value("new_checkout", "u1", default=True) is False
    memory.pin("new_checkout", "on")  # installed at once: no refresh, no poll
    assert client.bool_value("new_checkout", "u1") is True
    assert client.string_value("new_checkout", "u1", default="x") == "x"  # type mismatch: default
    assert client.evaluate("undeclared", "u1", default=7).error_code == "flag_not_found"


def test_a_full_flag_document_runs_its_targeting_rules_and_segments() -> None:
    memory = InMemory(environment="production")
    memory.add_segment({"key": "beta", "included": ["acme"], "attribute": "account"})
    rules = [
        {
            "id": "pro",
            "clauses": [{"attribute": "plan", "op": "in", "values": ["pro"]}],
            "variation": "candidate",
        },
        {"id": "beta", "clauses": [{"op": "in_segment", "values": ["beta"]}], "variation": "fallback"},
    ]
    memory.add(
        flag_doc(
            environments={
                "production": {"default_variation": "control", "off_variation": "control", "rules": rules}
            }
        )
    )
    client = memory.client()
    assert client.evaluate("support_assistant_profile", "c1", {"plan": "pro"}).rule_id == "pro"
    assert client.evaluate("support_assistant_profile", "c2", {"account": "acme"}).variation == "fallback"
    assert client.evaluate("support_assistant_profile", "c3", {"plan": "free"}).reason == "default"


def test_a_switched_off_flag_keeps_serving_off_to_units_not_pinned() -> None:
    memory = InMemory()
    doc = flag_doc(environments={"test": {"default_variation": "control", "off_variation": "control"}})
    doc["environments"]["test"]["enabled"] = False
    memory.add(doc)
    memory.pin("support_assistant_profile", "candidate", unit_id="conv_1")
    client = memory.client()
    assert client.evaluate("support_assistant_profile", "conv_1").variation == "candidate"
    assert client.evaluate("support_assistant_profile", "conv_2").variation == "control"


def test_exposures_events_and_scores_are_kept_as_the_contract_types_until_cleared() -> None:
    memory = InMemory()
    memory.flag("support_assistant_profile", PROFILES, serve="candidate", assignment_unit="conversation")
    client = memory.client()
    with client.exposure("support_assistant_profile", "conv_1", {"plan": "pro"}) as x:
        x.fallback("timeout")
    client.evaluate("support_assistant_profile", "conv_2")  # evaluated, never ran: no exposure
    client.track("resolved", "conv_1", value=1, flag_key="support_assistant_profile")
    client.score("faithfulness", 0.92, unit_id="conv_1", evaluator_version="v2")
    (exposure,) = memory.exposures
    assert (exposure.unit_id, exposure.assigned_variation, exposure.served_variation) == (
        "conv_1",
        "candidate",
        "control",
    )
    assert (exposure.fallback_reason, exposure.behavior, exposure.attributes) == (
        "timeout",
        PROFILES["control"],
        {"plan": "pro"},
    )
    assert [(e.name, e.value, e.assignment_unit) for e in memory.events] == [
        ("resolved", 1.0, "conversation")
    ]
    assert [(s.name, s.score, s.evaluator) for s in memory.evals] == [("faithfulness", 0.92, "llm_judge")]
    assert (client.stats.queued, client.stats.sent, client.flush()) == (3, 3, True)
    memory.clear()
    assert (memory.exposures, memory.events, memory.evals, client.stats.queued) == ([], [], [], 0)


def test_evidence_the_server_would_refuse_is_kept_apart_with_its_reason() -> None:
    memory = InMemory()
    memory.flag("support_assistant_profile", PROFILES, assignment_unit="conversation")
    client = memory.client()
    client.track("resolved", "u1", value=1, flag_key="support_assistant_profile", assignment_unit="user")
    client.score("faithfulness", 0.5)  # joinable to nothing
    assert [str(r) for r in memory.rejected] == [
        "events.assignment_unit: flag 'support_assistant_profile' is assigned by 'conversation', not 'user'",
        "evals.unit_id: an eval score needs unit_id, trace_id or response_id to be joinable",
    ]
    assert (memory.events, client.stats.rejected) == ([], 2)


def test_the_in_memory_client_starts_no_thread() -> None:
    before = threading.active_count()
    memory = InMemory()
    memory.flag("new_checkout", serve="on")
    with memory.client() as client:
        assert client.ready and client.refresh() is False
        assert threading.active_count() == before


def test_mistakes_in_a_test_setup_are_named_precisely() -> None:
    memory = InMemory()
    memory.flag("support_assistant_profile", PROFILES)
    with pytest.raises(ValidationError, match=r"no variation 'candiate' \(has control, candidate\)"):
        memory.pin("support_assistant_profile", "candiate")
    with pytest.raises(ValidationError, match=r"no flag 'new_chekout' to pin \(declared: support_"):
        memory.pin("new_chekout", "on")
    with pytest.raises(ValidationError, match=r"has no environment 'test' \(has production\)"):
        memory.add(flag_doc())
    with pytest.raises(ValueError, match="needs an sdk_key"):
        Client(evidence=memory)


def test_in_memory_and_server_fed_clients_bucket_units_identically(server: RunningServer) -> None:
    server.create_flag()
    memory = InMemory(environment="production")
    memory.add(flag_doc())
    units = [f"conv_{i}" for i in range(2000)]
    with Client(server.sdk_key(), url=server.url, poll_interval=3600) as real:
        expected = [real.evaluate("support_assistant_profile", u).variation for u in units]
    local = memory.client()
    assert [local.evaluate("support_assistant_profile", u).variation for u in units] == expected
    assert 0.03 < expected.count("candidate") / len(units) < 0.07


def test_each_exposure_carries_the_evaluation_reason_that_assigned_it() -> None:
    memory = InMemory()
    memory.flag("support_assistant_profile", PROFILES, serve="candidate", assignment_unit="conversation")
    memory.pin("support_assistant_profile", "control", unit_id="conv_staff")
    with memory.client() as client:
        for unit in ("conv_1", "conv_staff"):
            with client.exposure("support_assistant_profile", unit):
                pass
    reasons = {e.unit_id: e.evaluation_reason for e in memory.exposures}
    # Only the rollout's unit was randomized; the readout leaves the rule's out of its comparison.
    assert reasons == {"conv_1": "rollout", "conv_staff": "rule"}
    assert not memory.rejected
