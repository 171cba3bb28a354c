"""How every answer is rendered: JSON bodies through msgspec, and errors in their one shape.

Errors from the `RamplightError` tree map to status codes here and nowhere else:
`{error, message, problems: [{kind?, index?, field, reason}]}`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi.responses import JSONResponse, Response

from ramplight.core.errors import AuthError, Overloaded, RamplightError

_encoder = msgspec.json.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def json_response(value: Any, status_code: int = 200) -> Response:
    """A JSON answer encoded by msgspec (its structs, datetimes and enums as the contract says)."""
    return Response(_encoder.encode(value), status_code=status_code, media_type="application/json")


def error_response(exc: RamplightError) -> JSONResponse:
    body: dict[str, Any] = {"error": exc.code, "message": exc.message}
    body["problems"] = [
        {
            k: v
            for k, v in (("kind", p.kind), ("index", p.index), ("field", p.field), ("reason", p.reason))
            if v is not None
        }
        for p in getattr(exc, "problems", ())
    ]
    headers = {"WWW-Authenticate": "Bearer"} if type(exc) is AuthError else None
    if isinstance(exc, Overloaded):
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))}
    return JSONResponse(body, status_code=exc.status_code, headers=headers)
