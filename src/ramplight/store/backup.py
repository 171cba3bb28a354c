"""Backups of the embedded store: one tar archive with a consistent copy of the database file,
its audit head log, the audit secret (when this side may read it) and a manifest of checksums.

The copy is taken by `DuckDBStore.snapshot` under the write lock, after the ingest log has been
flushed, so every item acknowledged before the backup began is in it and the head log ends where
the copied chains end. The secret never travels over the API: a backup made through a server
gets it added by the CLI from the local file, or says it is missing (docs/operations.md).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ramplight.core.errors import ConflictError, ValidationError
from ramplight.settings import Settings

if TYPE_CHECKING:
    from ramplight.store.base import Store

FORMAT = 1
MANIFEST = "manifest.json"
# Archive member names, whatever the source database was called.
DATABASE, WAL, HEAD_LOG, SECRET = (
    "ramplight.duckdb",
    "ramplight.duckdb.wal",
    "ramplight.duckdb.audit-head",
    ("ramplight.duckdb.secret"),
)
MEMBERS = (DATABASE, WAL, HEAD_LOG, SECRET)


def secret_path(settings: Settings) -> Path:
    """Where the audit secret of `settings.db` lives (`RAMPLIGHT_AUDIT_SECRET` or `<db>.secret`)."""
    return settings.audit_secret or settings.db.with_name(settings.db.name + ".secret")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def take_backup(store: Store, archive: Path, secret: Path | None) -> dict[str, Any]:
    """Snapshot `store` into the tar `archive` (with the secret file when given); the manifest."""
    with tempfile.TemporaryDirectory(prefix="backup-", dir=store.scratch_dir()) as tmp:
        staged = Path(tmp)
        taken = store.snapshot(staged)
        members = {DATABASE + name.removeprefix(taken["database"]): staged / name for name in taken["files"]}
        if secret is not None and secret.exists():
            members[SECRET] = secret
        manifest = {
            "format": FORMAT,
            "created_at": datetime.now(UTC).isoformat(),
            "source": taken["database"],
            "schema_version": taken["schema_version"],
            "counts": taken["counts"],
        }
        return pack(archive, members, manifest)


def pack(archive: Path, members: Mapping[str, Path], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Write the archive atomically (a partial file, fsynced, renamed); the manifest written."""
    full = {
        **manifest,
        "files": {name: _sha256(path) for name, path in sorted(members.items())},
        "secret_included": SECRET in members,
    }
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w") as tar:
        body = msgspec.json.format(msgspec.json.encode(full), indent=2)
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(body), 0o600, int(datetime.now(UTC).timestamp())
        tar.addfile(info, io.BytesIO(body))
        for name, path in sorted(members.items()):
            tar.add(path, arcname=name, recursive=False)
    with partial.open("rb") as handle:
        os.fsync(handle.fileno())
    os.chmod(partial, 0o600)  # it may hold the audit secret
    partial.replace(archive)
    return full


def unpack(archive: Path, directory: Path) -> dict[str, Any]:
    """Extract the known members into `directory`, checking each against the manifest."""
    try:
        with tarfile.open(archive, "r") as tar:
            return _extract(tar, archive, directory)
    except (OSError, tarfile.TarError) as exc:
        raise ValidationError.at("FILE", f"{archive} is not a Ramplight backup: {exc}") from None


def _extract(tar: tarfile.TarFile, archive: Path, directory: Path) -> dict[str, Any]:
    names = {m.name: m for m in tar.getmembers() if m.isfile()}
    if MANIFEST not in names or DATABASE not in names:
        raise ValidationError.at("FILE", f"{archive} is not a Ramplight backup (no manifest or database)")
    manifest: dict[str, Any] = msgspec.json.decode(_read(tar, names[MANIFEST]))
    if manifest.get("format") != FORMAT:
        raise ValidationError.at("FILE", f"{archive} has backup format {manifest.get('format')!r}")
    for name, digest in manifest["files"].items():
        if name not in MEMBERS or name not in names:
            raise ValidationError.at("FILE", f"{archive}: member {name!r} is missing or unknown")
        target = directory / name
        source = tar.extractfile(names[name])
        assert source is not None
        with source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        if _sha256(target) != digest:
            raise ValidationError.at("FILE", f"{archive}: {name} does not match its checksum (damaged)")
    return manifest


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    assert handle is not None
    with handle:
        return handle.read()


def add_secret(archive: Path, secret: Path) -> dict[str, Any]:
    """Rewrite a backup made through a server with the local audit secret added."""
    with tempfile.TemporaryDirectory(prefix="backup-", dir=archive.parent) as tmp:
        staged = Path(tmp)
        manifest = unpack(archive, staged)
        members = {name: staged / name for name in manifest["files"]}
        members[SECRET] = secret
        return pack(
            archive, members, {k: v for k, v in manifest.items() if k not in ("files", "secret_included")}
        )


def restore(archive: Path, settings: Settings) -> dict[str, Any]:
    """Put a backup's files in place for `settings.db`, which must not exist yet; the manifest."""
    db = settings.db
    wal = db.with_name(db.name + ".wal")
    head = db.with_name(db.name + ".audit-head")
    for existing in (db, wal, head):
        if existing.exists():
            raise ConflictError(
                f"{existing} exists; restore into a new database file (--db NEW.duckdb), never over one"
            )
    secret = secret_path(settings)
    db.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{db.name}.restore-", dir=db.parent) as tmp:
        staged = Path(tmp)
        manifest = unpack(archive, staged)
        if (
            SECRET in manifest["files"]
            and secret.exists()
            and secret.read_bytes() != (staged / SECRET).read_bytes()
        ):
            raise ConflictError(
                f"{secret} exists with another secret; move it away or set RAMPLIGHT_AUDIT_SECRET"
            )
        moves = [(SECRET, secret), (HEAD_LOG, head), (WAL, wal), (DATABASE, db)]  # the database last
        for name, target in moves:
            if name in manifest["files"] and not target.exists():
                os.chmod(staged / name, 0o600)
                shutil.move(staged / name, target)
    return manifest
