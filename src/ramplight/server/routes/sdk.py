"""SDK routes (`/sdk/…`): the environment's config for local evaluation.

Guarded by the environment scope: an SDK key reads its own environment (naming another is 403);
an admin key names one with `?environment=`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.responses import Response

from ramplight.server.auth import InEnvironment, State, environment_scope

router = APIRouter(prefix="/sdk", tags=["sdk"], dependencies=[Depends(environment_scope)])


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header admits gzip (`gzip`, `x-gzip` or `*`, not at q=0)."""
    for item in (accept_encoding or "").split(","):
        coding, _, params = item.partition(";")
        if coding.strip().lower() not in ("gzip", "x-gzip", "*"):
            continue
        quality = params.strip().lower().removeprefix("q=").strip() if params else "1"
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False


@router.get("/config", responses={304: {"description": "unchanged since If-None-Match"}})
def sdk_config(
    st: State,
    scope: InEnvironment,
    if_none_match: Annotated[str | None, Header()] = None,
    accept_encoding: Annotated[str | None, Header()] = None,
) -> Response:
    """The environment's flags for local evaluation, gzipped when accepted; poll with
    If-None-Match (either representation's ETag answers 304)."""
    cached = st.config(scope.environment)
    gzipped = accepts_gzip(accept_encoding)
    headers = {
        "ETag": cached.gzip_etag if gzipped else cached.etag,
        "Cache-Control": "no-cache",
        "Vary": "Accept-Encoding",
    }
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        if cached.etag in tags or cached.gzip_etag in tags:
            return Response(status_code=304, headers=headers)
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        return Response(cached.gzipped, media_type="application/json", headers=headers)
    return Response(cached.body, media_type="application/json", headers=headers)
