"""Running the app under uvicorn: in the foreground (`ramplight serve`) or in a thread
(the demo, and tests that need a real server on 127.0.0.1)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from ramplight import control
from ramplight.server.serverfile import write_server_file
from ramplight.settings import Settings
from ramplight.store import open_store


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def bootstrap(settings: Settings) -> str | None:
    """Prepare a new database: `production` and `staging` environments and a first admin key.

    Returns the admin key's plaintext when one was created (shown to the user once), else None.
    """
    store = open_store(settings)
    try:
        control.ensure_default_environments(store)
        if any(k.kind == "admin" and k.revoked_at is None for k in store.list_api_keys()):
            return None
        plaintext, _ = control.create_api_key(store, "admin", "first admin key", can_force=True)
        return plaintext
    finally:
        store.close()


class _Server(uvicorn.Server):
    """uvicorn, ending the SDK config streams first when it stops: a stream never ends on its
    own, and uvicorn waits for open responses before it runs the app's shutdown."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        app_state = getattr(self.config.app, "state", None)
        state = getattr(app_state, "ramplight", None)  # set by the app's lifespan
        if state is not None:
            state.feed.close()
        await super().shutdown(sockets)


def _config(settings: Settings) -> uvicorn.Config:
    from ramplight.server.app import create_app

    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


def serve_forever(settings: Settings) -> None:
    server = _Server(_config(settings))
    write_server_file(settings)
    try:
        server.run()
    finally:
        settings.server_file.unlink(missing_ok=True)


class ServerThread:
    """A real uvicorn server on 127.0.0.1 in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.server = _Server(_config(settings))
        self.thread = threading.Thread(target=self.server.run, name="ramplight-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the server stopped while starting (is the port or database in use?)")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start in time")
            time.sleep(0.01)
        write_server_file(self.settings)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.settings.server_file.unlink(missing_ok=True)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
