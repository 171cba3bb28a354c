"""Log, then load: acknowledged evidence is fsynced to a segment log before the answer goes
out, and loaded into the store in large transactions in the background.

Layout under the log directory: `NNNNNNNNNNNN.open/` is the segment being written (one NDJSON
file per evidence kind); sealing renames it to `NNNNNNNNNNNN.seg/`; the loader loads sealed
segments in order (the store records each one in the same transaction) and deletes them. On
start, open segments are trimmed to their last complete line, sealed and replayed.

Each log directory has a random id (`log-id`, written once). The store records a segment as
`<log id>/<segment>`: several servers, each with its own log, load into one shared evidence
database (PostgreSQL, ClickHouse) without one's `000000000001.seg` being taken for another's
already-loaded segment and skipped.

Bounded: past `max_backlog_bytes` of sealed-but-unloaded data, or when the oldest of it is older
than `max_backlog_seconds`, `pressure()` says so and ingestion answers 503 with Retry-After
instead of growing the log. A segment that fails to load `dead_letter_after` times is moved to
`dead/NAME/` with a `reason.txt`, so it never blocks later segments or readouts; `reload`
puts it back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import shutil
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from ramplight.core.errors import StoreError
from ramplight.store.base import EvidenceKind, Store

log = logging.getLogger("ramplight.ingest")

KINDS: tuple[EvidenceKind, ...] = ("exposures", "events", "evals", "spans")
_encoder = msgspec.json.Encoder()


def encode_items(items: Mapping[str, Sequence[msgspec.Struct]]) -> dict[EvidenceKind, bytes]:
    """NDJSON bytes per kind, ready for `IngestLog.append`."""
    return {kind: _encoder.encode_lines(rows) for kind, rows in items.items() if rows}  # type: ignore[misc]


@dataclass
class _Append:
    chunks: dict[EvidenceKind, bytes]
    items: int
    done: Callable[[BaseException | None], None]


@dataclass
class _Seal:
    done: Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Pressure:
    """Whether ingestion should push back, and for how long (seconds)."""

    overloaded: bool
    retry_after: float
    backlog_bytes: int
    backlog_items: int
    oldest_seconds: float
    reason: str = ""


@dataclass
class _OpenSegment:
    seq: int
    path: Path
    files: dict[EvidenceKind, int] = field(default_factory=dict)
    items: int = 0
    opened: float = field(default_factory=time.monotonic)


def _trim_partial_line(path: Path) -> None:
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end != len(data):
        with path.open("r+b") as handle:
            handle.truncate(end)
            os.fsync(handle.fileno())


def _log_id(directory: Path) -> str:
    """The directory's id, created (durably) the first time; see the module docstring."""
    path = directory / "log-id"
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if value:
        if not re.fullmatch(r"[0-9a-f]{32}", value):
            raise StoreError(f"{path}: not a log id ({value[:40]!r}); restore it or move the log aside")
        return value
    value = uuid.uuid4().hex
    staged = directory / "log-id.tmp"
    with staged.open("w") as handle:
        handle.write(value + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    staged.rename(path)
    _fsync_dir(directory)
    return value


LOADER_NICENESS = 10
"""The loader thread's niceness: while the cores are scarce, acknowledging (which clients wait
for) gets them first and loading catches up after; the backlog bounds how far behind it falls."""


def _yield_cpu() -> None:
    """Lower the calling thread's CPU priority. Only on Linux, where niceness is per thread
    (elsewhere a thread id given as a process id could name another process); where it is
    refused, nothing changes."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOADER_NICENESS)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IngestLog:
    """Group-committed, fsynced segment log in front of a `Store`."""

    def __init__(
        self,
        directory: Path,
        store: Store,
        segment_items: int = 250_000,
        segment_seconds: float = 0.5,
        fsync: bool = True,
        max_backlog_bytes: int = 512 * 1024 * 1024,
        max_backlog_seconds: float = 120.0,
        dead_letter_after: int = 3,
    ) -> None:
        self.directory = directory
        self.store = store
        self.segment_items = segment_items
        self.segment_seconds = segment_seconds
        self.fsync = fsync
        self.max_backlog_bytes = max_backlog_bytes
        self.max_backlog_seconds = max_backlog_seconds
        self.dead_letter_after = dead_letter_after
        self._backlog: dict[str, tuple[int, int, float]] = {}  # sealed segment → (bytes, items, sealed at)
        self._attempts: dict[str, int] = {}
        self._load_rate = 50e6  # bytes/s, updated as segments load (for Retry-After)
        self._queue: queue.Queue[_Append | _Seal | None] = queue.Queue()
        self._segment: _OpenSegment | None = None
        self._sealed = threading.Condition()
        self._sealed_seq = 0
        self._loaded_seq = 0
        self._attempted_seq = 0  # every segment up to here has been tried at least once
        self._load_error: BaseException | None = None
        self._closing = False
        directory.mkdir(parents=True, exist_ok=True)
        self.log_id = _log_id(directory)
        self._legacy_loaded: set[str] = set()
        self._next_seq = self._recover() + 1
        self._writer = threading.Thread(target=self._write_loop, name="ramplight-log", daemon=True)
        self._loader = threading.Thread(target=self._load_loop, name="ramplight-load", daemon=True)
        self._writer.start()
        self._loader.start()

    # -- public -------------------------------------------------------------------------

    def append(self, chunks: dict[EvidenceKind, bytes], items: int) -> Future[None]:
        """Queue NDJSON chunks; the future resolves once they are on disk (fsynced)."""
        future: Future[None] = Future()

        def done(error: BaseException | None) -> None:
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

        self._queue.put(_Append(chunks, items, done))
        return future

    def pending_files(self) -> list[Path]:
        """NDJSON files of sealed segments not loaded yet."""
        return [f for path in self._pending() for f in sorted(path.glob("*.ndjson"))]

    def flush(self, timeout: float = 60.0) -> None:
        """Seal the open segment and wait until everything acknowledged so far is loaded."""
        sealed: Future[int] = Future()
        self._queue.put(_Seal(sealed.set_result))
        target = sealed.result(timeout)
        deadline = time.monotonic() + timeout
        with self._sealed:
            while self._loaded_seq < target:
                if self._load_error is not None and self._attempted_seq >= target:
                    raise self._load_error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("evidence log did not load in time")
                self._sealed.wait(remaining)

    def close(self) -> None:
        """Seal, load what is left, and stop both threads."""
        if self._closing:
            return
        try:
            self.flush()
        except (TimeoutError, Exception):
            log.exception("closing with evidence not yet loaded; it stays in the log for the next start")
        self._closing = True
        self._queue.put(None)
        with self._sealed:
            self._sealed.notify_all()
        self._writer.join()
        self._loader.join()

    # -- recovery ------------------------------------------------------------------------

    def _recover(self) -> int:
        """Seal segments left open by a crash; return the highest sequence number seen."""
        highest = 0
        for entry in sorted(self.directory.iterdir()):
            stem, _, suffix = entry.name.partition(".")
            if not stem.isdigit() or suffix not in ("open", "seg"):
                continue
            seq = int(stem)
            highest = max(highest, seq)
            if suffix == "open":
                for path in entry.glob("*.ndjson"):
                    _trim_partial_line(path)
                entry.rename(self.directory / f"{stem}.seg")
                _fsync_dir(self.directory)
        for path in self._pending():
            size = sum(f.stat().st_size for f in path.glob("*.ndjson"))
            self._backlog[path.name] = (size, 0, path.stat().st_mtime)
        self._sealed_seq = highest
        # Names already loaded (and deleted) must never be reused: the store would skip them.
        prefix = f"{self.log_id}/"
        for name in self.store.loaded_segments():
            if "/" not in name:
                # Recorded before log ids: a segment of that name still here was loaded, and the
                # process stopped before deleting it (it must not load again under a new name);
                # new segments are numbered past these names, so none is ever taken for one.
                self._legacy_loaded.add(name)
                stem = name.split(".", 1)[0]
            elif name.startswith(prefix):
                stem = name[len(prefix) :].split(".", 1)[0]
            else:
                continue  # another log's
            if stem.isdigit():
                highest = max(highest, int(stem))
        return highest

    # -- writer ---------------------------------------------------------------------------

    def _open_segment(self) -> _OpenSegment:
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / f"{seq:012d}.open"
        path.mkdir()
        return _OpenSegment(seq=seq, path=path)

    def _seal_segment(self) -> None:
        segment = self._segment
        if segment is None:
            return
        for fd in segment.files.values():
            os.close(fd)
        sealed = self.directory / f"{segment.seq:012d}.seg"
        segment.path.rename(sealed)
        size = sum(f.stat().st_size for f in sealed.glob("*.ndjson"))
        with self._sealed:
            self._backlog[sealed.name] = (size, segment.items, time.time())
        if self.fsync:
            _fsync_dir(self.directory)
        self._segment = None
        with self._sealed:
            self._sealed_seq = segment.seq
            self._sealed.notify_all()

    def _write_group(self, group: list[_Append]) -> None:
        if self._segment is None:
            self._segment = self._open_segment()
            if self.fsync:
                _fsync_dir(self.directory)
        segment = self._segment
        sizes: dict[int, int] = {}  # each file's length before this group, to undo a failed write
        items = segment.items
        try:
            for request in group:
                for kind, data in request.chunks.items():
                    fd = segment.files.get(kind)
                    if fd is None:
                        fd = os.open(
                            segment.path / f"{kind}.ndjson", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
                        )
                        segment.files[kind] = fd
                    sizes.setdefault(fd, os.fstat(fd).st_size)
                    view = memoryview(data)
                    while view:
                        written = os.write(fd, view)
                        view = view[written:]
                segment.items += request.items
            if self.fsync:
                for fd in sizes:
                    os.fdatasync(fd)
                _fsync_dir(segment.path)
        except BaseException:
            # Nothing of this group is acknowledged, so none of it may stay: a partial line
            # would corrupt the segment for the items acknowledged before and after it.
            segment.items = items
            for fd, size in sizes.items():
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            raise

    def _write_loop(self) -> None:
        while True:
            timeout = None
            if self._segment is not None:
                timeout = max(0.0, self.segment_seconds - (time.monotonic() - self._segment.opened))
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._seal_segment()
                continue
            if first is None:
                self._seal_segment()
                return
            batch: list[_Append | _Seal] = [first]
            while True:  # group commit: everything queued meanwhile shares one fsync
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            appends = [r for r in batch if isinstance(r, _Append)]
            try:
                if appends:
                    self._write_group(appends)
            except BaseException as exc:  # the disk failed: nobody gets an acknowledgement
                log.exception("evidence log write failed")
                for request in appends:
                    request.done(exc)
                continue
            for request in appends:
                request.done(None)
            segment = self._segment
            if segment is not None and (
                segment.items >= self.segment_items
                or time.monotonic() - segment.opened >= self.segment_seconds
            ):
                self._seal_segment()
            for queued in batch:
                if isinstance(queued, _Seal):
                    self._seal_segment()
                    queued.done(self._sealed_seq)

    # -- backlog, dead letters ----------------------------------------------------------------

    def pressure(self) -> Pressure:
        with self._sealed:
            entries = list(self._backlog.values())
        size = sum(e[0] for e in entries)
        items = sum(e[1] for e in entries)
        oldest = max((time.time() - e[2] for e in entries), default=0.0)
        retry = min(30.0, max(1.0, size / max(self._load_rate, 1.0)))
        if size > self.max_backlog_bytes:
            reason = f"{size / 1e6:.0f} MB waiting to load (limit {self.max_backlog_bytes / 1e6:.0f} MB)"
            return Pressure(True, retry, size, items, oldest, reason)
        if oldest > self.max_backlog_seconds:
            reason = f"loading is {oldest:.0f} s behind (limit {self.max_backlog_seconds:g} s)"
            return Pressure(True, retry, size, items, oldest, reason)
        return Pressure(False, 0.0, size, items, oldest)

    def _done(self, name: str, seconds: float) -> None:
        with self._sealed:
            size = self._backlog.pop(name, (0, 0, 0.0))[0]
            self._attempts.pop(name, None)
            if seconds > 0 and size > 0:
                self._load_rate = 0.8 * self._load_rate + 0.2 * (size / seconds)

    @property
    def dead_directory(self) -> Path:
        return self.directory / "dead"

    def _dead_letter(self, path: Path, exc: BaseException) -> None:
        """Move a segment that keeps failing aside, with its reason, so later ones go on."""
        self.dead_directory.mkdir(exist_ok=True)
        target = self.dead_directory / path.name
        path.rename(target)
        (target / "reason.txt").write_text(f"{type(exc).__name__}: {exc}\n")
        _fsync_dir(self.directory)
        log.error(
            "segment %s moved to %s after %d failed loads: %s", path.name, target, self.dead_letter_after, exc
        )
        with self._sealed:
            self._backlog.pop(path.name, None)
            self._attempts.pop(path.name, None)

    def dead_letters(self) -> list[dict[str, object]]:
        return dead_letters(self.dead_directory)

    def reload(self, name: str) -> None:
        """Put a dead-lettered segment back in line to load (after fixing what failed)."""
        source = self.dead_directory / name
        if not name.endswith(".seg") or not source.is_dir():
            raise FileNotFoundError(f"no dead-lettered segment {name!r}")
        (source / "reason.txt").unlink(missing_ok=True)
        source.rename(self.directory / name)
        size = sum(f.stat().st_size for f in (self.directory / name).glob("*.ndjson"))
        seq = int(name.split(".")[0])
        with self._sealed:
            self._backlog[name] = (size, 0, time.time())
            self._sealed_seq = max(self._sealed_seq, seq)
            self._loaded_seq = min(self._loaded_seq, seq - 1)  # wake the loader for it
            self._sealed.notify_all()

    # -- loader ---------------------------------------------------------------------------

    def _pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.seg"))

    def _load_loop(self) -> None:
        _yield_cpu()
        while True:
            with self._sealed:
                while not self._closing and self._loaded_seq >= self._sealed_seq:
                    self._sealed.wait(1.0)
                if self._closing and self._loaded_seq >= self._sealed_seq:
                    return
                target = self._sealed_seq
            failed = False
            for path in self._pending():
                seq = int(path.name.split(".")[0])
                files = {
                    kind: path / f"{kind}.ndjson" for kind in KINDS if (path / f"{kind}.ndjson").exists()
                }
                try:
                    started = time.monotonic()
                    if files and path.name not in self._legacy_loaded:
                        self.store.load_segment(f"{self.log_id}/{path.name}", files)
                    shutil.rmtree(path)
                    self._done(path.name, time.monotonic() - started)
                except BaseException as exc:
                    attempts = self._attempts[path.name] = self._attempts.get(path.name, 0) + 1
                    if attempts >= self.dead_letter_after and not self._closing:
                        self._dead_letter(path, exc)
                        continue
                    # Keep going with later segments (event ids make order irrelevant); this one
                    # stays on disk, is retried, and holds back `flush` with its error meanwhile.
                    log.exception("loading %s failed; it stays on disk for the next try", path.name)
                    # The error outlives this loop (flush re-raises it): its frames must not keep
                    # the store's cursors alive.
                    traceback.clear_frames(exc.__traceback__)
                    with self._sealed:
                        self._load_error = exc
                        self._sealed.notify_all()
                    failed = True
                    continue
                if not failed:
                    with self._sealed:
                        self._loaded_seq = max(self._loaded_seq, seq)
                        self._sealed.notify_all()
            with self._sealed:
                self._attempted_seq = max(self._attempted_seq, target)
                self._sealed.notify_all()
                if failed and self._closing:
                    return  # what failed stays on disk; the next start replays it
                if failed:
                    self._sealed.wait(1.0)
                else:
                    self._load_error = None
                    self._loaded_seq = max(self._loaded_seq, target)
                    self._sealed.notify_all()


def dead_letters(directory: Path) -> list[dict[str, object]]:
    """Dead-lettered segments under `directory`: name, why, size and when it was moved."""
    out: list[dict[str, object]] = []
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.seg")):
        reason = path / "reason.txt"
        out.append(
            {
                "name": path.name,
                "reason": reason.read_text().strip() if reason.exists() else "",
                "bytes": sum(f.stat().st_size for f in path.glob("*.ndjson")),
                "moved_at": path.stat().st_mtime,
            }
        )
    return out
