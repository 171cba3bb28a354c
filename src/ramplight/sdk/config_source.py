"""Where the SDK's flags come from: the `ConfigSource` a Client installs its config through, and
the one that talks to the server, an ETag-polling thread that keeps the last good config.
`ramplight.sdk.testing.InMemory` is the other: flags a test declares, no server, no thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

import httpx
import msgspec

from ramplight.core.evaluate import CompiledConfig
from ramplight.sdk.retry import Backoff, retry_after_seconds

log = logging.getLogger("ramplight.sdk")

Install = Callable[[CompiledConfig], None]


def decode_config(body: bytes) -> CompiledConfig:
    """The `/sdk/config` body, decoded and ready to evaluate; raises msgspec errors on a bad body."""
    return CompiledConfig.from_json(body)


class ConfigSource(Protocol):
    """What a Client needs of its flags' origin. `install` swaps the client's whole config;
    `refresh` never raises (a failed refresh keeps the last good config)."""

    def start(self, install: Install) -> None: ...

    def wait_ready(self, timeout: float) -> bool: ...

    def refresh(self) -> bool: ...

    def stop(self) -> None: ...


class _Refused(RuntimeError):
    """The server answered something other than a config, maybe asking us to wait."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ConfigPoller:
    """Polls `/sdk/config` with If-None-Match; a failed poll keeps serving the last good config
    (fail-static) and retries on the shared `Backoff` schedule, from `interval` up to
    `max_backoff` seconds, never sooner than the server's `Retry-After`."""

    def __init__(
        self,
        http: httpx.Client,
        interval: float = 15.0,
        max_backoff: float = 120.0,
    ) -> None:
        self._http = http
        self._install: Install | None = None
        self.interval = interval
        self.backoff = Backoff(base=interval, cap=max(interval, max_backoff))
        self.etag: str | None = None
        self.last_error: str | None = None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ramplight-config", daemon=True)

    def start(self, install: Install) -> None:
        self._install = install
        self._thread.start()

    def wait_ready(self, timeout: float) -> bool:
        return self.ready.wait(timeout)

    def refresh(self) -> bool:
        """Poll now (synchronously); True if the config changed, False if not or on failure."""
        try:
            return self.poll_once()
        except (httpx.HTTPError, RuntimeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ramplight: refresh failed, keeping the last good config: %s", exc)
            return False

    def poll_once(self) -> bool:
        """Fetch once; True if a new config was installed."""
        headers = {"If-None-Match": self.etag} if self.etag else {}
        response = self._http.get("/sdk/config", headers=headers)
        if response.status_code == 304:
            self.ready.set()
            return False
        if response.status_code != 200:
            raise _Refused(
                f"config request answered {response.status_code}: {response.text[:200]}",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        compiled = decode_config(response.content)
        if self._install is not None:
            self._install(compiled)
        self.etag = response.headers.get("etag")
        self.ready.set()
        return True

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.poll_once()
                failures = 0
                self.last_error = None
                delay = self.interval
            except (httpx.HTTPError, RuntimeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                failures += 1
                self.last_error = str(exc)
                if failures == 1:
                    log.warning("ramplight: config refresh failed, serving the last good config: %s", exc)
                delay = self.backoff.delay(failures, getattr(exc, "retry_after", 0.0))
            self._wake.wait(delay)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():  # a poll in flight ends on its own: the thread is a daemon
            self._thread.join(timeout=0.5)
