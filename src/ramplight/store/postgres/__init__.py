"""PostgreSQL backend: the control plane, shared by several server processes."""

from ramplight.store.postgres.store import PostgresControlStore

__all__ = ["PostgresControlStore"]
