"""Shared by the benchmark programs: a Ramplight server in its own process, a loopback-only
guard, peak memory, the machine line and number formatting."""

from __future__ import annotations

import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_BOOTSTRAP = (
    "import sys; from pathlib import Path; from ramplight.server.run import bootstrap; "
    "from ramplight.settings import Settings; print(bootstrap(Settings(db=Path(sys.argv[1]))))"
)


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def loopback_only() -> None:
    """Make any TCP/UDP connection from this process to a host other than 127.0.0.1 fail, so no
    SDK can reach the network behind the benchmark's back (the server process is ours)."""
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
            raise ConnectionRefusedError(f"benchmark: refusing to connect to {address[0]}")

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return connect_ex(sock, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]


def machine() -> str:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"Python {sys.version.split()[0]} on {platform.machine()}, {cpus} cores"


def load_average() -> str:
    """Other work on the machine skews every figure: print this before and after a run."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def rate(value: float) -> str:
    """Events or evaluations per second, e.g. 1.23 M/s or 54.3 k/s."""
    if value >= 1e6:
        return f"{value / 1e6:.2f} M/s"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k/s"
    return f"{value:.0f} /s"


def ratio(value: float, reference: float) -> str:
    if reference <= 0:
        return "-"
    r = value / reference
    return f"{r:.2f}×" if r < 10 else f"{r:.0f}×"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PASSED = ("RAMPLIGHT_OTLP_WORKERS", "RAMPLIGHT_BATCH_WORKER_MIN_BYTES", "RAMPLIGHT_BATCH_WORKER_SPARE_CORES")
"""Settings a benchmark may pass to the server it starts (the others are the defaults)."""


class RamplightServer:
    """`python -m ramplight serve` on 127.0.0.1 with fsync on; stopped with SIGINT."""

    def __init__(self, db: Path, log_path: Path) -> None:
        self.db = db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPLIGHT_") or k in PASSED}
        env["RAMPLIGHT_FSYNC"] = "1"
        # Bootstrapped in a child too, so that this process never imports DuckDB or the server.
        boot = subprocess.run(
            [sys.executable, "-c", _BOOTSTRAP, str(db)], env=env, capture_output=True, text=True, timeout=120
        )
        if boot.returncode != 0:
            raise RuntimeError(f"bootstrapping {db} failed:\n{boot.stderr}")
        self.admin_key = boot.stdout.strip()
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("the server did not become healthy within 60 s")
            time.sleep(0.05)
        self.admin = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.admin_key}"},
            timeout=600,
            trust_env=False,
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ramplight", "serve", "--db", str(self.db), "--port", str(self.port)]

    def _ticks(self) -> tuple[int, int]:
        """CPU clock ticks so far of the server process and of its live children (the OTLP
        span-decoding workers)."""
        own = children = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                pid, rest = stat.read_text().split(" ", 1)
            except OSError:
                continue  # a process that ended meanwhile
            fields = rest.rsplit(")", 1)[1].split()
            if int(pid) == self.process.pid:
                own += int(fields[11]) + int(fields[12])
            elif int(fields[1]) == self.process.pid:
                children += int(fields[11]) + int(fields[12])
        return own, children

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the server process and its live children."""
        return sum(self._ticks()) / os.sysconf("SC_CLK_TCK")

    def workers_cpu_seconds(self) -> float:
        """User + system CPU time so far of the server's live child processes (span decoding)."""
        return self._ticks()[1] / os.sysconf("SC_CLK_TCK")

    def loop_cpu_seconds(self) -> float:
        """User + system CPU time so far of the server's main thread, which runs the event loop."""
        stat = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss(self) -> float:
        """The server's peak RSS in MiB so far (VmHWM; getrusage of children would count the fork)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        """Stop gracefully: SIGINT, as Ctrl-C (the log is flushed on the way out)."""
        if hasattr(self, "admin"):
            self.admin.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def __enter__(self) -> RamplightServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
