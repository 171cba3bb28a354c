"""The CLI acting on the database file itself, when no server holds it (`cli/backend.py`)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from ramplight import audit, control, release
from ramplight.analysis import service as analysis
from ramplight.analysis.options import ReadoutOptions
from ramplight.control import users
from ramplight.core import otlp
from ramplight.core.contract import ValidatedBatch, validate_batch
from ramplight.core.errors import NotFoundError
from ramplight.core.flags import Flag
from ramplight.core.gate import convert_gate_request
from ramplight.core.sources import Source
from ramplight.settings import Settings
from ramplight.store import open_store
from ramplight.store.backup import secret_path, take_backup
from ramplight.store.base import Environment
from ramplight.store.identity import Admitted, IdentityIndex, admit_batch, build_index
from ramplight.store.log import IngestLog


def _environment(env: Environment) -> dict[str, Any]:
    return {"key": env.key, "name": env.name, "created_at": env.created_at.isoformat()}


class LocalBackend:
    """Acts on the database file directly (no server running)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        control.ensure_default_environments(self.store)
        self.where = settings.where
        self._counter = 0
        self._identities: IdentityIndex | None = None

    def close(self) -> None:
        self.store.close()

    def list_flags(self, archived: bool) -> list[Flag]:
        return self.store.list_flags(include_archived=archived)

    def get_flag(self, key: str) -> Flag:
        return control.get_flag(self.store, key)

    def apply(
        self,
        docs: Sequence[Mapping[str, Any]],
        metrics: Sequence[Mapping[str, Any]],
        plans: Sequence[Mapping[str, Any]],
        dry_run: bool,
        sources: Sequence[Mapping[str, Any]] = (),
        prices: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        return release.apply_documents(
            self.store, metrics, docs, plans, "cli", dry_run=dry_run, sources=sources, prices=prices
        )

    def list_sources(self) -> list[Source]:
        return self.store.list_sources()

    # The local operator owns the database file, so it may force (always recorded as forced).

    def ramp(
        self,
        key: str,
        environment: str,
        variation: str,
        percent: float,
        donor: str | None,
        reason: str | None,
        force: bool,
    ) -> tuple[Flag, bool]:
        return release.ramp_flag(
            self.store, key, environment, variation, percent, "cli",
            donor=donor, reason=reason, force=force, can_force=True,
        )  # fmt: skip

    def kill(self, key: str, environment: str, reason: str | None) -> tuple[Flag, bool]:
        return release.kill_flag(self.store, key, environment, "cli", reason)

    def restore(self, key: str, environment: str, reason: str | None, force: bool) -> tuple[Flag, bool]:
        return release.restore_flag(self.store, key, environment, "cli", reason, force, can_force=True)

    def decide(
        self, key: str, environment: str, action: str, reason: str | None, force: bool, percent: float | None
    ) -> dict[str, Any]:
        decision = release.decide_action(
            self.store, key, environment, action, "cli", reason, force=force, can_force=True, percent=percent
        )
        return release.decision_answer(self.store, decision)

    def decisions(self, key: str) -> list[dict[str, Any]]:
        return release.decisions(self.store, key)

    def run_gate(self, key: str, request: Mapping[str, Any]) -> dict[str, Any]:
        return release.run_eval_gate(self.store, key, convert_gate_request(request), "cli")

    def stale(self, days: float) -> list[dict[str, Any]]:
        return release.stale_flags(self.store, days)

    def check_flags(self) -> list[dict[str, Any]]:
        return control.stored_problems(self.store)

    def report(
        self, key: str, environment: str, metrics: Sequence[str], options: ReadoutOptions
    ) -> dict[str, Any]:
        return release.report(self.store, key, environment, list(metrics), options)

    def sql(
        self, key: str, environment: str, metrics: Sequence[str], dialect: str, segment: str | None
    ) -> str:
        return analysis.readout_sql(self.store, key, environment, metrics, dialect, segment)

    def export(
        self, key: str, environment: str, fmt: str, output: Path, metrics: Sequence[str], segment: str | None
    ) -> None:
        analysis.export_units(self.store, key, environment, str(output), fmt, metrics, segment)

    def ingest(self, environment: str, batch: Mapping[str, Sequence[bytes]]) -> dict[str, Any]:
        """Validate exactly like the HTTP path, then load in one transaction."""
        if environment not in {e.key for e in self.store.list_environments()}:
            raise NotFoundError(f"no environment {environment!r}")
        validated = validate_batch(
            batch, environment, control.flag_facts(self.store, environment), datetime.now(UTC)
        )
        admitted = self._admit(validated)
        self._load([admitted])
        problems = sorted(
            (*validated.problems, *admitted.conflicts), key=lambda p: (p.kind or "", p.index or 0)
        )
        return {**_ingest_result(admitted.accepted, problems), "duplicates": admitted.duplicates}

    def _admit(self, validated: ValidatedBatch) -> Admitted:
        if self._identities is None:
            self._identities = build_index(self.store)
        return admit_batch(self._identities, validated)

    def _load(self, admitted: Sequence[Admitted]) -> None:
        """Load what is new as one segment (recorded, so it loads once)."""
        chunks = {kind: data for a in admitted for kind, data in a.chunks().items()}
        if not chunks:
            return
        with tempfile.TemporaryDirectory(prefix="import-", dir=self.store.scratch_dir()) as tmp:
            files = {}
            for kind, data in chunks.items():
                path = Path(tmp) / f"{kind}.ndjson"
                path.write_bytes(data)
                files[kind] = path
            self._counter += 1
            name = f"import-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}-{self._counter}"
            try:
                self.store.load_segment(name, files)
            except BaseException:
                assert self._identities is not None
                self._identities.forget([k for a in admitted for k in a.keys])
                raise

    def ingest_spans(self, environment: str, request: bytes) -> dict[str, Any]:
        """Decode, judge and load like POST /v1/traces (the same attribute policy)."""
        if environment not in {e.key for e in self.store.list_environments()}:
            raise NotFoundError(f"no environment {environment!r}")
        facts = control.flag_facts(self.store, environment)
        policy = otlp.AttributePolicy(self.settings.span_attributes_allow, self.settings.span_attributes_deny)
        decoded = otlp.decode_json(
            request, policy, lambda key: facts[key].assignment_unit if key in facts else None
        )
        now = datetime.now(UTC)
        spans = self._admit(otlp.accept_spans(decoded.spans, environment, now, decoded.canonicals))
        exposures = validate_batch(
            {"exposures": [msgspec.json.encode(d) for d in decoded.exposures]}, environment, facts, now
        )
        evaluations = self._admit(exposures)
        self._load([spans, evaluations])
        rejected = [*decoded.rejected, *decoded.not_exposures]
        rejected += [
            f"{p.kind} {p.index}: {p.field}: {p.reason}"
            for p in (*exposures.problems, *evaluations.conflicts)
        ]
        return {
            "accepted": {
                "spans": spans.accepted.get("spans", 0),
                "exposures": evaluations.accepted.get("exposures", 0),
            },
            "duplicates": spans.duplicates.get("spans", 0) + evaluations.duplicates.get("exposures", 0),
            "rejected": rejected,
            "dropped_attributes": decoded.dropped_attributes,
        }

    def changes(self, key: str) -> list[dict[str, Any]]:
        return audit.flag_history(self.store, key)

    def verify_audit(self) -> dict[str, Any]:
        return {**audit.verify(self.store), "head": audit.head(self.store)}

    def create_key(self, kind: str, name: str, environment: str | None) -> dict[str, Any]:
        plaintext, key = control.create_api_key(self.store, kind, name, environment)  # type: ignore[arg-type]
        return {
            "id": key.id,
            "kind": key.kind,
            "environment": key.environment,
            "name": key.name,
            "key": plaintext,
        }

    def create_user(self, name: str, role: str, password: str) -> dict[str, Any]:
        user = users.create_user(self.store, name, role, password)
        return {"id": user.id, "name": user.name, "role": user.role}

    def list_users(self) -> list[dict[str, Any]]:
        return [users.user_json(u) for u in self.store.list_users()]

    def change_user(self, name: str, role: str | None, disabled: bool | None) -> dict[str, Any]:
        user = self.store.find_user(name)
        if user is None:
            raise NotFoundError(f"no user {name!r}")
        return users.user_json(users.change_user(self.store, user.id, role=role, disabled=disabled))

    def list_environments(self) -> list[dict[str, Any]]:
        return [_environment(e) for e in self.store.list_environments()]

    def create_environment(self, key: str, name: str | None) -> dict[str, Any]:
        return _environment(control.create_environment(self.store, key, name))

    def backup(self, output: Path) -> dict[str, Any]:
        log_dir = self.settings.log_dir
        if log_dir.exists() and any(log_dir.iterdir()):
            # Evidence a stopped server acknowledged but did not load yet belongs in the backup.
            IngestLog(log_dir, self.store, fsync=self.settings.fsync).close()
        return take_backup(self.store, output, secret_path(self.settings))


def _ingest_result(accepted: Mapping[str, int], problems: Sequence[Any]) -> dict[str, Any]:
    return {
        "accepted": dict(accepted),
        "rejected": [
            {"kind": p.kind, "index": p.index, "field": p.field, "reason": p.reason} for p in problems
        ],
    }
