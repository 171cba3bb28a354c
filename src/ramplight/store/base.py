"""The storage interface the server, CLI and analysis depend on; backends implement it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from ramplight.core.audit import AuditHead, Decision, FlagChange
from ramplight.core.errors import ValidationError
from ramplight.core.flags import Flag, Segment
from ramplight.core.gate import GateRecord
from ramplight.core.metrics import Metric
from ramplight.core.plan import Plan
from ramplight.core.prices import Price
from ramplight.core.sources import Source
from ramplight.core.usersql import CONTROL_TABLES, EVIDENCE_TABLES

EvidenceKind = Literal["exposures", "events", "evals", "spans"]
Role = Literal["viewer", "editor", "approver", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "editor", "approver", "admin")
"""Each role may do what the ones before it may (docs/ui.md has the matrix)."""


@dataclass(frozen=True, slots=True)
class Environment:
    key: str
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key: only its SHA-256 hash and a short display prefix are kept."""

    id: str
    kind: Literal["admin", "sdk"]
    environment: str | None
    name: str
    prefix: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
    can_force: bool = False
    """May act against the measurement plan (recorded as forced)."""


@dataclass(frozen=True, slots=True)
class User:
    """A person who signs in to the web UI: the password is kept only as an argon2id hash."""

    id: str
    name: str
    role: Role
    password_hash: str
    created_at: datetime
    disabled_at: datetime | None = None
    last_sign_in_at: datetime | None = None
    """When a session was last started for them (None: never signed in)."""


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: only the SHA-256 of its token is kept. It belongs to a user or to
    an admin API key (exactly one); the role is read from that owner on every request."""

    token_hash: str
    user_id: str | None
    key_id: str | None
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SqlSandbox:
    """What user-written SQL may do: read the evidence and the operator's `tables`, for at most
    `timeout_s` seconds, in a read-only transaction with file and network access off."""

    tables: frozenset[str] = frozenset()
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        control = sorted(self.tables & CONTROL_TABLES)
        if control:
            raise ValidationError.at(
                "RAMPLIGHT_SQL_TABLES", f"{', '.join(control)}: control-plane tables are never readable"
            )
        if not 0 < self.timeout_s <= 3600:
            raise ValidationError.at("RAMPLIGHT_SQL_TIMEOUT", "seconds, within (0, 3600]")

    @property
    def readable(self) -> frozenset[str]:
        return EVIDENCE_TABLES | self.tables


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    """A proposed expansion or promotion waiting for `required` approvals from other people."""

    request_id: str
    flag_key: str
    environment: str
    action: str
    percent: float | None
    reason: str | None
    proposed_by: str
    proposer_id: str
    proposed_at: datetime
    state: Literal["proposed", "approved", "rejected", "applied"]
    approvals: list[dict[str, Any]]
    required: int
    decided_at: datetime | None = None
    decision_id: str | None = None


class ControlStore(Protocol):
    """The control plane: environments, flags, segments, metrics, plans, change requests, API
    keys and the audit chains. Every write is atomic; flag writes carry their change rows."""

    audit_key: bytes | None
    """The secret audit rows are MACed with (None: a read-only open without it)."""
    keeps_head_log: bool
    """Whether the chains' heads are also logged outside the database (`audit_heads`)."""

    def list_environments(self) -> list[Environment]: ...
    def create_environment(self, env: Environment) -> None: ...
    def get_flag(self, key: str) -> Flag | None: ...
    def list_flags(self, include_archived: bool = False) -> list[Flag]: ...
    def save_flag(self, flag: Flag, expected_version: int | None, changes: Sequence[FlagChange]) -> None: ...
    def list_segments(self) -> list[Segment]: ...
    def save_segment(self, segment: Segment, expected_version: int | None) -> None: ...
    def flag_changes(self, flag_key: str | None = None) -> list[FlagChange]: ...
    def list_metrics(self) -> list[Metric]: ...
    def save_metric(self, metric: Metric, expected_version: int | None) -> None: ...
    def list_sources(self) -> list[Source]: ...
    def list_prices(self) -> list[Price]: ...
    def replace_prices(self, prices: Sequence[Price]) -> None: ...
    def save_source(self, source: Source, expected_version: int | None) -> None: ...
    def delete_source(self, key: str) -> bool: ...
    def get_plan(self, flag_key: str, environment: str) -> Plan | None: ...
    def list_plans(self) -> list[Plan]: ...
    def save_plan(self, plan: Plan, expected_version: int | None, change: FlagChange) -> None: ...
    def record_decision(
        self,
        decision: Decision,
        flag: Flag | None,
        expected_version: int | None,
        changes: Sequence[FlagChange],
    ) -> Decision:
        """The decision row, and the flag write with its changes when it acts, in one transaction."""
        ...

    def decisions(self, flag_key: str | None = None) -> list[Decision]: ...
    def record_gate(self, record: GateRecord) -> None: ...
    def eval_gates(self, flag_key: str, environment: str | None = None) -> list[GateRecord]:
        """The flag's recorded eval gates, oldest first."""
        ...

    def save_request(self, request: ChangeRequest, expected_state: str | None) -> None:
        """Insert (expected_state None) or replace a request that is still in `expected_state`."""
        ...

    def get_request(self, request_id: str) -> ChangeRequest | None: ...
    def list_requests(self, flag_key: str | None = None) -> list[ChangeRequest]: ...
    def audit_heads(self) -> list[AuditHead] | None:
        """The head log kept outside the database, oldest first (None: there is none)."""
        ...

    def create_api_key(self, key: ApiKey) -> None: ...
    def find_api_key(self, key_hash: str) -> ApiKey | None: ...
    def list_api_keys(self) -> list[ApiKey]: ...
    def revoke_api_key(self, key_id: str, at: datetime) -> None: ...
    def create_user(self, user: User) -> None:
        """Insert a user; a ConflictError when the name is taken."""
        ...

    def get_user(self, user_id: str) -> User | None: ...
    def find_user(self, name: str) -> User | None: ...
    def list_users(self) -> list[User]: ...
    def update_user(self, user: User, previous: User | None = None) -> None:
        """Store the user's `role` and `disabled_at` (a NotFoundError when there is no such user);
        disabling also deletes the user's sessions, in the same transaction. With `previous` (the
        user as read), a ConflictError when their role or `disabled_at` changed meanwhile: two
        admins' changes never silently undo each other (a role change re-enabling a user)."""
        ...

    def create_session(self, session: Session) -> None:
        """Insert a session (and drop the sessions that expired before it began); a user's
        session sets their `last_sign_in_at`."""
        ...

    def find_session(self, token_hash: str) -> Session | None: ...
    def delete_session(self, token_hash: str) -> None: ...
    def atomic(self) -> AbstractContextManager[None]:
        """The writes of this thread inside the block commit together or not at all."""
        ...

    def try_lead(self, role: str) -> bool:
        """Whether this process is the one, of all the servers sharing this control plane, that
        runs `role` (the guardian's checks on its interval). The first to ask holds it until it
        closes the store or loses its connection; the others get False and ask again later."""
        ...

    def one_at_a_time(self, role: str) -> AbstractContextManager[None]:
        """Held by one thread of all the servers sharing this control plane at a time (a check of
        every plan: two at once could both record the same decision); waits for it."""
        ...

    def close(self) -> None: ...


