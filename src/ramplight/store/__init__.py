"""Storage: one interface (`store.base`), one sub-package per backend, opened by `open_store`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ramplight.settings import Settings

if TYPE_CHECKING:
    from ramplight.store.duckdb import DuckDBStore


def open_store(settings: Settings, read_only: bool = False) -> DuckDBStore:
    """The store `settings` name, with its user-SQL sandbox and the ingestion log's directory."""
    from ramplight.store.base import SqlSandbox
    from ramplight.store.duckdb import DuckDBStore

    sandbox = SqlSandbox(tables=settings.sql_tables, timeout_s=settings.sql_timeout)
    return DuckDBStore(
        settings.db,
        read_only,
        sandbox=sandbox,
        allowed_directories=(settings.log_dir,),
        audit_secret=settings.audit_secret,
    )
