"""`ramplight serve` in a child process with the given RAMPLIGHT_* settings (for backends that
must not share this test process: several servers over one database, chdb's one engine)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from ramplight.server.run import free_port


class Served:
    def __init__(self, script: bool = False, **settings: str) -> None:
        """`script`: started by the installed `ramplight` console script, as a user starts it,
        instead of `python -m ramplight`."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAMPLIGHT_")}
        env.update(RAMPLIGHT_GUARDIAN_INTERVAL="0", RAMPLIGHT_FSYNC="0")
        env.update({f"RAMPLIGHT_{k.upper()}": v for k, v in settings.items()})
        command = (
            [str(Path(sys.executable).with_name("ramplight"))]
            if script
            else [sys.executable, "-m", "ramplight"]
        )
        self.process = subprocess.Popen(
            [*command, "serve", "--port", str(self.port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.process.stdout.read() if self.process.stdout else ""
                raise AssertionError(f"server exited: {output}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.process.kill()
        raise AssertionError("server did not become healthy within 90 s")

    def admin_key(self) -> str:
        """The first admin key, as a new database's server prints it."""
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, "the server printed no admin key"
            match = re.search(r"RAMPLIGHT_ADMIN_KEY=(\S+)", line)
            if match:
                return match.group(1)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
