"""Storage: a control store and an evidence store (`store.base`), one sub-package per backend,
opened from the settings' database URL by `open_store` — nowhere else."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ramplight.settings import Settings

if TYPE_CHECKING:
    from ramplight.store.base import Store


def default_secret(settings: Settings) -> Path:
    """The audit secret's file: RAMPLIGHT_AUDIT_SECRET, else beside the embedded database."""
    return settings.audit_secret or settings.db.with_name(settings.db.name + ".secret")


def open_store(settings: Settings, read_only: bool = False) -> Store:
    """The store `settings` name, with its user-SQL sandbox and the ingestion log's directory:
    one DuckDB file for both planes, or a PostgreSQL control plane and/or PostgreSQL or
    ClickHouse evidence."""
    from ramplight.store.base import SqlSandbox
    from ramplight.store.duckdb import DuckDBStore
    from ramplight.store.split import SplitStore

    sandbox = SqlSandbox(tables=settings.sql_tables, timeout_s=settings.sql_timeout)
    if settings.evidence_url is not None and settings.evidence_url.split("://")[0].lower() in (
        "postgresql",
        "postgres",
    ):
        from ramplight.store.postgres.evidence import PostgresEvidenceStore

        evidence: Any = PostgresEvidenceStore(settings.evidence_url, sandbox=sandbox, read_only=read_only)
    elif settings.evidence_url is not None:
        from ramplight.store.clickhouse import ClickHouseEvidenceStore

        evidence = ClickHouseEvidenceStore(settings.evidence_url, sandbox=sandbox, read_only=read_only)
    else:
        evidence = DuckDBStore(
            settings.db,
            read_only,
            sandbox=sandbox,
            allowed_directories=(settings.log_dir,),
            audit_secret=settings.audit_secret,
        )
    if settings.control_url is None and settings.evidence_url is None:
        return cast("Store", evidence)
    try:
        if settings.control_url is not None:
            from ramplight.store.postgres import PostgresControlStore

            control: Any = PostgresControlStore(
                settings.control_url, audit_secret=default_secret(settings), read_only=read_only
            )
        else:
            control = DuckDBStore(settings.db, read_only, audit_secret=settings.audit_secret)
    except BaseException:
        evidence.close()
        raise
    return cast("Store", SplitStore(control, evidence))
