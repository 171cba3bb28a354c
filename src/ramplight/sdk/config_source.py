"""Where the SDK's flags come from: the `ConfigSource` a Client installs its config through, and
the one that talks to the server, an ETag-polling thread that keeps the last good config.
`ramplight.sdk.testing.InMemory` is the other: flags a test declares, no server, no thread."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Protocol

import httpx
import msgspec

from ramplight.core.evaluate import CompiledConfig
from ramplight.core.flags import SdkConfig

log = logging.getLogger("ramplight.sdk")

_config_decoder = msgspec.json.Decoder(SdkConfig)

Install = Callable[[CompiledConfig], None]


class ConfigSource(Protocol):
    """What a Client needs of its flags' origin. `install` swaps the client's whole config;
    `refresh` never raises (a failed refresh keeps the last good config)."""

    def start(self, install: Install) -> None: ...

    def wait_ready(self, timeout: float) -> bool: ...

    def refresh(self) -> bool: ...

    def stop(self) -> None: ...


class ConfigPoller:
    """Polls `/sdk/config` with If-None-Match; a failed poll keeps serving the last good config
    (fail-static) and retries with jittered backoff up to `max_backoff` seconds."""

    def __init__(
        self,
        http: httpx.Client,
        interval: float = 15.0,
        max_backoff: float = 120.0,
    ) -> None:
        self._http = http
        self._install: Install | None = None
        self.interval = interval
        self.max_backoff = max_backoff
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
            raise RuntimeError(f"config request answered {response.status_code}: {response.text[:200]}")
        compiled = CompiledConfig(_config_decoder.decode(response.content))
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
                delay = min(self.max_backoff, self.interval * 2 ** min(failures, 6)) * random.uniform(
                    0.5, 1.0
                )
            self._wake.wait(delay)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
