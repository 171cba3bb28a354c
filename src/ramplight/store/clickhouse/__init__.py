"""ClickHouse backend: the evidence store (a server, or chdb in-process)."""

from ramplight.store.clickhouse.store import ClickHouseEvidenceStore

__all__ = ["ClickHouseEvidenceStore"]
