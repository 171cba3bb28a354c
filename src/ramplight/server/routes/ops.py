"""Operations routes that need no key: the health check (no secret, no evidence)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ramplight.server.auth import State

router = APIRouter(tags=["ops"])


@router.get("/healthz")
def healthz(st: State) -> dict[str, Any]:
    """Up, which database, and how many SDKs follow the config stream on this process."""
    return {"status": "ok", "db": st.settings.db.name, "sdk_streams": st.feed.streams}
