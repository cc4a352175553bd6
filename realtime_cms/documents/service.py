"""Live documents outside the sockets: reads, binary state, REST updates, and who has access.

Content contract: a document's `text` is its `Y.Text` named `body` and its `fields` are its
`Y.Map` named `fields` (pycrdt cannot list root types without knowing their type; content
items use exactly these two roots). Updates posted here take the same path as a socket
peer's: the caller is seated in the room for the call, so the room's checks and durable
log apply. Grant changes reach live seats through `apply_level_change`, which the
cross-node relay calls too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pycrdt import Doc, Map, Text
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.collab.access import (
    Level,
    at_least,
    can_admin,
    content_item_id,
    document_level,
)
from realtime_cms.collab.manager import RoomManager
from realtime_cms.collab.protocol import ProtocolError, read_var_uint
from realtime_cms.collab.store import StoredDocument
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.documents.events import DocumentGranted
from realtime_cms.documents.presence import Presence
from realtime_cms.documents.schemas import (
    DocumentOut,
    LogOut,
    PermissionOut,
    PresentUserOut,
    SnapshotOut,
    UpdateAccepted,
)
from realtime_cms.errors import Forbidden, Invalid, NotFound
from realtime_cms.events import publish
from realtime_cms.models.auth import User
from realtime_cms.models.content import ContentItem
from realtime_cms.models.realtime import DocumentPermission, DocumentSnapshot, DocumentUpdate
from realtime_cms.principal import Principal

TEXT_ROOT = "body"
FIELDS_ROOT = "fields"
EMPTY_VECTOR = b"\x00"
# JavaScript numbers are exact integers up to here; Yjs hands every number over as a float.
_MAX_SAFE_INTEGER = 2**53 - 1

# Told (document id, user id) once a grant is flushed; the caller applies it after commit.
LevelChanged = Callable[[str, int], None]


@dataclass(frozen=True, slots=True)
class RestPeer:
    """A REST caller seated in a room for one update; it is sent nothing."""

    principal: Principal
    id: str = field(default_factory=lambda: f"rest:{uuid.uuid4().hex}")

    async def send_update(self, document_id: str, update: bytes) -> None:
        """The caller reads the document over HTTP; nothing is pushed to it."""

    async def send_awareness(self, document_id: str, awareness_update: bytes) -> None:
        """A REST caller has no cursors to show."""

    async def send_level(self, document_id: str, level: Level | None) -> None:
        """A changed level applies to the caller's next request."""

    async def send_sync_request(self, document_id: str, state_vector: bytes) -> None:
        """Never asked: a REST update that lacks dependencies is refused at once."""

    async def send_notice(self, document_id: str, notice: Mapping[str, Any]) -> None:
        """A REST caller reads what a notice is about on its next request."""


def encode_base64url(data: bytes) -> str:
    """Unpadded base64url, the encoding of state vectors in URLs and JSON."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_state_vector(encoded: str) -> bytes:
    """A base64url (padding optional) lib0 state vector; Invalid("invalid_state_vector")."""
    try:
        vector = base64.b64decode(encoded + "=" * (-len(encoded) % 4), b"-_", validate=True)
        count, pos = read_var_uint(vector, 0)
        for _ in range(2 * count):
            _, pos = read_var_uint(vector, pos)
    except (binascii.Error, ProtocolError) as exc:
        raise Invalid("Malformed state vector", code="invalid_state_vector") from exc
    if pos != len(vector):
        raise Invalid("Trailing bytes after the state vector", code="invalid_state_vector")
    return vector


async def require_level(
    db: AsyncSession, principal: Principal, document_id: str, minimum: Level
) -> Level:
    """The principal's level on the document; Forbidden when it is below `minimum`."""
    level = await document_level(db, principal, document_id)
    if level is None:
        raise Forbidden("No access to this document", code="no_access")
    if not at_least(level, minimum):
        code = "read_only" if minimum == "write" else "permission_denied"
        raise Forbidden(f"This needs {minimum} access to the document", code=code)
    return level


