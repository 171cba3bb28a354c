"""All configuration in one place: `RAMPLIGHT_*` environment variables, overridable by CLI flags.

| variable | default | meaning |
|---|---|---|
| RAMPLIGHT_DB | ./ramplight.duckdb | the database: an embedded DuckDB file (control plane and evidence), or a `postgresql://` URL for the control plane |
| RAMPLIGHT_EVIDENCE | (the RAMPLIGHT_DB file) | the evidence store: `chdb://PATH` or `clickhouse://…` (ClickHouse), `postgresql://…` (shared by several servers), or a DuckDB file when RAMPLIGHT_DB is a `postgresql://` URL |
| RAMPLIGHT_SPAN_ATTRIBUTES_ALLOW | (unset) | comma-separated span attribute names kept although they hold prompt or completion text |
| RAMPLIGHT_SPAN_ATTRIBUTES_DENY | (unset) | comma-separated span attribute names (and everything below them) dropped at intake |
| RAMPLIGHT_LOG_DIR | (beside the RAMPLIGHT_DB file) | this server's ingestion log; each of several servers sharing a database needs its own |
| RAMPLIGHT_HOST | 127.0.0.1 | address `serve` binds |
| RAMPLIGHT_PORT | 8700 | port `serve` binds |
| RAMPLIGHT_URL | (unset) | a running server the CLI should talk to |
| RAMPLIGHT_ADMIN_KEY | (unset) | admin key the CLI sends to a running server |
| RAMPLIGHT_MAX_BATCH_BYTES | 5242880 | largest ingestion request body (413 past it) |
| RAMPLIGHT_MAX_BATCH_ITEMS | 10000 | most items in one ingestion request (413 past it) |
| RAMPLIGHT_PROPERTY_ALLOWLIST | (unset) | comma-separated keys allowed in properties/attributes |
| RAMPLIGHT_FSYNC | 1 | 0 turns off fsync of the ingestion log (tests, never production) |
| RAMPLIGHT_SQL_TABLES | (unset) | comma-separated tables of yours that SQL metrics may read, beside the evidence tables |
| RAMPLIGHT_SQL_TIMEOUT | 30 | seconds a query with user-written SQL may run before it is stopped |
| RAMPLIGHT_MAX_BACKLOG_MB | 512 | unloaded evidence past which ingestion answers 503 with Retry-After |
| RAMPLIGHT_MAX_BACKLOG_SECONDS | 120 | age of the oldest unloaded evidence past which ingestion answers 503 |
| RAMPLIGHT_GUARDIAN_INTERVAL | 30 | seconds between the guardian's checks of every plan (0: no guardian) |
| RAMPLIGHT_WEBHOOKS | (unset) | comma-separated URLs that receive each guardian decision as JSON |
| RAMPLIGHT_AUDIT_SECRET | <db>.secret | file holding the secret that MACs audit rows (created 0600) |
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ramplight.core.errors import ValidationError

_OTLP_WORKERS = min(os.cpu_count() or 1, 4) if (os.cpu_count() or 1) > 1 else 0
_OTLP_WORKER_MIN_BYTES = 16 * 1024
_BATCH_WORKER_MIN_BYTES = 16 * 1024
_BATCH_WORKER_SPARE_CORES = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    db: Path = Path("ramplight.duckdb")
    host: str = "127.0.0.1"
    port: int = 8700
    url: str | None = None
    admin_key: str | None = None
    max_batch_bytes: int = 5 * 1024 * 1024
    max_batch_items: int = 10_000
    property_allowlist: frozenset[str] | None = None
    fsync: bool = True
    sql_tables: frozenset[str] = frozenset()
    sql_timeout: float = 30.0
    guardian_interval: float = 30.0
    max_backlog_mb: float = 512.0
    max_backlog_seconds: float = 120.0
    webhooks: tuple[str, ...] = ()
    audit_secret: Path | None = None
    control_url: str | None = None
    """A `postgresql://` URL when the control plane lives in PostgreSQL; None: in the `db` file."""
    evidence: Path = Path("ramplight.duckdb")
    """RAMPLIGHT_EVIDENCE: the evidence file (`db`) when the control plane is in PostgreSQL."""
    evidence_url: str | None = None
    """RAMPLIGHT_EVIDENCE as a URL: ClickHouse (`chdb://PATH`, `clickhouse://…`) or PostgreSQL
    (`postgresql://…`, shared by several servers); None: DuckDB."""
    span_attributes_allow: frozenset[str] = frozenset()
    """RAMPLIGHT_SPAN_ATTRIBUTES_ALLOW: content attributes (prompts, completions) to keep anyway."""
    span_attributes_deny: frozenset[str] = frozenset()
    """RAMPLIGHT_SPAN_ATTRIBUTES_DENY: more span attribute names to drop at intake."""
    otlp_workers: int = _OTLP_WORKERS
    """RAMPLIGHT_OTLP_WORKERS: the ingestion workers, processes that judge large OTLP trace requests
    and `/ingest/batch` bodies beside the event loop (0: all in the server's thread; by default one
    a core, at most 4, none on one core: on a busy 2-core machine two workers took 46 k spans/s
    where one took 31 k)."""
    otlp_worker_min_bytes: int = _OTLP_WORKER_MIN_BYTES
    """RAMPLIGHT_OTLP_WORKER_MIN_BYTES: a smaller request is decoded in the server's thread (the
    trip to a worker costs more than its decoding)."""
    batch_worker_min_bytes: int = _BATCH_WORKER_MIN_BYTES
    """RAMPLIGHT_BATCH_WORKER_MIN_BYTES: an `/ingest/batch` body smaller than this is judged in the
    server's thread; larger ones in the ingestion workers (RAMPLIGHT_OTLP_WORKERS) when there are."""
    batch_worker_spare_cores: float = _BATCH_WORKER_SPARE_CORES
    """RAMPLIGHT_BATCH_WORKER_SPARE_CORES: large `/ingest/batch` bodies go to the workers only while
    the machine had this many cores idle lately (Linux; a worker costs more CPU time in all, and
    pays only while a core is free); 0: whenever there are workers."""
    log_directory: Path | None = None
    """RAMPLIGHT_LOG_DIR: this server's ingestion log (default: beside the `db` file). Each server
    process needs its own: several servers sharing a database each set one."""

    @property
    def log_dir(self) -> Path:
        """Where acknowledged-but-not-yet-loaded evidence waits (beside the database)."""
        if self.log_directory is not None:
            return self.log_directory
        return self.db.with_name(self.db.name + ".log")

    @property
    def server_file(self) -> Path:
        """Written by a running server so the CLI can find it (url and pid, no secrets)."""
        if self.log_directory is not None:
            return self.log_directory.with_name(self.log_directory.name + ".server.json")
        return self.db.with_name(self.db.name + ".server.json")

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def with_database(self, value: str | None, name: str = "--db") -> Settings:
        """Settings for the database `value` names: a DuckDB path or a `postgresql://` URL."""
        if value is None:
            return self
        control, db = parse_database(value, name)
        return replace(self, control_url=control, db=db or self.evidence)

    @property
    def where(self) -> str:
        """The database as a person should read it (no password)."""
        if self.control_url is None:
            return str(self.db)
        from urllib.parse import urlsplit

        parts = urlsplit(self.control_url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
        evidence = self.evidence_url if self.evidence_url is not None else str(self.db)
        if "@" in evidence:  # a password never shows
            scheme, _, rest = evidence.partition("://")
            evidence = f"{scheme}://{rest.rsplit('@', 1)[1]}"
        return f"postgresql://{host}{parts.path} (evidence in {evidence})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `RAMPLIGHT_*` variables; a malformed number or switch raises a
        `ValidationError` naming the variable, its value and what it should be."""
        env = os.environ if environ is None else environ
        allow = env.get("RAMPLIGHT_PROPERTY_ALLOWLIST")
        control, db = parse_database(env.get("RAMPLIGHT_DB") or "ramplight.duckdb", "RAMPLIGHT_DB")
        evidence_url, evidence_path = parse_evidence(env.get("RAMPLIGHT_EVIDENCE") or "ramplight.duckdb")
        evidence = evidence_path or Path("ramplight.duckdb")
        return cls(
            db=db or evidence,
            control_url=control,
            evidence=evidence,
            evidence_url=evidence_url,
            host=env.get("RAMPLIGHT_HOST", "127.0.0.1"),
            port=_integer(env, "RAMPLIGHT_PORT", 8700, 1, 65535),
            url=env.get("RAMPLIGHT_URL") or None,
            admin_key=env.get("RAMPLIGHT_ADMIN_KEY") or None,
            max_batch_bytes=_integer(env, "RAMPLIGHT_MAX_BATCH_BYTES", 5 * 1024 * 1024, 1),
            max_batch_items=_integer(env, "RAMPLIGHT_MAX_BATCH_ITEMS", 10_000, 1),
            property_allowlist=frozenset(a.strip() for a in allow.split(",") if a.strip()) if allow else None,
            fsync=_switch(env, "RAMPLIGHT_FSYNC", True),
            sql_tables=frozenset(
                t.strip().lower() for t in env.get("RAMPLIGHT_SQL_TABLES", "").split(",") if t.strip()
            ),
            sql_timeout=_seconds(env, "RAMPLIGHT_SQL_TIMEOUT", 30.0, positive=True),
            guardian_interval=_seconds(env, "RAMPLIGHT_GUARDIAN_INTERVAL", 30.0),
            max_backlog_mb=_seconds(env, "RAMPLIGHT_MAX_BACKLOG_MB", 512.0, positive=True),
            max_backlog_seconds=_seconds(env, "RAMPLIGHT_MAX_BACKLOG_SECONDS", 120.0, positive=True),
            webhooks=tuple(u.strip() for u in env.get("RAMPLIGHT_WEBHOOKS", "").split(",") if u.strip()),
            audit_secret=Path(env["RAMPLIGHT_AUDIT_SECRET"]) if env.get("RAMPLIGHT_AUDIT_SECRET") else None,
            log_directory=Path(env["RAMPLIGHT_LOG_DIR"]) if env.get("RAMPLIGHT_LOG_DIR") else None,
            span_attributes_allow=_names(env, "RAMPLIGHT_SPAN_ATTRIBUTES_ALLOW"),
            span_attributes_deny=_names(env, "RAMPLIGHT_SPAN_ATTRIBUTES_DENY"),
            otlp_workers=_integer(env, "RAMPLIGHT_OTLP_WORKERS", _OTLP_WORKERS, 0, 64),
            otlp_worker_min_bytes=_integer(env, "RAMPLIGHT_OTLP_WORKER_MIN_BYTES", _OTLP_WORKER_MIN_BYTES, 0),
            batch_worker_min_bytes=_integer(
                env, "RAMPLIGHT_BATCH_WORKER_MIN_BYTES", _BATCH_WORKER_MIN_BYTES, 0
            ),
            batch_worker_spare_cores=_seconds(
                env, "RAMPLIGHT_BATCH_WORKER_SPARE_CORES", _BATCH_WORKER_SPARE_CORES, unit="cores"
            ),
        )


_POSTGRES = ("postgresql", "postgres")
_CLICKHOUSE = ("chdb", "clickhouse", "clickhouses")


def parse_database(value: str, name: str) -> tuple[str | None, Path | None]:
    """(control-plane URL, DuckDB path) named by `value`: a path, or a `postgresql://` URL."""
    scheme, sep, _ = value.partition("://")
    if not sep:
        return None, Path(value)
    scheme = scheme.lower()
    if scheme in _POSTGRES:
        return value, None
    if scheme == "duckdb":
        return None, Path(value.split("://", 1)[1])
    if scheme in _CLICKHOUSE:
        raise ValidationError.at(
            name,
            f"{scheme}:// holds evidence only: set RAMPLIGHT_EVIDENCE to it, and RAMPLIGHT_DB to the "
            "control plane (a DuckDB path or postgresql://…)",
        )
    raise ValidationError.at(
        name, f"unknown database scheme {scheme!r}: use a DuckDB file path, duckdb://PATH or postgresql://…"
    )


def parse_evidence(value: str, name: str = "RAMPLIGHT_EVIDENCE") -> tuple[str | None, Path | None]:
    """(ClickHouse or PostgreSQL URL, DuckDB path) named by RAMPLIGHT_EVIDENCE."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return None, Path(value)
    scheme = scheme.lower()
    if scheme in _CLICKHOUSE or scheme in _POSTGRES:
        return value, None
    if scheme == "duckdb":
        return None, Path(rest)
    raise ValidationError.at(
        name,
        f"unknown evidence scheme {scheme!r}: use a DuckDB path, chdb://PATH, clickhouse://host:8123/db"
        " or postgresql://…",
    )


def _names(env: Mapping[str, str], name: str) -> frozenset[str]:
    return frozenset(n.strip() for n in env.get(name, "").split(",") if n.strip())


def _invalid(name: str, raw: str, expected: str) -> ValidationError:
    return ValidationError.at(name, f"{raw!r} is not {expected}")


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    bounds = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"
    try:
        value = int(raw.strip())
    except ValueError:
        raise _invalid(name, raw, bounds) from None
    if value < low or (high is not None and value > high):
        raise _invalid(name, raw, bounds)
    return value


def _seconds(
    env: Mapping[str, str], name: str, default: float, positive: bool = False, unit: str = "seconds"
) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    expected = f"a number of {unit} above 0" if positive else f"a number of {unit} (0 or more)"
    try:
        value = float(raw.strip())
    except ValueError:
        raise _invalid(name, raw, expected) from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise _invalid(name, raw, expected)
    return value


_SWITCH = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return _SWITCH[raw.strip().lower()]
    except KeyError:
        raise _invalid(name, raw, "a switch (1/0, true/false, yes/no, on/off)") from None
