"""The embedded default backend: one DuckDB file holds the control plane and the evidence."""

from ramplight.store.duckdb.store import DuckDBStore

__all__ = ["DuckDBStore"]
