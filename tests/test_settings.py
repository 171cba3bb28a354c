"""Settings from `RAMPLIGHT_*` variables: typed, with errors that name the variable and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from ramplight.core.errors import ValidationError
from ramplight.settings import Settings

MALFORMED = [
    ("RAMPLIGHT_PORT", "abc", "an integer from 1 to 65535"),
    ("RAMPLIGHT_PORT", "70000", "an integer from 1 to 65535"),
    ("RAMPLIGHT_MAX_BATCH_BYTES", "5MB", "an integer of at least 1"),
    ("RAMPLIGHT_MAX_BATCH_ITEMS", "-3", "an integer of at least 1"),
    ("RAMPLIGHT_SQL_TIMEOUT", "thirty", "a number of seconds above 0"),
    ("RAMPLIGHT_SQL_TIMEOUT", "0", "a number of seconds above 0"),
    ("RAMPLIGHT_GUARDIAN_INTERVAL", "nan", "a number of seconds (0 or more)"),
    ("RAMPLIGHT_FSYNC", "maybe", "a switch (1/0, true/false, yes/no, on/off)"),
    ("RAMPLIGHT_BATCH_WORKER_SPARE_CORES", "half", "a number of cores (0 or more)"),
    ("RAMPLIGHT_BATCH_WORKER_MIN_BYTES", "-1", "an integer of at least 0"),
]


@pytest.mark.parametrize(("variable", "value", "expected"), MALFORMED)
def test_a_malformed_variable_is_named_with_its_value_and_expected_type(
    variable: str, value: str, expected: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings.from_env({variable: value})
    assert raised.value.message == f"{variable}: {value!r} is not {expected}"
    assert raised.value.problems[0].field == variable


def test_well_formed_variables_are_typed_and_blank_ones_take_the_default() -> None:
    settings = Settings.from_env(
        {
            "RAMPLIGHT_PORT": " 9000 ",
            "RAMPLIGHT_FSYNC": "off",
            "RAMPLIGHT_SQL_TIMEOUT": "2.5",
            "RAMPLIGHT_GUARDIAN_INTERVAL": "0",
            "RAMPLIGHT_MAX_BATCH_ITEMS": "",
            "RAMPLIGHT_BATCH_WORKER_SPARE_CORES": "0.5",
            "RAMPLIGHT_BATCH_WORKER_MIN_BYTES": "0",
        }
    )
    assert (settings.batch_worker_spare_cores, settings.batch_worker_min_bytes) == (0.5, 0)
    assert (settings.port, settings.fsync, settings.sql_timeout) == (9000, False, 2.5)
    assert (settings.guardian_interval, settings.max_batch_items) == (0.0, 10_000)
    assert Settings.from_env({}) == Settings()


def test_the_database_is_a_path_or_a_postgresql_url() -> None:
    assert Settings.from_env({}).control_url is None
    assert str(Settings.from_env({"RAMPLIGHT_DB": "duckdb://data/r.duckdb"}).db) == "data/r.duckdb"
    url = "postgresql://ramplight:s3cret@db.internal:5432/ops"
    settings = Settings.from_env({"RAMPLIGHT_DB": url, "RAMPLIGHT_EVIDENCE": "/var/lib/r/evidence.duckdb"})
    assert settings.control_url == url
    assert str(settings.db) == "/var/lib/r/evidence.duckdb"
    assert "s3cret" not in settings.where and "db.internal:5432/ops" in settings.where
    assert Settings.from_env({}).with_database(url).control_url == url
    beside = Settings.from_env({"RAMPLIGHT_EVIDENCE": "ev.duckdb"}).with_database(url)  # --db URL
    assert (beside.control_url, str(beside.db)) == (url, "ev.duckdb")
    assert Settings.from_env({"RAMPLIGHT_DB": url}).with_database("local.duckdb").control_url is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("chdb:///tmp/evidence", "chdb:// holds evidence only: set RAMPLIGHT_EVIDENCE to it"),
        ("mysql://root@127.0.0.1/test", "unknown database scheme 'mysql'"),
    ],
)
def test_an_unsupported_database_url_is_refused_by_name(value: str, expected: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings.from_env({"RAMPLIGHT_DB": value})
    assert raised.value.message.startswith(f"RAMPLIGHT_DB: {expected}")


def test_evidence_may_live_in_clickhouse() -> None:
    settings = Settings.from_env({"RAMPLIGHT_EVIDENCE": "chdb:///var/lib/ramplight/evidence"})
    assert settings.evidence_url == "chdb:///var/lib/ramplight/evidence"
    assert str(settings.db) == "ramplight.duckdb"  # the control plane (and the ingest log beside it)
    with pytest.raises(ValidationError, match="unknown evidence scheme 'mysql'"):
        Settings.from_env({"RAMPLIGHT_EVIDENCE": "mysql://x"})


def test_evidence_may_live_in_postgresql_beside_the_control_plane_with_a_log_per_server() -> None:
    url = "postgresql://ramplight:s3cret@db.internal:5432/ops"
    settings = Settings.from_env(
        {"RAMPLIGHT_DB": url, "RAMPLIGHT_EVIDENCE": url, "RAMPLIGHT_LOG_DIR": "/var/lib/ramplight/a.log"}
    )
    assert (settings.control_url, settings.evidence_url) == (url, url)
    assert settings.log_dir == Path("/var/lib/ramplight/a.log")
    assert settings.server_file == Path("/var/lib/ramplight/a.log.server.json")
    assert (
        "s3cret" not in settings.where and "evidence in postgresql://db.internal:5432/ops" in settings.where
    )
    assert Settings.from_env({}).log_dir == Path("ramplight.duckdb.log")
