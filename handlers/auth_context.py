"""Who is calling: bearer token or session cookie to `Principal`, client address, CSRF guard."""

from __future__ import annotations

import ipaddress

from aiohttp import web

from handlers import keys
from realtime_cms.accounts.sessions import resolve_principal
from realtime_cms.db import transaction
from realtime_cms.errors import Forbidden
from realtime_cms.principal import Principal, anonymous

SESSION_COOKIE = "rcms_session"
REMEMBER_COOKIE = "rcms_remember"
_PRINCIPAL = web.RequestKey("principal", Principal)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def client_ip(request: web.Request) -> str | None:
    """The client's address; X-Forwarded-For is honoured only from trusted proxies."""
    peer = request.remote
    trusted = request.app[keys.SETTINGS].trusted_proxies
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded and peer in trusted:
        candidate = forwarded.split(",")[-1].strip()
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            return peer
    return peer


def bearer_token(request: web.Request) -> tuple[str | None, bool]:
    """The presented token and whether it came from the session cookie."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


async def principal_for(request: web.Request) -> Principal:
    """Resolve (once per request) the principal behind the request's credentials."""
    cached = request.get(_PRINCIPAL)
    if cached is not None:
        return cached
    ip, agent = client_ip(request), request.headers.get("User-Agent")
    token, _ = bearer_token(request)
    principal: Principal | None = None
    if token:
        async with transaction(request.app[keys.SESSIONS]) as db:
            principal = await resolve_principal(
                db, token, settings=request.app[keys.SETTINGS], ip=ip, user_agent=agent
            )
    resolved = principal or anonymous(ip, agent)
    request[_PRINCIPAL] = resolved
    return resolved


def origin_allowed(request: web.Request, origin: str) -> bool:
    """Whether a browser's Origin is an allowed one or the server's own."""
    origin = origin.rstrip("/")
    own = f"{request.scheme}://{request.host}"
    return origin == own or origin in request.app[keys.SETTINGS].allowed_origins


def check_csrf(request: web.Request) -> None:
    """Unsafe requests not carrying a bearer token must come from an allowed origin.

    Bearer tokens cannot be attached by a foreign page, cookies can; requests without an
    Origin header (non-browser clients) are judged by Sec-Fetch-Site when present.
    """
    if request.method in _SAFE_METHODS:
        return
    token, via_cookie = bearer_token(request)
    if token and not via_cookie:
        return
    origin = request.headers.get("Origin")
    if origin is not None:
        if not origin_allowed(request, origin):
            raise Forbidden("Cross-origin request refused", code="csrf_rejected")
    elif request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise Forbidden("Cross-site request refused", code="csrf_rejected")
