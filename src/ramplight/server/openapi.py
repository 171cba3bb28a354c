"""The OpenAPI document's shared parts: msgspec types as schema components, the error model."""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, Field

components: dict[str, Any] = {}
"""Schema definitions of msgspec types used by request bodies; merged into the document."""


def schema_for(tp: Any, from_url: tuple[str, ...] = ()) -> dict[str, Any]:
    """OpenAPI media-type object for a msgspec type; its definitions join the components.
    `from_url`: fields the route fills from its path, so the body may leave them out."""
    (schema,), found = msgspec.json.schema_components([tp], ref_template="#/components/schemas/{name}")
    components.update(found)
    if not from_url:
        return {"schema": schema}
    name = tp.__name__
    body = dict(found[name])
    body["required"] = [f for f in body.get("required", []) if f not in from_url]
    components[f"{name}Body"] = body
    return {"schema": {"$ref": f"#/components/schemas/{name}Body"}}


def json_body(tp: Any, from_url: tuple[str, ...] = ()) -> dict[str, Any]:
    """`openapi_extra` declaring a required JSON body of msgspec type `tp`."""
    return {"requestBody": {"required": True, "content": {"application/json": schema_for(tp, from_url)}}}


class ProblemOut(BaseModel):
    kind: str | None = None
    index: int | None = None
    field: str
    reason: str


class ErrorOut(BaseModel):
    """Every error: a stable code, one readable message, and per-field problems if any."""

    error: str
    message: str
    problems: list[ProblemOut] = Field(description="one per field at fault; empty when none is")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (401, "missing, unknown or revoked API key"),
        (403, "the key may not do this (an SDK key on admin routes, or another environment)"),
        (404, "no such flag, environment or key"),
        (409, "a stale version (someone else changed it) or a duplicate"),
        (413, "a request body or batch past the size limits"),
        (422, "invalid input (bad JSON, a missing or wrong field): which field, why"),
    )
}
