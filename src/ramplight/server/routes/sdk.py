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


@router.get("/config", responses={304: {"description": "unchanged since If-None-Match"}})
def sdk_config(
    st: State,
    scope: InEnvironment,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The environment's flags for local evaluation; poll with If-None-Match."""
    cached = st.config(scope.environment)
    headers = {"ETag": cached.etag, "Cache-Control": "no-cache"}
    if if_none_match is not None and cached.etag in {t.strip() for t in if_none_match.split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(cached.body, media_type="application/json", headers=headers)
