"""Where CLI commands act: the database file directly, or the server that holds it.

DuckDB lets one process write a file. When a server holds the database (it leaves
`<db>.server.json` beside it) or `RAMPLIGHT_URL` is set, commands go through the HTTP API
with `RAMPLIGHT_ADMIN_KEY`; otherwise they open the file themselves (`cli/local.py`). Both paths
call the same validation and the same `control` functions, so results are identical.

Only the path taken is imported: a command through a server needs HTTP, not the store, the
statistics or DuckDB, and starts in a fraction of the time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote

import httpx
import msgspec

from ramplight.core.errors import (
    AuthError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLarge,
    RamplightError,
    StoreError,
    ValidationError,
)
from ramplight.core.flags import Flag
from ramplight.core.sources import Source
from ramplight.server.serverfile import read_server_file
from ramplight.settings import Settings
from ramplight.store.backup import add_secret, secret_path, unpack

if TYPE_CHECKING:
    from ramplight.analysis.options import ReadoutOptions
    from ramplight.cli.local import LocalBackend

_flag_list = msgspec.json.Decoder(list[Flag])
_flag = msgspec.json.Decoder(Flag)


class Backend(Protocol):
    where: str

    def list_flags(self, archived: bool) -> list[Flag]: ...
    def get_flag(self, key: str) -> Flag: ...
    def apply(
        self,
        docs: Sequence[Mapping[str, Any]],
        metrics: Sequence[Mapping[str, Any]],
        plans: Sequence[Mapping[str, Any]],
        dry_run: bool,
        sources: Sequence[Mapping[str, Any]] = (),
        prices: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]: ...
    def list_sources(self) -> list[Source]: ...
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
        """The flag after the ramp, and whether it changed (False: unchanged, no new version)."""
        ...

    def kill(self, key: str, environment: str, reason: str | None) -> tuple[Flag, bool]: ...
    def restore(self, key: str, environment: str, reason: str | None, force: bool) -> tuple[Flag, bool]: ...
    def decide(
        self, key: str, environment: str, action: str, reason: str | None, force: bool, percent: float | None
    ) -> dict[str, Any]: ...
    def decisions(self, key: str) -> list[dict[str, Any]]: ...
    def run_gate(self, key: str, request: Mapping[str, Any]) -> dict[str, Any]:
        """Run the eval gate and record it with the flag (a `GateRequest` as JSON)."""
        ...

    def stale(self, days: float) -> list[dict[str, Any]]: ...
    def check_flags(self) -> list[dict[str, Any]]: ...
    def report(
        self, key: str, environment: str, metrics: Sequence[str], options: ReadoutOptions
    ) -> dict[str, Any]: ...
    def sql(
        self, key: str, environment: str, metrics: Sequence[str], dialect: str, segment: str | None
    ) -> str: ...
    def export(
        self, key: str, environment: str, fmt: str, output: Path, metrics: Sequence[str], segment: str | None
    ) -> None: ...
    def ingest(self, environment: str, batch: Mapping[str, Sequence[bytes]]) -> dict[str, Any]: ...
    def ingest_spans(self, environment: str, request: bytes) -> dict[str, Any]:
        """One OTLP/JSON ExportTraceServiceRequest: {accepted: {spans, exposures}, duplicates,
        rejected: [reason, …]} (flag evaluation events on spans become exposures)."""
        ...

    def changes(self, key: str) -> list[dict[str, Any]]: ...
    def verify_audit(self) -> dict[str, Any]: ...
    def create_key(self, kind: str, name: str, environment: str | None) -> dict[str, Any]: ...
    def create_user(self, name: str, role: str, password: str) -> dict[str, Any]:
        """A web UI user: {id, name, role} (the password is kept only as a hash)."""
        ...

    def list_users(self) -> list[dict[str, Any]]:
        """Web UI users: id, name, role, created_at, disabled_at, last_sign_in_at (no hashes)."""
        ...

    def change_user(self, name: str, role: str | None, disabled: bool | None) -> dict[str, Any]:
        """Change a user's role or disable/re-enable them; the user as `list_users` shows it."""
        ...

    def list_environments(self) -> list[dict[str, Any]]: ...
    def create_environment(self, key: str, name: str | None) -> dict[str, Any]: ...
    def backup(self, output: Path) -> dict[str, Any]:
        """Write a consistent backup archive to `output`; its manifest."""
        ...


_STATUS_ERRORS: dict[int, type[RamplightError]] = {
    401: AuthError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLarge,
    422: ValidationError,
}


_unchanged = msgspec.json.Decoder(dict[str, Any])


def _changed(body: bytes) -> tuple[Flag, bool]:
    """A flag answer, or `{"unchanged": true, "flag": …}` when the action changed nothing."""
    decoded = _unchanged.decode(body)
    if decoded.get("unchanged") is True:
        return msgspec.convert(decoded["flag"], Flag), False
    return _flag.decode(body), True


