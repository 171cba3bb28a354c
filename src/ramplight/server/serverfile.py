"""`<db>.server.json`: a running server's URL and process id beside the database it holds, so the
CLI acts through that server instead of opening the file (kept light: the CLI reads it first)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ramplight.settings import Settings


def write_server_file(settings: Settings) -> None:
    settings.server_file.write_text(
        json.dumps({"url": f"http://{settings.host}:{settings.port}", "pid": os.getpid()})
    )


def read_server_file(path: Path) -> str | None:
    """The URL of the server that holds this database, if one is alive."""
    try:
        info = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    url: str = info["url"]
    return url
