"""The project's one error tree; every transport renders it (problem+json, socket acks)."""

from __future__ import annotations

from typing import Any


class CMSError(Exception):
    """Base of every error the server reports to a client, with a stable machine `code`."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.title
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.errors = errors or []
        self.headers = headers or {}
        super().__init__(self.message)


class Invalid(CMSError):
    status, code, title = 400, "invalid_request", "Invalid request"


class Unprocessable(CMSError):
    status, code, title = 422, "validation_failed", "Validation failed"


class Unauthorized(CMSError):
    status, code, title = 401, "unauthorized", "Authentication required"


class Forbidden(CMSError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(CMSError):
    status, code, title = 404, "not_found", "Not found"


class MethodNotAllowed(CMSError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"


class Conflict(CMSError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(CMSError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(CMSError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class RateLimited(CMSError):
    status, code, title = 429, "rate_limited", "Too many requests"


class Unavailable(CMSError):
    status, code, title = 503, "unavailable", "Service unavailable"


class ConfigurationError(ValueError):
    """Settings that must not be used to start the server."""