class RemoteBackend:
    """Acts through a running server's admin API."""

    def __init__(self, url: str, admin_key: str, secret: Path | None = None) -> None:
        self.where = url
        self.secret = secret
        """The server's audit secret when this machine holds it (the API never sends it)."""
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=120.0
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot reach the server at {self.where}: {exc}") from exc
        if response.status_code >= 400:
            self._raise(response)
        return response

    @staticmethod
    def _raise(response: httpx.Response) -> None:
        try:
            body = response.json()
            message = body.get("message") or str(body.get("detail"))
        except ValueError:
            message = response.text[:300]
        raise _STATUS_ERRORS.get(response.status_code, StoreError)(message)

    def list_flags(self, archived: bool) -> list[Flag]:
        return _flag_list.decode(self._call("GET", "/api/flags", params={"archived": archived}).content)

    def get_flag(self, key: str) -> Flag:
        return _flag.decode(self._call("GET", f"/api/flags/{key}").content)

    def apply(
        self,
        docs: Sequence[Mapping[str, Any]],
        metrics: Sequence[Mapping[str, Any]],
        plans: Sequence[Mapping[str, Any]],
        dry_run: bool,
        sources: Sequence[Mapping[str, Any]] = (),
        prices: Sequence[Mapping[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        body = {
            "flags": list(docs),
            "metrics": list(metrics),
            "plans": list(plans),
            "sources": list(sources),
            "prices": None if prices is None else list(prices),
            "dry_run": dry_run,
        }
        result: list[dict[str, Any]] = self._call("POST", "/api/apply", json=body).json()
        return result

    def list_sources(self) -> list[Source]:
        return msgspec.json.decode(self._call("GET", "/api/sources").content, type=list[Source])

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
        body = {
            "environment": environment,
            "variation": variation,
            "percent": percent,
            "from": donor,
            "reason": reason,
            "force": force,
        }
        return _changed(self._call("POST", f"/api/flags/{key}/ramp", json=body).content)

    def kill(self, key: str, environment: str, reason: str | None) -> tuple[Flag, bool]:
        body = {"environment": environment, "reason": reason}
        return _changed(self._call("POST", f"/api/flags/{key}/kill", json=body).content)

    def restore(self, key: str, environment: str, reason: str | None, force: bool) -> tuple[Flag, bool]:
        body = {"environment": environment, "reason": reason, "force": force}
        return _changed(self._call("POST", f"/api/flags/{key}/restore", json=body).content)

    def decide(
        self, key: str, environment: str, action: str, reason: str | None, force: bool, percent: float | None
    ) -> dict[str, Any]:
        body = {
            "environment": environment,
            "action": action,
            "reason": reason,
            "force": force,
            "percent": percent,
        }
        result: dict[str, Any] = self._call("POST", f"/api/flags/{key}/decisions", json=body).json()
        return result

    def run_gate(self, key: str, request: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/flags/{key}/gates", json=dict(request)).json()
        return result

    def decisions(self, key: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/api/flags/{key}/decisions").json()
        return result

    def stale(self, days: float) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/flags-stale", params={"days": days}).json()
        return result

    def check_flags(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/flags-check").json()
        return result

    def report(
        self, key: str, environment: str, metrics: Sequence[str], options: ReadoutOptions
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "environment": environment,
            "metric": list(metrics),
            "served": options.served,
            "bayes": options.bayes,
            "traces": options.traces,
        }
        if options.segment is not None:
            params["segment"] = options.segment
        if options.phase is not None:
            params["phase"] = options.phase
        result: dict[str, Any] = self._call("GET", f"/api/flags/{key}/report", params=params).json()
        return result

    def sql(
        self, key: str, environment: str, metrics: Sequence[str], dialect: str, segment: str | None
    ) -> str:
        params: dict[str, Any] = {"environment": environment, "metric": list(metrics), "dialect": dialect}
        if segment is not None:
            params["segment"] = segment
        return self._call("GET", f"/api/flags/{key}/sql", params=params).text

    def export(
        self, key: str, environment: str, fmt: str, output: Path, metrics: Sequence[str], segment: str | None
    ) -> None:
        params: dict[str, Any] = {"environment": environment, "metric": list(metrics), "format": fmt}
        if segment is not None:
            params["segment"] = segment
        output.write_bytes(self._call("GET", f"/api/flags/{key}/units", params=params).content)

    def ingest(self, environment: str, batch: Mapping[str, Sequence[bytes]]) -> dict[str, Any]:
        body = (
            b"{"
            + b",".join(
                b'"' + kind.encode() + b'":[' + b",".join(items) + b"]" for kind, items in batch.items()
            )
            + b"}"
        )
        result: dict[str, Any] = self._call(
            "POST",
            "/ingest/batch",
            params={"environment": environment},
            content=body,
            headers={"Content-Type": "application/json"},
        ).json()
        return result

    def ingest_spans(self, environment: str, request: bytes) -> dict[str, Any]:
        """POST /v1/traces; the server answers with the rejected count and reasons only."""
        answer = self._call(
            "POST",
            "/v1/traces",
            params={"environment": environment},
            content=request,
            headers={"Content-Type": "application/json"},
        ).json()
        partial = answer.get("partialSuccess") or {}
        rejected_count = int(partial.get("rejectedSpans") or 0)
        spans = sum(
            len(s.get("spans") or [])
            for r in msgspec.json.decode(request).get("resourceSpans") or []
            for s in r.get("scopeSpans") or []
        )
        message = partial.get("errorMessage")
        return {
            "accepted": {"spans": spans - rejected_count},
            "duplicates": 0,
            "rejected": [message] if message else [],
        }

    def changes(self, key: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", f"/api/flags/{key}/changes").json()
        return result

    def verify_audit(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/audit/verify").json()
        return result

    def create_key(self, kind: str, name: str, environment: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", "/api/keys", json={"kind": kind, "name": name, "environment": environment}
        ).json()
        return result

    def create_user(self, name: str, role: str, password: str) -> dict[str, Any]:
        body = self._call(
            "POST", "/api/users", json={"name": name, "role": role, "password": password}
        ).json()
        return {"id": body["id"], "name": body["name"], "role": body["role"]}

    def list_users(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/users").json()
        return result

    def change_user(self, name: str, role: str | None, disabled: bool | None) -> dict[str, Any]:
        change = {k: v for k, v in (("role", role), ("disabled", disabled)) if v is not None}
        result: dict[str, Any] = self._call("PATCH", f"/api/users/{quote(name, safe='')}", json=change).json()
        return result

    def list_environments(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/environments").json()
        return result

    def backup(self, output: Path) -> dict[str, Any]:
        partial = output.with_name(output.name + ".download")
        try:
            with self._http.stream("POST", "/api/backup") as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise(response)
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise StoreError(f"cannot reach the server at {self.where}: {exc}") from exc
        partial.replace(output)
        if self.secret is not None and self.secret.exists():
            return add_secret(output, self.secret)
        with tempfile.TemporaryDirectory(prefix="backup-check-", dir=output.parent) as tmp:
            return unpack(output, Path(tmp))

    def create_environment(self, key: str, name: str | None) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", "/api/environments", json={"key": key, "name": name}
        ).json()
        return result


def running_servers(directory: Path) -> list[tuple[Path, str]]:
    """(database, url) of each live server that holds a database in `directory`."""
    found = []
    for info in sorted(directory.glob("*.server.json")):
        url = read_server_file(info)
        if url is not None:
            found.append((info.with_name(info.name.removesuffix(".server.json")), url))
    return found


def _missing_database(db: Path) -> NotFoundError:
    servers = running_servers(db.parent)
    held = "; ".join(f"a server holds {path} at {url}" for path, url in servers)
    hint = f" ({held}: pass --db {servers[0][0]} or set RAMPLIGHT_URL)" if servers else ""
    return NotFoundError(
        f"the database file {db} does not exist{hint}; pass --db or set RAMPLIGHT_DB to an existing one, "
        "or create it with `ramplight apply`, `ramplight env create` or `ramplight serve`"
    )


@contextmanager
def open_backend(settings: Settings, create: bool = False) -> Iterator[Backend]:
    """The server holding `settings.db` if one runs, else the file itself. Only commands that
    set up a database pass `create`; the rest name a missing file instead of making an empty one."""
    beside = read_server_file(settings.server_file)
    url = settings.url or beside
    backend: LocalBackend | RemoteBackend
    if url is not None:
        if not settings.admin_key:
            raise AuthError(
                f"{settings.db} is held by the server at {url}; set RAMPLIGHT_ADMIN_KEY to an admin key "
                "(printed when the server created it) so the CLI can act through it"
            )
        # The local secret file belongs to this server only when the server runs beside the file.
        secret = secret_path(settings) if url == beside else None
        backend = RemoteBackend(url, settings.admin_key, secret)
        where = f"the server at {url}"
    else:
        if not create and settings.control_url is None and not settings.db.exists():
            raise _missing_database(settings.db)
        from ramplight.cli.local import LocalBackend

        backend = LocalBackend(settings)
        where = settings.where
    try:
        yield backend
    except NotFoundError as exc:
        # A wrong --db shows up as a missing flag: say which database was asked.
        raise NotFoundError(f"{exc.message} (in {where})") from exc
    finally:
        backend.close()
