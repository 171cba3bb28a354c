"""Soak: ingestion under load while the server is killed, the disk fills and clients resend.

    python benchmarks/soak.py              # 5 minutes, a kill -9 every 12 s, the disk full every 45 s
    python benchmarks/soak.py --quick      # 30 s, the short form CI runs (tests/e2e/test_soak.py)
    python benchmarks/soak.py --json       # the figures as one JSON object (exit 1 if any check fails)

A real `ramplight serve` (its own process, fsync on) takes 500-item batches from several
producer threads, each a client that behaves as the SDK does: an answer other than 200 — a
connection refused or reset by a kill, a 503 for a full disk or a backlog — means "send the same
batch again after a pause" (at-least-once delivery). Meanwhile:

- **kill -9**: the server is killed every `--kill-every` seconds and started again on the same
  port and database (the acknowledgement of the batch in flight may be lost: its resend must be
  answered as duplicates, never stored twice);
- **full disk**: the ingest log lives on a small tmpfs (mounted here; needs root) that a ballast
  file fills to the last byte every `--disk-every` seconds for a couple of seconds — appends fail
  with ENOSPC and must answer 503 without acknowledging anything;
- **deliberate resends** of acknowledged batches: re-serialized (other key order, whitespace,
  time-zone notation — items without an `event_id` too), the same batch sent to `staging` with a
  staging key (the same ids are other items there), and conflicting resends (same `event_id`,
  `ts` moved by 1 ms: answered as conflicts, never stored).

At the end the server is stopped cleanly and the database read directly: every acknowledged
identity must be stored exactly once with its first payload. Printed: acknowledged, stored,
duplicates, lost, extra (stored but never acknowledged), conflicts (sent, answered, stored), and
the faults that actually happened. Lost and duplicates must be 0.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import httpx
from _common import _BOOTSTRAP, free_port, load_average, loopback_only, machine
from rich.console import Console
from rich.table import Table

FLAG_KEY = "support_assistant_profile"
EVENTS_PER_BATCH = 400
EXPOSURES_PER_BATCH = 100
BASE_TS = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
PLUS_ONE = timezone(timedelta(hours=1))

console = Console(width=None if sys.stdout.isatty() else 120)


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the server, killed and restarted --------------------------------------------------------


class Server:
    """`ramplight serve` in a child process that the soak kills with SIGKILL and restarts."""

    def __init__(self, db: Path, output: Path) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPLIGHT_")}
        self.env.update(RAMPLIGHT_FSYNC="1", RAMPLIGHT_GUARDIAN_INTERVAL="0")
        boot = subprocess.run(
            [sys.executable, "-c", _BOOTSTRAP, str(db)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if boot.returncode != 0:
            raise RuntimeError(f"bootstrapping {db} failed:\n{boot.stderr}")
        self.admin_key = boot.stdout.strip()
        self.output = output.open("ab")
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ramplight", "serve", "--db", str(self.db), "--port", str(self.port)],
            stdout=self.output,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        self.starts += 1
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the server exited with {self.process.returncode}; see {self.output.name}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not become healthy within 120 s")
            time.sleep(0.05)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.output.close()


# -- the full disk -------------------------------------------------------------------------


def mount_small_disk(directory: Path, size_mb: int) -> str | None:
    """Mount a tmpfs of `size_mb` at `directory`; the reason when it cannot be done."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(directory)], capture_output=True
    )
    if done.returncode != 0:
        return done.stderr.decode().strip() or f"mount exited with {done.returncode}"
    return None


def fill_disk(directory: Path) -> int:
    """Write a ballast file until the filesystem refuses (ENOSPC); its size in bytes."""
    written = 0
    chunk = b"\0" * (1 << 20)
    with (directory / "ballast").open("wb", buffering=0) as handle:
        while True:
            try:
                written += handle.write(chunk)
            except OSError:
                break
        try:  # fill the last partial megabyte too
            while handle.write(b"\0" * 4096):
                written += 4096
        except OSError:
            pass
    return written


