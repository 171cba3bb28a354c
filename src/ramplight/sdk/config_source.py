"""Where the SDK's flags come from: the `ConfigSource` a Client installs its config through, and
the two that talk to the server: `ConfigStream`, which follows the server's push stream and
falls back to polling, and `ConfigPoller`, an ETag-polling thread; both keep the last good
config when the server is away. `ramplight.sdk.testing.InMemory` is the other: flags a test
declares, no server, no thread."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Protocol

import httpx
import msgspec
from httpx_sse import EventSource

from ramplight.core.evaluate import CompiledConfig
from ramplight.sdk.retry import Backoff, retry_after_seconds

log = logging.getLogger("ramplight.sdk")

Install = Callable[[CompiledConfig], None]


def decode_config(body: bytes) -> CompiledConfig:
    """The `/sdk/config` body, decoded and ready to evaluate; raises msgspec errors on a bad body."""
    return CompiledConfig.from_json(body)


def _version(etag: str) -> str:
    """The config version an ETag names: the server tags the gzipped body of a version
    `"<hash>-gzip"` and the identity body and its stream event `"<hash>"`."""
    return etag.removesuffix('-gzip"').strip('"')


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
        self._installing = threading.Lock()
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
        return self._accept(response.headers.get("etag"), response.content)

    def _accept(self, etag: str | None, body: bytes) -> bool:
        """Install a config unless it is the one installed (a poll and the stream may both bring
        it); True if it was installed."""
        with self._installing:
            if etag is not None and self.etag is not None and _version(etag) == _version(self.etag):
                self.ready.set()
                return False
            compiled = decode_config(body)
            if self._install is not None:
                self._install(compiled)
            self.etag = etag
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


class _NoStream(RuntimeError):
    """The server has no config stream (an older server): poll instead."""


class ConfigStream(ConfigPoller):
    """Follows `/sdk/stream` (Server-Sent Events): each config the server pushes is installed at
    once, so a kill or a rollback reaches the application within a second. When the stream
    breaks it polls once (nothing changed while it was away is missed) and reconnects with
    `Last-Event-ID` on the shared `Backoff` schedule, polling every `interval` while it cannot;
    a server without the stream (404) is polled from then on. A stream silent for
    `silence_timeout` seconds (the server sends a heartbeat every 15 s) is taken as dead."""

    def __init__(
        self,
        http: httpx.Client,
        interval: float = 15.0,
        max_backoff: float = 120.0,
        silence_timeout: float = 45.0,
    ) -> None:
        super().__init__(http, interval=interval, max_backoff=max_backoff)
        self.reconnect = Backoff(base=1.0, cap=max(interval, 1.0))
        self.silence_timeout = silence_timeout
        self.streaming = False
        """True while the stream is connected (False: polling or reconnecting)."""
        self.events = 0
        """Configs received on the stream."""
        self._response: httpx.Response | None = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._follow()
                failures = 0  # the server ended the stream (a restart): reconnect soon
                delay = self.reconnect.delay(0)
            except _NoStream:
                log.info("ramplight: the server has no config stream; polling every %.0fs", self.interval)
                self.streaming = False
                super()._run()
                return
            except (httpx.HTTPError, RuntimeError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                self.streaming = False
                if self._stop.is_set():
                    return
                failures += 1
                self.last_error = str(exc)
                if failures == 1:
                    log.warning("ramplight: config stream lost, serving the last good config: %s", exc)
                delay = self.reconnect.delay(failures - 1, getattr(exc, "retry_after", 0.0))
                if failures > 1 or not self.ready.is_set():
                    self.refresh_quietly()
            self._wake.wait(delay)
            self._wake.clear()

    def refresh_quietly(self) -> None:
        with contextlib.suppress(httpx.HTTPError, RuntimeError, msgspec.DecodeError, msgspec.ValidationError):
            self.poll_once()

    def _follow(self) -> None:
        headers = {"Accept": "text/event-stream"}
        if self.etag:
            headers["Last-Event-ID"] = self.etag
        timeout = httpx.Timeout(10.0, connect=3.0, read=self.silence_timeout)
        with self._http.stream("GET", "/sdk/stream", headers=headers, timeout=timeout) as response:
            if response.status_code == 404:
                raise _NoStream()
            if response.status_code != 200:
                response.read()
                raise _Refused(
                    f"config stream answered {response.status_code}: {response.text[:200]}",
                    retry_after_seconds(response.headers.get("Retry-After")),
                )
            self._response = response
            self.streaming = True
            self.last_error = None
            try:
                for event in EventSource(response).iter_sse():
                    if self._stop.is_set():
                        return
                    if event.event != "config":
                        continue
                    self.events += 1
                    self._accept(event.id or None, event.data.encode())
            finally:
                self._response = None
                self.streaming = False

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        response = self._response
        if response is not None:
            # Wakes the thread blocked reading the stream; closing from another thread may race
            # the reader, which ends either way.
            with contextlib.suppress(Exception):
                response.close()
        if self._thread.is_alive():
            self._thread.join(timeout=0.5)
