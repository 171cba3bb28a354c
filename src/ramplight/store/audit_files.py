"""The two audit files kept beside (or away from) the database: the server secret that MACs
every audit row, and the head log — each chain's latest (seq, hash) after every write, HMACed.

Neither is ever logged. Losing the secret makes every MAC unverifiable; losing the head log
makes deleted newest rows undetectable: back them up with the database, but not in the same
place an attacker of the database could reach (docs/operations.md, "Audit log").
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import msgspec

from ramplight.core.audit import AuditHead
from ramplight.core.errors import StoreError

_head_decoder = msgspec.json.Decoder(AuditHead)
_encoder = msgspec.json.Encoder()


def load_secret(path: Path, create: bool) -> bytes | None:
    """The secret in `path`; a new one (0600, never overwritten) when `create` and absent."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        if not create:
            return None
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read the audit secret {path}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_secret(path, create=False)  # another process created it first
    with os.fdopen(fd, "w") as file:
        file.write(value.hex() + "\n")
        file.flush()
        os.fsync(file.fileno())
    return value


def read_heads(path: Path) -> list[AuditHead] | None:
    """Every head logged, oldest first; None when there is no head log."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return None
    try:
        return [_head_decoder.decode(line) for line in lines if line.strip()]
    except msgspec.DecodeError as exc:
        raise StoreError(f"the audit head log {path} is not readable: {exc}") from None


def append_heads(path: Path, heads: Sequence[AuditHead], start: bool = False) -> None:
    """Append (or, with `start`, begin) the head log, synced before returning."""
    data = b"".join(_encoder.encode(h) + b"\n" for h in heads)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if start else os.O_APPEND), 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
