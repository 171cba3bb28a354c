"""Framework errors in Ramplight's one error shape, and the admin body-size limit.

FastAPI and Starlette answer bad requests themselves (`{"detail": …}`); these turn their
exceptions into `RamplightError`s so that `responses.error_response` renders every 4xx alike:
`{error, message, problems: [{field, reason}]}` with the field path of each problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ramplight.core.errors import FieldProblem, PayloadTooLarge, RamplightError, ValidationError

MAX_ADMIN_BODY_BYTES = 1 << 20
"""Request bodies on `/api/…` (admin) routes; larger ones are refused with 413."""

_SOURCES = {"query": "query", "path": "path", "header": "header", "cookie": "cookie"}


def field_path(loc: Sequence[int | str]) -> str:
    """`('body', 'flags', 0, 'key')` → `flags[0].key`; `('query', 'environment')` → `query.environment`."""
    parts = list(loc)
    source = parts.pop(0) if parts and parts[0] in (*_SOURCES, "body") else None
    path = f"{source}" if source in _SOURCES else ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def _reason(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        detail = (error.get("ctx") or {}).get("error", "")
        position = error["loc"][1] if len(error["loc"]) > 1 else None
        where = f" at character {position}" if isinstance(position, int) else ""
        return f"not valid JSON{where}: {detail}" if detail else f"not valid JSON{where}"
    return str(error.get("msg", "invalid"))


def from_request_validation(errors: Sequence[Any]) -> ValidationError:
    """FastAPI's RequestValidationError (Pydantic's list of errors) as one ValidationError."""
    problems = []
    for error in errors:
        loc = error.get("loc", ())
        # A JSON syntax error's loc is ('body', position): the position is not a field.
        if error.get("type") == "json_invalid":
            loc = ("body",)
        problems.append(FieldProblem(field=field_path(loc), reason=_reason(error)))
    summary = "; ".join(p.render() for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return ValidationError(f"invalid request: {summary}{more}", tuple(problems))


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class HttpError(RamplightError):
    """A status Starlette chose (unknown route, method not allowed, …) in the error shape."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = _HTTP_CODES.get(status_code, "http_error")


def from_http_exception(status_code: int, detail: Any, path: str, method: str) -> RamplightError:
    if status_code == 400:  # FastAPI: a body it could not parse
        return ValidationError(str(detail), (FieldProblem(field="body", reason=str(detail)),))
    if status_code == 404:
        return HttpError(404, f"no route {path}")
    if status_code == 405:
        return HttpError(405, f"{method} is not allowed on {path}")
    return HttpError(status_code, str(detail))


class AdminBodyLimit:
    """ASGI middleware: refuse `/api/…` request bodies past `limit` bytes with 413.

    The body is read here (admin bodies are small) so a chunked upload is cut off too; the
    declared Content-Length, when present, refuses it before reading anything.
    """

    def __init__(self, app: ASGIApp, render: Any, limit: int = MAX_ADMIN_BODY_BYTES) -> None:
        self.app = app
        self.render = render
        self.limit = limit

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is {size}; the limit for admin requests is {self.limit} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self.render(self._too_large(f"{int(declared)} bytes"))(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await self.render(self._too_large(f"over {self.limit} bytes"))(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
