"""One `Store` made of a control store and an evidence store (e.g. PostgreSQL and DuckDB)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ramplight.core.errors import StoreError
from ramplight.store.base import ControlStore, EvidenceStore

CONTROL = frozenset(
    {
        "audit_key",
        "try_lead",
        "one_at_a_time",
        "list_environments",
        "create_environment",
        "get_flag",
        "list_flags",
        "save_flag",
        "list_segments",
        "save_segment",
        "flag_changes",
        "list_metrics",
        "save_metric",
        "list_sources",
        "list_prices",
        "replace_prices",
        "save_source",
        "delete_source",
        "get_plan",
        "list_plans",
        "save_plan",
        "record_decision",
        "decisions",
        "record_gate",
        "eval_gates",
        "save_request",
        "get_request",
        "list_requests",
        "audit_heads",
        "create_api_key",
        "find_api_key",
        "list_api_keys",
        "revoke_api_key",
        "create_user",
        "get_user",
        "find_user",
        "list_users",
        "update_user",
        "create_session",
        "find_session",
        "delete_session",
        "listen",
        "keeps_head_log",
        "atomic",
    }
)
"""What the control store answers; everything else is the evidence store's."""


class SplitStore:
    """Routes each call to the plane it belongs to. The evidence store's own control tables, if
    it has any (an embedded DuckDB file does), are not used."""

    def __init__(self, control: ControlStore, evidence: EvidenceStore) -> None:
        self.control = control
        self.evidence = evidence

    def __getattr__(self, name: str) -> Any:
        return getattr(self.control if name in CONTROL else self.evidence, name)

    def snapshot(self, directory: Path) -> dict[str, Any]:
        raise StoreError(
            "`backup` copies an embedded database; with a PostgreSQL control plane, back it up with "
            "pg_dump and the evidence file with `backup` of that file on its own"
        )

    def close(self) -> None:
        try:
            self.control.close()
        finally:
            self.evidence.close()