# -- producers -----------------------------------------------------------------------------


@dataclass
class Tally:
    batches: int = 0
    requests: int = 0
    retries: int = 0
    refused_503: int = 0
    refused_full_disk: int = 0
    connection_errors: int = 0
    server_errors: list[str] = field(default_factory=list)
    duplicates_answered: int = 0
    reserialized_resends: int = 0
    staging_batches: int = 0
    conflicts_sent: int = 0
    conflicts_answered: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Expected:
    """What must be in the store at the end: every acknowledged identity, with its first payload."""

    events: dict[tuple[str, str], str] = field(default_factory=dict)  # (env, event_id) -> ts
    exposures: set[tuple[str, str]] = field(default_factory=set)  # (env, unit_id); no event_id sent
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_batch(producer: int, number: int) -> dict[str, list[dict[str, Any]]]:
    tag = f"p{producer}b{number}"
    base = BASE_TS + timedelta(seconds=number)
    events = [
        {
            "ts": iso(base + timedelta(milliseconds=i)),
            "name": "resolved_without_escalation" if i % 2 else "answer_latency_ms",
            "unit_id": f"conv-{tag}-{i % 50}",
            "assignment_unit": "conversation",
            "value": float(i % 7),
            "event_id": f"{tag}-e{i}",
            "properties": {"channel": ("chat", "email", "voice")[i % 3]},
        }
        for i in range(EVENTS_PER_BATCH)
    ]
    exposures = [
        {
            "ts": iso(base),
            "flag_key": FLAG_KEY,
            "assignment_unit": "conversation",
            "unit_id": f"conv-{tag}-x{i}",
            "assigned_variation": "candidate" if i % 5 == 0 else "control",
            "served_variation": "candidate" if i % 5 == 0 else "control",
        }
        for i in range(EXPOSURES_PER_BATCH)
    ]
    return {"events": events, "exposures": exposures}


def reserialize(batch: dict[str, list[dict[str, Any]]]) -> bytes:
    """The same items in another byte layout: keys reversed, indented, times as +01:00."""

    def shifted(ts: str) -> str:
        moment = datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(PLUS_ONE)
        return moment.isoformat(timespec="milliseconds")

    out = {
        kind: [{k: (shifted(v) if k == "ts" else v) for k, v in reversed(item.items())} for item in items]
        for kind, items in reversed(batch.items())
    }
    return json.dumps(out, indent=1).encode()