async def require_document(db: AsyncSession, document_id: str) -> None:
    """NotFound unless the document is known: stored, granted, or an existing item's body."""
    item_id = content_item_id(document_id)
    known: sa.ColumnElement[bool]
    if item_id is not None:
        known = sa.exists().where(ContentItem.id == item_id)
    else:
        columns = (
            DocumentSnapshot.document_id,
            DocumentUpdate.document_id,
            DocumentPermission.document_id,
        )
        known = sa.or_(*(sa.exists().where(column == document_id) for column in columns))
    if not await db.scalar(sa.select(known)):
        raise NotFound("No such document", code="document_not_found")


def _doc_from(stored: StoredDocument) -> Doc:
    doc: Doc = Doc()
    stored.apply_to(doc)
    return doc


async def _private_copy(rooms: RoomManager, document_id: str) -> Doc:
    """A scratch copy of the document: the open room's state, else the stored one."""
    room = rooms.get(document_id)
    if room is not None:
        stored = StoredDocument(room.sync_step1_reply(EMPTY_VECTOR), [], 0)
    else:
        stored = await rooms.store.load(document_id)
    return await asyncio.to_thread(_doc_from, stored)


def _jsonable(value: Any) -> Any:
    """A map value as JSON: binary as base64url, whole numbers as integers, no NaN."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return encode_base64url(bytes(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer() and abs(value) <= _MAX_SAFE_INTEGER:
            return int(value)
    return value


async def _snapshot(db: AsyncSession, document_id: str) -> SnapshotOut | None:
    query = sa.select(
        DocumentSnapshot.last_update_id,
        DocumentSnapshot.update_count,
        sa.func.length(DocumentSnapshot.state).label("bytes"),
        DocumentSnapshot.updated_at,
    ).where(DocumentSnapshot.document_id == document_id)
    row = (await db.execute(query)).first()
    return None if row is None else SnapshotOut.model_validate(row._mapping)


async def read_document(
    db: AsyncSession, principal: Principal, rooms: RoomManager, document_id: str
) -> DocumentOut:
    """Metadata and content (see the module's content contract); read access needed."""
    level = await require_level(db, principal, document_id, "read")
    await require_document(db, document_id)
    doc = await _private_copy(rooms, document_id)
    rows, size = await rooms.store.log_stats(document_id)
    room = rooms.get(document_id)
    item_id = content_item_id(document_id)
    return DocumentOut(
        id=document_id,
        is_content=item_id is not None,
        content_item_id=item_id,
        level=level,
        loaded=room is not None,
        peers=len(room.peers) if room is not None else 0,
        log=LogOut(rows=rows, bytes=size),
        snapshot=await _snapshot(db, document_id),
        state_vector=encode_base64url(doc.get_state()),
        text=str(doc.get(TEXT_ROOT, type=Text)),
        fields=_jsonable(doc.get(FIELDS_ROOT, type=Map).to_py() or {}),
    )


async def read_state(
    db: AsyncSession,
    principal: Principal,
    rooms: RoomManager,
    document_id: str,
    state_vector: str | None,
) -> bytes:
    """The document as one Yjs update; only what `state_vector` (base64url) lacks, if given."""
    await require_level(db, principal, document_id, "read")
    vector = decode_state_vector(state_vector) if state_vector is not None else EMPTY_VECTOR
    await require_document(db, document_id)
    doc = await _private_copy(rooms, document_id)
    return doc.get_update(vector)


async def apply_update(
    rooms: RoomManager, principal: Principal, document_id: str, level: Level, update: bytes
) -> UpdateAccepted:
    """Apply a writer's update as a socket peer's would be; returns once it is durable.

    The caller is seated at `level` (from `require_level`) for the call, which loads the
    room if needed, so the room's limits, validation and write check apply unchanged.
    """
    peer = RestPeer(principal)
    room = await rooms.join(document_id, peer, level)
    try:
        await room.apply_update(peer, update, hold=False)
        vector = room.state_vector()
    finally:
        await rooms.leave(document_id, peer)
    return UpdateAccepted(document_id=document_id, state_vector=encode_base64url(vector))


async def list_present(
    db: AsyncSession, principal: Principal, presence: Presence, document_id: str
) -> list[PresentUserOut]:
    """Who is connected to the document on any node; read access needed."""
    await require_level(db, principal, document_id, "read")
    await require_document(db, document_id)
    return await presence.present(document_id)


# --- Permissions --------------------------------------------------------------------------------


async def _require_manager(db: AsyncSession, principal: Principal, document_id: str) -> None:
    """Managing grants takes admin on the document (`documents.admin` is admin everywhere).

    No other permission stands in for it (`users.manage` once did, which let a user manager
    grant themself admin on any document), and since admin is the top level, nobody grants
    a level above their own.
    """
    level = await document_level(db, principal, document_id)
    if not can_admin(level):
        code = "no_access" if level is None else "permission_denied"
        raise Forbidden("Managing access needs admin on the document", code=code)


def _grants() -> sa.Select[int, str, str, datetime | None]:
    return sa.select(
        DocumentPermission.user_id,
        User.username,
        DocumentPermission.permission_level.label("level"),
        DocumentPermission.granted_at,
    ).join(User, User.id == DocumentPermission.user_id)


async def list_permissions(
    db: AsyncSession, principal: Principal, document_id: str
) -> list[PermissionOut]:
    """The explicit grants on the document, by username."""
    await _require_manager(db, principal, document_id)
    await require_document(db, document_id)
    query = _grants().where(DocumentPermission.document_id == document_id)
    rows = await db.execute(query.order_by(User.username))
    return [PermissionOut.model_validate(row._mapping) for row in rows]


async def _require_grantee(db: AsyncSession, document_id: str, user_id: int) -> None:
    if await db.get(User, user_id) is None:
        raise NotFound("No such user")
    item_id = content_item_id(document_id)
    if item_id is not None and await db.get(ContentItem, item_id) is None:
        raise NotFound("No such content item", code="document_not_found")


async def grant(
    db: AsyncSession,
    principal: Principal,
    document_id: str,
    user_id: int,
    level: Level,
    *,
    on_change: LevelChanged,
) -> PermissionOut:
    """Give a user `level` on the document, or change their grant; audited, and published
    as `DocumentGranted` (which notifies the user)."""
    await _require_manager(db, principal, document_id)
    await _require_grantee(db, document_id, user_id)
    row = await db.get(DocumentPermission, (document_id, user_id))
    previous = row.permission_level if row is not None else None
    if previous != level:
        if row is None:
            row = DocumentPermission(document_id=document_id, user_id=user_id)
            db.add(row)
        row.permission_level = level
        await db.flush()
        details = {
            "document_id": document_id,
            "user_id": user_id,
            "level": level,
            "previous": previous,
        }
        await record(db, principal, "document.grant", "document", None, details)
        on_change(document_id, user_id)
        granted = DocumentGranted(document_id, user_id, level, previous, actor=principal)
        await publish(db, granted)
    query = _grants().where(
        DocumentPermission.document_id == document_id, DocumentPermission.user_id == user_id
    )
    return PermissionOut.model_validate((await db.execute(query)).one()._mapping)


async def revoke(
    db: AsyncSession,
    principal: Principal,
    document_id: str,
    user_id: int,
    *,
    on_change: LevelChanged,
) -> None:
    """Remove a user's grant on the document (RBAC may still give them a level); audited."""
    await _require_manager(db, principal, document_id)
    row = await db.get(DocumentPermission, (document_id, user_id))
    if row is None:
        raise NotFound("The user has no grant on this document", code="grant_not_found")
    await db.delete(row)
    await db.flush()
    details = {"document_id": document_id, "user_id": user_id, "level": row.permission_level}
    await record(db, principal, "document.revoke", "document", None, details)
    on_change(document_id, user_id)


async def apply_level_change(
    rooms: RoomManager, sessions: SessionFactory, document_id: str, user_id: int
) -> None:
    """Re-check a user's live seats on the document here and apply their new level.

    Call it once the change is committed. Each seat is judged by its own principal (a
    scoped API token may grant less than the user's session); None drops the seat.
    """
    rooms.levels_changed()
    room = rooms.get(document_id)
    if room is None:
        return
    seats = [peer for peer in room.peers if peer.principal.user_id == user_id]
    if not seats:
        return
    async with transaction(sessions) as db:
        levels = [await document_level(db, peer.principal, document_id) for peer in seats]
    for peer, level in zip(seats, levels, strict=True):
        if level != room.level_of(peer.id):
            await room.set_level(peer.id, level)
