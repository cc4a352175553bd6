"""REST for live documents: content and binary state, updates, grants and presence.

Every route needs a signed-in caller but no single RBAC permission: the caller's level on
the document (`realtime_cms.collab.access`) decides, and the service checks it.
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.documents import service
from realtime_cms.documents.schemas import (
    DocumentOut,
    LevelIn,
    PermissionOut,
    PresentUserOut,
    StateQuery,
    UpdateAccepted,
)
from realtime_cms.errors import PayloadTooLarge, UnsupportedMediaType
from realtime_cms.listing import Page

routes = Routes("documents")

DOCUMENT = "/api/v1/documents/{document_id:[A-Za-z0-9:_.\\-]+}"
GRANTS = DOCUMENT + "/permissions"
GRANT = GRANTS + "/{user_id:\\d+}"
OCTET_STREAM = "application/octet-stream"


async def _apply_everywhere(app: web.Application, document_id: str, user_id: int) -> None:
    """Apply a committed grant change to the live seats here, and tell the other nodes."""
    await service.apply_level_change(app[keys.ROOMS], app[keys.SESSIONS], document_id, user_id)
    await app[keys.RELAY].publish_level_change(document_id, user_id)


def _after_commit(call: Call) -> service.LevelChanged:
    def changed(document_id: str, user_id: int) -> None:
        call.after_commit.append(partial(_apply_everywhere, call.app, document_id, user_id))

    return changed


@routes.get(DOCUMENT, "Read a document's metadata and content", response=DocumentOut)
async def get_document(call: Call) -> DocumentOut:
    """Needs read access. `text` is the Y.Text `body`, `fields` the Y.Map `fields`."""
    return await service.read_document(
        call.db, call.principal, call.app[keys.ROOMS], call.path_str("document_id")
    )


@routes.get(
    DOCUMENT + "/state",
    "Download a document as a Yjs update",
    query=StateQuery,
    raw_response=True,
)
async def get_document_state(call: Call) -> web.Response:
    """Needs read access. With `state_vector` (base64url), only what that state lacks."""
    params: StateQuery = call.params
    update = await service.read_state(
        call.db,
        call.principal,
        call.app[keys.ROOMS],
        call.path_str("document_id"),
        params.state_vector,
    )
    return web.Response(body=update, content_type=OCTET_STREAM)


async def _read_update(call: Call) -> bytes:
    if call.request.content_type != OCTET_STREAM:
        raise UnsupportedMediaType("Send the update as application/octet-stream")
    update = await call.request.read()
    if len(update) > call.app[keys.SETTINGS].collab_max_update_bytes:
        raise PayloadTooLarge("The update is too large", code="update_too_large")
    return update


@routes.post(
    DOCUMENT + "/updates",
    "Apply a Yjs update to a document",
    raw_body=True,
    response=UpdateAccepted,
)
async def post_document_update(call: Call) -> UpdateAccepted:
    """Needs write access. Answers once the update is durable, as a socket ack does."""
    document_id = call.path_str("document_id")
    level = await service.require_level(call.db, call.principal, document_id, "write")
    update = await _read_update(call)
    return await service.apply_update(
        call.app[keys.ROOMS], call.principal, document_id, level, update
    )


@routes.get(GRANTS, "List a document's grants", response=PermissionOut)
async def list_document_permissions(call: Call) -> Page[PermissionOut]:
    """Needs admin on the document."""
    grants = await service.list_permissions(call.db, call.principal, call.path_str("document_id"))
    return Page(items=grants, total=len(grants), limit=len(grants), offset=0)


@routes.put(GRANT, "Grant a user a level on a document", body=LevelIn, response=PermissionOut)
async def put_document_permission(call: Call) -> PermissionOut:
    """Needs admin on the document. Live seats change at once."""
    body: LevelIn = call.body
    return await service.grant(
        call.db,
        call.principal,
        call.path_str("document_id"),
        call.path_int("user_id"),
        body.level,
        on_change=_after_commit(call),
    )


@routes.delete(GRANT, "Remove a user's grant on a document")
async def delete_document_permission(call: Call) -> None:
    """Needs admin on the document. Live seats change at once."""
    await service.revoke(
        call.db,
        call.principal,
        call.path_str("document_id"),
        call.path_int("user_id"),
        on_change=_after_commit(call),
    )


@routes.get(DOCUMENT + "/presence", "List who is in a document", response=PresentUserOut)
async def get_document_presence(call: Call) -> Page[PresentUserOut]:
    """Needs read access. Users connected on any node, with their connection counts."""
    users = await service.list_present(
        call.db, call.principal, call.app[keys.PRESENCE], call.path_str("document_id")
    )
    return Page(items=users, total=len(users), limit=len(users), offset=0)
