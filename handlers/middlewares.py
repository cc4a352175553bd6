"""Request ids, security headers and the error tree rendered as RFC 9457 problem+json."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from realtime_cms.errors import CMSError
from realtime_cms.logconfig import request_id_var

log = logging.getLogger(__name__)

PROBLEM_TYPE = "application/problem+json"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def problem(
    request: web.Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An RFC 9457 problem document with the project's stable `code` and the request id."""
    body: dict[str, Any] = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.path,
        "code": code,
        "request_id": request_id_var.get(),
    }
    body.update(extra or {})
    return web.json_response(body, status=status, content_type=PROBLEM_TYPE, headers=headers)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Tag the request (and its log lines) with an id, taken from X-Request-ID when sane."""
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
    token = request_id_var.set(request_id)
    try:
        response = await handler(request)
        if not response.prepared:
            response.headers["X-Request-ID"] = request_id
        return response
    finally:
        request_id_var.reset(token)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as problem+json; unexpected ones are logged and become a 500."""
    try:
        return await handler(request)
    except CMSError as exc:
        extra = {"errors": exc.errors} if exc.errors else None
        return problem(
            request, exc.status, exc.code, exc.title, exc.message, extra=extra, headers=exc.headers
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return problem(request, exc.status, code, exc.reason, detail, headers=headers)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return problem(
            request,
            500,
            "internal_error",
            "Internal error",
            "The server failed; the error was logged",
        )


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response