class Producer(threading.Thread):
    def __init__(
        self,
        number: int,
        url: str,
        keys: dict[str, str],
        stop: threading.Event,
        tally: Tally,
        expected: Expected,
    ) -> None:
        super().__init__(name=f"producer-{number}", daemon=True)
        self.number = number
        self.url = url
        self.keys = keys
        self.stop_event = stop
        self.tally = tally
        self.expected = expected
        self.rng = random.Random(number)
        self.client = httpx.Client(base_url=url, timeout=60, trust_env=False)

    def send(self, environment: str, body: bytes) -> dict[str, Any]:
        """POST until the server answers 200, as an at-least-once client does; its answer."""
        headers = {"Authorization": f"Bearer {self.keys[environment]}", "Content-Type": "application/json"}
        first = True
        while True:
            with self.tally.lock:
                self.tally.requests += 1
                self.tally.retries += not first
            first = False
            try:
                response = self.client.post("/ingest/batch", content=body, headers=headers)
            except httpx.TransportError:
                with self.tally.lock:
                    self.tally.connection_errors += 1
                time.sleep(0.2)
                continue
            if response.status_code == 200:
                answer: dict[str, Any] = response.json()
                with self.tally.lock:
                    self.tally.duplicates_answered += sum(answer["duplicates"].values())
                return answer
            if response.status_code == 503:
                with self.tally.lock:
                    self.tally.refused_503 += 1
                    self.tally.refused_full_disk += "could not be made durable" in response.text
                time.sleep(min(float(response.headers.get("Retry-After", "1")), 1.0))
                continue
            with self.tally.lock:  # anything else is a defect: note it and keep going
                self.tally.server_errors.append(f"HTTP {response.status_code}: {response.text[:300]}")
            time.sleep(0.5)

    def run(self) -> None:
        number = 0
        while not self.stop_event.is_set():
            batch = make_batch(self.number, number)
            number += 1
            answer = self.send("production", json.dumps(batch).encode())
            if answer["rejected"]:
                self.unexpected(f"batch {number}: rejected {answer['rejected'][:2]}")
            self.acknowledged("production", batch)
            with self.tally.lock:
                self.tally.batches += 1
            roll = self.rng.random()
            if roll < 0.15:  # the same items, another byte layout: all duplicates
                answer = self.send("production", reserialize(batch))
                stored = sum(answer["accepted"].values())
                if stored or answer["rejected"]:
                    self.unexpected(
                        f"re-serialized resend stored {stored}, rejected {answer['rejected'][:2]}"
                    )
                with self.tally.lock:
                    self.tally.reserialized_resends += 1
            elif roll < 0.30:  # the same ids in another environment: other items there
                answer = self.send("staging", json.dumps(batch).encode())
                if answer["rejected"]:
                    self.unexpected(f"staging resend rejected {answer['rejected'][:2]}")
                self.acknowledged("staging", batch)
                with self.tally.lock:
                    self.tally.staging_batches += 1
            elif roll < 0.40:  # the same event_id with ts moved by 1 ms: conflicts
                moved = [
                    {
                        **e,
                        "ts": iso(
                            datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) + timedelta(milliseconds=1)
                        ),
                    }
                    for e in batch["events"][:5]
                ]
                answer = self.send("production", json.dumps({"events": moved}).encode())
                conflicts = [p for p in answer["rejected"] if "conflict" in p["reason"]]
                with self.tally.lock:
                    self.tally.conflicts_sent += len(moved)
                    self.tally.conflicts_answered += len(conflicts)
                if sum(answer["accepted"].values()):
                    self.unexpected(f"conflicting resend stored {answer['accepted']}")

    def acknowledged(self, environment: str, batch: dict[str, list[dict[str, Any]]]) -> None:
        with self.expected.lock:
            for e in batch["events"]:
                self.expected.events.setdefault((environment, e["event_id"]), e["ts"])
            self.expected.exposures.update((environment, x["unit_id"]) for x in batch["exposures"])

    def unexpected(self, what: str) -> None:
        with self.tally.lock:
            self.tally.unexpected.append(f"{self.name}: {what}")


# -- the run -------------------------------------------------------------------------------


@dataclass
class Result:
    seconds: float
    acknowledged: int
    stored: int
    duplicates: int
    lost: int
    extra: int
    wrong_payload: int
    kills: int
    disk_full_episodes: int
    refused_full_disk: int
    refused_503: int
    connection_errors: int
    retries: int
    requests: int
    duplicates_answered: int
    reserialized_resends: int
    staging_batches: int
    conflicts_sent: int
    conflicts_answered: int
    server_errors: list[str]
    unexpected: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(db: Path, expected: Expected) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        events = con.execute("SELECT environment, event_id, ts FROM events").fetchall()
        exposures = con.execute("SELECT environment, unit_id FROM exposures").fetchall()
    finally:
        con.close()
    stored_events = Counter((env, eid) for env, eid, _ in events)
    stored_exposures = Counter((env, unit) for env, unit in exposures)
    wrong = sum(
        1
        for env, eid, ts in events
        if (env, eid) in expected.events
        and ts.astimezone(UTC) != datetime.fromisoformat(expected.events[(env, eid)].replace("Z", "+00:00"))
    )
    return {
        "acknowledged": len(expected.events) + len(expected.exposures),
        "stored": len(events) + len(exposures),
        "duplicates": sum(n - 1 for n in stored_events.values())
        + sum(n - 1 for n in stored_exposures.values()),
        "lost": len(expected.events.keys() - stored_events.keys())
        + len(expected.exposures - stored_exposures.keys()),
        "extra": len(stored_events.keys() - expected.events.keys())
        + len(stored_exposures.keys() - expected.exposures),
        "wrong_payload": wrong,
    }


