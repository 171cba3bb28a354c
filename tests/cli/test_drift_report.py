"""`ramplight apply` takes a plan's drift properties (refusing a bad one by its field) and
`ramplight report` reads them out, in the table and in --json."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tests.cli.test_cli import ramplight
from tests.factories import flag_doc

FLAG = "support_assistant_profile"


def release_file(tmp_path: Path, drift: list[dict[str, Any]]) -> Path:
    path = tmp_path / "release.yaml"
    plan = {"flag_key": FLAG, "gates": [], "drift": drift}
    path.write_text(yaml.safe_dump({"flags": [flag_doc()], "plans": [plan]}))
    return path


def test_a_plans_drift_is_applied_and_reported(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.duckdb")
    drift = [
        {
            "key": "input_length",
            "source": "exposures",
            "property": "attributes.input_chars",
            "type": "numeric",
        },
        {"key": "query", "source": "exposures", "property": "attributes.query", "type": "categorical"},
    ]
    ramplight("apply", str(release_file(tmp_path, drift)), "--db", db)
    rng = np.random.default_rng(2)
    now = datetime.now(UTC).isoformat()
    rows = []
    for i in range(800):
        variation = "candidate" if i % 2 else "control"
        longer = 2.0 if variation == "candidate" else 1.0
        rows.append({"ts": now, "flag_key": FLAG, "assignment_unit": "conversation", "unit_id": f"u{i}",
                     "assigned_variation": variation, "served_variation": variation,
                     "attributes": {"input_chars": round(float(rng.lognormal(6, 0.4)) * longer),
                                    "query": str(rng.choice(["billing", "bug", "how_to"]))}})  # fmt: skip
    exposures = tmp_path / "exposures.ndjson"
    exposures.write_text("\n".join(json.dumps(r) for r in rows))
    ramplight("import", str(exposures), "--kind", "exposures", "--db", db)

    report = json.loads(ramplight("report", FLAG, "--db", db, "--json").stdout)
    verdicts = {p["key"]: p["verdict"] for p in report["drift"]["properties"]}
    assert verdicts == {"input_length": "major", "query": "stable"}
    table = ramplight("report", FLAG, "--db", db).stdout
    assert "drift" in table and "input_length (numeric)" in table and "candidate vs control" in table
    assert "major" in table


def test_apply_refuses_a_drift_property_its_source_does_not_have_naming_the_field(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.duckdb")
    drift = [
        {"key": "latency", "source": "events", "property": "duration_ms", "type": "numeric", "event": "x"}
    ]
    refused = ramplight("apply", str(release_file(tmp_path, drift)), "--db", db, check=False)
    assert refused.returncode == 1
    assert "drift[0].property: no property 'duration_ms' of events; use one of value, properties.<key>" in (
        refused.stderr
    )
    assert len(refused.stderr.strip().splitlines()) == 1
