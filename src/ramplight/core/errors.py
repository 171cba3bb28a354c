"""One error hierarchy for the whole product.

    RamplightError
    ├── ValidationError      bad input: which item, which field, why (HTTP 422)
    │   └── PayloadTooLarge  a batch or body past a size limit (HTTP 413)
    ├── ConflictError        a stale version or a duplicate key (HTTP 409)
    ├── NotFoundError        no such flag, environment, key (HTTP 404)
    ├── AuthError            missing or wrong credentials (HTTP 401)
    │   └── ForbiddenError   valid credentials, not allowed here (HTTP 403)
    └── StoreError           the evidence or control store failed (HTTP 503)
        ├── Overloaded       ingestion is pushing back (HTTP 503 with Retry-After)
        └── QueryError       a query failed or ran past its time limit; for user-written SQL
                             the analysis layer re-raises it as a ValidationError naming the metric

The HTTP layer maps these to status codes in one place; the CLI prints one line; the SDK
never raises them into an application's hot path.
"""

from __future__ import annotations

from dataclasses import dataclass


class RamplightError(Exception):
    """Base of every error Ramplight raises on purpose."""

    status_code = 500
    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One precise problem with an input: where (`index`, `field`) and why (`reason`)."""

    field: str
    reason: str
    index: int | None = None
    kind: str | None = None

    def render(self) -> str:
        where = []
        if self.kind is not None:
            where.append(self.kind)
        if self.index is not None:
            where.append(f"[{self.index}]")
        prefix = "".join(where)
        location = f"{prefix}.{self.field}" if prefix and self.field else (prefix or self.field)
        return f"{location}: {self.reason}" if location else self.reason


class ValidationError(RamplightError, ValueError):
    status_code = 422
    code = "validation_error"

    def __init__(self, message: str, problems: tuple[FieldProblem, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems

    @classmethod
    def at(cls, field: str, reason: str) -> ValidationError:
        return cls(f"{field}: {reason}", (FieldProblem(field=field, reason=reason),))


class PayloadTooLarge(ValidationError):
    status_code = 413
    code = "payload_too_large"


class ConflictError(RamplightError):
    status_code = 409
    code = "conflict"


class NotFoundError(RamplightError, LookupError):
    status_code = 404
    code = "not_found"


class AuthError(RamplightError):
    status_code = 401
    code = "unauthorized"


class ForbiddenError(AuthError):
    status_code = 403
    code = "forbidden"


class StoreError(RamplightError):
    status_code = 503
    code = "store_unavailable"


class QueryError(StoreError):
    """A read failed in the database (`reason` is the engine's first line) or was stopped."""

    code = "query_failed"

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class Overloaded(StoreError):
    """Loading is behind its bound: try again after `retry_after` seconds (nothing was taken)."""

    code = "overloaded"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