def run(
    seconds: float, producers: int, kill_every: float, disk_every: float, require_full_disk: bool
) -> Result:
    loopback_only()
    with tempfile.TemporaryDirectory(prefix="ramplight-soak-") as tmp:
        db = Path(tmp) / "soak.duckdb"
        log_dir = Path(str(db) + ".log")
        why_not = mount_small_disk(log_dir, 64)
        if why_not and require_full_disk:
            raise SystemExit(f"soak: cannot mount a small tmpfs for the full-disk part: {why_not}")
        try:
            return _run(db, log_dir, seconds, producers, kill_every, disk_every if why_not is None else 0)
        finally:
            if why_not is None:
                subprocess.run(["umount", "-l", str(log_dir)], check=False)


def _run(
    db: Path, log_dir: Path, seconds: float, producers: int, kill_every: float, disk_every: float
) -> Result:
    server = Server(db, db.parent / "server.out")
    try:
        return _soak(server, db, log_dir, seconds, producers, kill_every, disk_every)
    finally:
        if server.process is not None and server.process.poll() is None:  # the soak failed midway
            server.process.kill()
            server.process.wait()


def _soak(
    server: Server,
    db: Path,
    log_dir: Path,
    seconds: float,
    producers: int,
    kill_every: float,
    disk_every: float,
) -> Result:
    server.start()
    admin = httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=60,
        trust_env=False,
    )
    flag = {
        "key": FLAG_KEY,
        "type": "json",
        "assignment_unit": "conversation",
        "variations": [
            {"key": "control", "value": {"model_route": "stable"}},
            {"key": "candidate", "value": {"model_route": "candidate"}},
        ],
        "environments": {
            env: {
                "default_variation": "control",
                "off_variation": "control",
                "rollout": {"weights": {"control": 80, "candidate": 20}},
            }
            for env in ("production", "staging")
        },
    }
    admin.post("/api/flags", json=flag).raise_for_status()
    keys = {
        env: admin.post("/api/keys", json={"kind": "sdk", "name": f"soak-{env}", "environment": env}).json()[
            "key"
        ]
        for env in ("production", "staging")
    }
    tally, expected, stop = Tally(), Expected(), threading.Event()
    threads = [Producer(i, server.url, keys, stop, tally, expected) for i in range(producers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    episodes = 0
    next_kill = started + kill_every
    next_fill = started + disk_every / 2 if disk_every else float("inf")
    try:
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            if now >= next_kill:
                server.kill9()
                time.sleep(0.3)
                server.start()
                next_kill = time.monotonic() + kill_every
            elif now >= next_fill:
                fill_disk(log_dir)
                episodes += 1
                time.sleep(2.0)  # appends fail with ENOSPC meanwhile
                (log_dir / "ballast").unlink()
                next_fill = time.monotonic() + disk_every
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=300)
        (log_dir / "ballast").unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    # Everything acknowledged is loaded before a clean stop; then the database is read directly.
    deadline = time.monotonic() + 120
    while True:
        status = admin.get("/api/ingest/status").json()
        if not status["backlog_items"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    admin.close()
    server.stop()
    figures = check_store(db, expected)
    problems = []
    if figures["lost"] or figures["duplicates"] or figures["extra"] or figures["wrong_payload"]:
        problems.append("evidence lost, doubled or changed")
    if tally.conflicts_answered != tally.conflicts_sent:
        problems.append(f"{tally.conflicts_sent} conflicts sent, {tally.conflicts_answered} answered as such")
    if tally.server_errors or tally.unexpected:
        problems.append("unexpected answers")
    if kill_every < seconds and server.kills == 0:
        problems.append("no kill happened")
    if disk_every and episodes and tally.refused_full_disk == 0:
        problems.append("the disk filled but no append was refused")
    if status["dead_letters"]:
        problems.append(f"dead-lettered segments: {status['dead_letters']}")
    if any(thread.is_alive() for thread in threads):
        problems.append("a producer did not finish")
    return Result(
        seconds=round(elapsed, 1),
        **figures,
        kills=server.kills,
        disk_full_episodes=episodes,
        refused_full_disk=tally.refused_full_disk,
        refused_503=tally.refused_503,
        connection_errors=tally.connection_errors,
        retries=tally.retries,
        requests=tally.requests,
        duplicates_answered=tally.duplicates_answered,
        reserialized_resends=tally.reserialized_resends,
        staging_batches=tally.staging_batches,
        conflicts_sent=tally.conflicts_sent,
        conflicts_answered=tally.conflicts_answered,
        server_errors=tally.server_errors[:10],
        unexpected=tally.unexpected[:10],
        problems=problems,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 s: the short form CI runs")
    parser.add_argument(
        "--seconds", type=float, help="how long producers send (default 300; 30 with --quick)"
    )
    parser.add_argument("--producers", type=int, default=4, help="client threads (default 4)")
    parser.add_argument(
        "--kill-every", type=float, help="seconds between kill -9 (default 12; 7 with --quick)"
    )
    parser.add_argument(
        "--disk-every", type=float, help="seconds between full disks (default 45; 15 with --quick)"
    )
    parser.add_argument(
        "--require-full-disk", action="store_true", help="fail if the tmpfs cannot be mounted"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    seconds = args.seconds or (30 if args.quick else 300)
    kill_every = args.kill_every or (7 if args.quick else 12)
    disk_every = args.disk_every or (15 if args.quick else 45)
    if not args.json:
        console.print(f"Soak: {seconds:.0f} s, {args.producers} producers, kill -9 every {kill_every:.0f} s, "
                      f"full disk every {disk_every:.0f} s — {machine()}, {load_average()}")  # fmt: skip
    result = run(seconds, args.producers, kill_every, disk_every, args.require_full_disk)
    if args.json:
        print(json.dumps(asdict(result) | {"ok": result.ok}))
    else:
        report(result)
    sys.exit(0 if result.ok else 1)


def report(r: Result) -> None:
    table = Table(title=f"Soak over {r.seconds:.0f} s")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("must be", justify="right")
    for name, value, must in (
        ("acknowledged items", r.acknowledged, ""),
        ("stored items", r.stored, "= acknowledged"),
        ("duplicates", r.duplicates, "0"),
        ("lost", r.lost, "0"),
        ("stored, never acknowledged", r.extra, "0"),
        ("stored with a conflicting payload", r.wrong_payload, "0"),
        ("kill -9", r.kills, "> 0"),
        ("full-disk episodes", r.disk_full_episodes, "> 0 (root)"),
        ("batches refused: disk full (503)", r.refused_full_disk, ""),
        ("batches refused: any 503", r.refused_503, ""),
        ("connection errors (kills)", r.connection_errors, ""),
        ("requests / retries", f"{r.requests} / {r.retries}", ""),
        ("items answered as duplicates", r.duplicates_answered, ""),
        ("re-serialized resends", r.reserialized_resends, ""),
        ("batches resent to staging", r.staging_batches, ""),
        ("conflicts sent / answered", f"{r.conflicts_sent} / {r.conflicts_answered}", "equal"),
    ):
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value), must)
    console.print(table)
    for line in r.server_errors + r.unexpected:
        console.print(f"[red]{line}[/]", markup=True, highlight=False)
    console.print(
        "[green]ok[/]: nothing lost, nothing doubled" if r.ok else f"[red]FAILED[/]: {'; '.join(r.problems)}"
    )
    console.print(load_average())


if __name__ == "__main__":
    main()
