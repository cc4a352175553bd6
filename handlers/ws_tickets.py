"""`POST /api/v1/documents/{document_id}/ws-ticket`, and the credentials a y-websocket
handshake may present instead of a token in its URL (see docs/protocol.md, "Transport 3").

In order: a single-use `ticket` parameter (from this route), the `rcms.bearer` subprotocol
(`new WebSocket(url, ["rcms.bearer", token])`, answered with `rcms.bearer`), and as before the
`token` parameter, an `Authorization: Bearer` header or the session cookie.
"""

from __future__ import annotations

from aiohttp import web

from handlers import keys
from handlers.api import Call, Routes
from handlers.auth_context import bearer_token
from handlers.documents import DOCUMENT
from realtime_cms.accounts.tickets import (
    TICKET_SECONDS,
    LocalTickets,
    RedisTickets,
    TicketOut,
    TicketStore,
    issue_ticket,
    redeem_ticket,
)
from realtime_cms.documents.service import require_document, require_level
from realtime_cms.errors import Unauthorized

routes = Routes("documents")

# The subprotocol that carries a bearer token as the next one offered.
BEARER_PROTOCOL = "rcms.bearer"
_LOCAL_TICKETS = web.AppKey("ws_tickets_local", LocalTickets)


def ticket_store(app: web.Application) -> TicketStore:
    """Redis when configured (any web process redeems a ticket), this process otherwise."""
    redis = app[keys.REDIS]
    if redis is not None:
        return RedisTickets(redis, app[keys.SETTINGS].redis_prefix)
    return app[_LOCAL_TICKETS]


@routes.post(
    DOCUMENT + "/ws-ticket",
    "Get a single-use ticket to open the document's y-websocket connection",
    response=TicketOut,
)
async def post_ws_ticket(call: Call) -> TicketOut:
    """Needs read access to a known document. Connect to `/ws/<document>?ticket=...` within
    `expires_in` seconds; the ticket opens one connection to this document, as the caller,
    and is then used up."""
    document_id = call.path_str("document_id")
    await require_level(call.db, call.principal, document_id, "read")
    await require_document(call.db, document_id)
    token, _ = bearer_token(call.request)
    if token is None:
        raise Unauthorized("Sign in or send a bearer token")
    ticket = await issue_ticket(
        ticket_store(call.app), token=token, document_id=document_id, ttl=TICKET_SECONDS
    )
    return TicketOut(ticket=ticket, expires_in=round(TICKET_SECONDS))


def _subprotocol_token(request: web.Request) -> str | None:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if BEARER_PROTOCOL in offered[:-1]:
        return offered[offered.index(BEARER_PROTOCOL) + 1] or None
    return None


async def presented_token(request: web.Request, document_id: str) -> str:
    """The bearer token a y-websocket handshake presents, empty when none; a ticket is
    redeemed (used up) here, and one that is unknown, used, expired or for another
    document is refused (401 `invalid_ticket`)."""
    ticket = request.query.get("ticket")
    if ticket is not None:
        token = await redeem_ticket(ticket_store(request.app), ticket, document_id=document_id)
        if token is None:
            raise Unauthorized("The ticket is unknown, used or expired", code="invalid_ticket")
        return token
    return (
        _subprotocol_token(request) or request.query.get("token") or bearer_token(request)[0] or ""
    )


def setup(app: web.Application) -> None:
    """The in-process ticket store, used when no Redis is configured."""
    app[_LOCAL_TICKETS] = LocalTickets()
