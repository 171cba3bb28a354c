"""The demo tells its story through the real SDK and server."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ramplight.demo.simulation import FLAG, METRICS, run_demo
from ramplight.settings import Settings


def fallback_rate(readout: dict, variation: str) -> float:
    return next(v["fallback_rate"] for v in readout["variations"] if v["variation"] == variation)


def test_the_guardian_rolls_back_the_20_percent_stage_and_every_conversation_is_kept(
    tmp_path: Path,
) -> None:
    with (tmp_path / "out.txt").open("w") as out:
        result = run_demo(
            Settings(db=tmp_path / "demo.duckdb"),
            conversations=6000,
            seed=3,
            serve=False,
            as_json=False,
            console=Console(file=out),
        )
    early, late = result["phases"][0]["readout"], result["readout"]
    assert result["sdk"]["sent"] >= 6000 * 5  # an exposure and four events per conversation, some scores
    assert (result["sdk"]["rejected"], result["sdk"]["dropped"]) == (0, 0)
    assert early["data_quality"]["exposed_units"] == 1800
    assert late["data_quality"]["exposed_units"] == 6000
    assert fallback_rate(late, "candidate") > 2 * fallback_rate(early, "candidate")
    assert 0.99 < late["data_quality"]["joinable_fraction"] < 1.0  # ticket-keyed outcomes do not join
    assert {m["key"] for m in late["metrics"]} == {m["key"] for m in METRICS}
    assert [p["weights"] for p in late["phases"]][:2] == [
        {"control": 95.0, "candidate": 5.0},
        {"control": 80.0, "candidate": 20.0},
    ]
    latency = next(m for m in late["metrics"] if m["key"] == "latency_ms")
    assert latency["comparisons"][0]["guardrail"]["breached"]  # the regression the story is about
    assert late["flag_key"] == FLAG
    # At 5 % the plan asked for more evidence; at 20 % the guardian rolled back by itself.
    assert early["recommendation"]["action"] == "continue"
    guardian = result["guardian"]
    assert guardian is not None and guardian["state"] == "rollback"
    assert guardian["recommendation"]["sentence"].startswith("roll back: latency_ms is worse by")
    assert late["phases"][-1]["weights"] == {"control": 100.0, "candidate": 0.0}
    actions = [(e["kind"], e["action"], e["actor"]) for e in late["timeline"]["events"]]
    assert ("decision", "rollback", "guardian") in actions and ("change", "rollback", "guardian") in actions
    assert late["recommendation"]["action"] == "continue"  # rolled back; cleanup comes later
    assert "cleanup due" in late["recommendation"]["sentence"]
    text = " ".join((tmp_path / "out.txt").read_text().split())  # unwrap the console's lines
    assert "The guardian acted by itself: roll back: latency_ms is worse by" in text