class EvidenceStore(Protocol):
    """The evidence: exposures, events, evals and spans, loaded from the ingest log and read by
    analysis in the store's SQL `dialect`, with user-written SQL sandboxed (`sandbox`)."""

    path: str
    dialect: str
    """sqlglot's name for the engine's SQL: `duckdb`, `postgres` or `clickhouse`."""
    sandbox: SqlSandbox

    def load_segment(self, name: str, files: dict[EvidenceKind, Path]) -> int: ...
    def loaded_segments(self) -> set[str]: ...
    def segments_loaded(self) -> int:
        """How many segments were loaded: what the pages' caches stamp evidence with (a count,
        not every name: the table gains a row per half second of steady ingestion)."""
        ...

    def identities(self) -> tuple[Any, Any]:
        """(identity keys, payload hashes) of every stored evidence row, as numpy uint64 arrays."""
        ...

    def count(self, kind: EvidenceKind, environment: str | None = None) -> int: ...
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def read(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = (), timeout_s: float | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of `sql` run in a read-only transaction, stopped after `timeout_s`;
        raises QueryError. Analysis and user-written SQL run here."""
        ...

    def export(self, sql: str, path: Path, fmt: Literal["parquet", "csv"]) -> None:
        """Write the rows of `sql` to `path` (read-only; the engine itself writes no user paths)."""
        ...

    def connection(self) -> Any:
        """A DB-API style connection for this thread, where analysis runs its SQL."""
        ...

    def scratch_dir(self) -> Path:
        """A directory the engine may read and write: staging for imports, exports and backups."""
        ...

    def snapshot(self, directory: Path) -> dict[str, Any]:
        """Copy the store's files into `directory`, consistent with each other and with the audit
        head log: {database, files, schema_version, counts}."""
        ...

    def close(self) -> None: ...


class Store(ControlStore, EvidenceStore, Protocol):
    """Both planes behind one object, as the server and CLI use them: one embedded DuckDB file,
    or a control store and an evidence store joined by `store.split.SplitStore`."""

    def close(self) -> None: ...
