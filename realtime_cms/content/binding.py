"""Binds content items to their live documents `content:<id>` (protocol.md, "Content documents").

A document with no stored state is seeded from the item's SQL row, byte for byte the same
on every node. Changes are materialized into SQL (debounced, and on unload) by the node
where they were made; invalid values are shown to the editors as the awareness state of
the server's client id. REST writes become minimal CRDT operations applied through the
room like any peer's update, merged three-way when the writer names the content it saw.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from pycrdt import Array, Doc, Map, Text
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.collab.access import content_item_id
from realtime_cms.collab.hooks import LoadedRoom
from realtime_cms.collab.manager import RoomManager
from realtime_cms.collab.peer import Peer
from realtime_cms.collab.protocol import AwarenessEntry, encode_awareness_update
from realtime_cms.collab.relay import Relay
from realtime_cms.collab.room import DocumentRoom
from realtime_cms.collab.store import StoredDocument
from realtime_cms.content import conflicts, textdiff
from realtime_cms.content.materialize import (
    ContentState,
    invalid_fields,
    materialize,
    sql_state,
)
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.documents.service import (
    EMPTY_VECTOR,
    FIELDS_ROOT,
    TEXT_ROOT,
    RestPeer,
    require_document,
    require_level,
)
from realtime_cms.errors import NotFound, Unprocessable
from realtime_cms.models.content import ContentItem
from realtime_cms.models.realtime import DocumentSnapshot, DocumentUpdate
from realtime_cms.principal import Principal

__all__ = ["SERVER_CLIENT_ID", "ContentBinding", "ContentState", "document_id", "initial_update"]

logger = logging.getLogger(__name__)

# The server's Yjs client id: the author of seeded content and of the validation state.
SERVER_CLIENT_ID = 0xFFFFFFFE
# Yjs clients drop a remote awareness state not renewed for 30 s: renew validation this often.
RENEW_SECONDS = 15.0


def document_id(item_id: int) -> str:
    """The live document of a content item."""
    return f"content:{item_id}"


def _crdt_value(value: Any) -> Any:
    """A field value for the `fields` map. JSON objects become Y.Maps (keys in sorted order)
    because pycrdt encodes plain objects in hash order, which differs between processes."""
    if isinstance(value, Mapping):
        return Map({key: _crdt_value(value[key]) for key in sorted(value)})
    if isinstance(value, list) and any(isinstance(item, Mapping | list) for item in value):
        return Array([_crdt_value(item) for item in value])
    return value


def initial_update(state: ContentState) -> bytes:
    """The seed of a document: `state` written by SERVER_CLIENT_ID, identical on every node."""
    doc: Doc = Doc(client_id=SERVER_CLIENT_ID)
    text, fields = doc.get(TEXT_ROOT, type=Text), doc.get(FIELDS_ROOT, type=Map)
    with doc.transaction():
        if state.body:
            text.insert(0, state.body)
        for key in sorted(state.fields):
            fields[key] = _crdt_value(state.fields[key])
    return doc.get_update()


async def _renew(room: DocumentRoom) -> None:
    """Send the room's peers its validation messages again, so that no client times them out.

    The clock rises by one: a newer state another node publishes (its clock is the time in
    milliseconds) still wins.
    """
    recorded = room.awareness_of(SERVER_CLIENT_ID)
    if room.is_idle or recorded is None or not (recorded[1] or {}).get("validation"):
        return
    entry = AwarenessEntry(SERVER_CLIENT_ID, recorded[0] + 1, recorded[1])
    await room.apply_remote_awareness(encode_awareness_update([entry]))


def _doc_from_stored(stored: StoredDocument) -> Doc:
    doc: Doc = Doc()
    stored.apply_to(doc)
    return doc


def _doc_of(update: bytes) -> Doc:
    return _doc_from_stored(StoredDocument(update, [], 0))


def state_of(doc: Doc) -> ContentState:
    """The content a document holds."""
    fields = doc.get(FIELDS_ROOT, type=Map).to_py() or {}
    return ContentState.of(str(doc.get(TEXT_ROOT, type=Text)), fields)


def _state_of_update(update: bytes) -> ContentState:
    return state_of(_doc_of(update))


@dataclass(frozen=True, slots=True)
class _Planned:
    """A write worked out on a scratch copy: the state it saw, its update, its conflicts."""

    before: ContentState
    update: bytes | None
    conflicts: list[str]


def _plan(
    live: bytes,
    body: str | None,
    fields: Mapping[str, Any] | None,
    base: ContentState | None,
) -> _Planned:
    """Turn a write into CRDT operations on a scratch copy of the live state `live`."""
    doc = _doc_of(live)
    before = state_of(doc)
    changes: list[bytes] = []
    subscription = doc.observe(lambda event: changes.append(event.update))
    clashes: list[str] = []
    with doc.transaction():
        if body is not None:
            seen = before.body if base is None else base.body
            ops = textdiff.merge(seen, body, before.body)
            textdiff.apply_to_ytext(doc.get(TEXT_ROOT, type=Text), before.body, ops)
        wanted = ContentState.of(None, fields or {}).fields
        target = doc.get(FIELDS_ROOT, type=Map)
        for key in sorted(fields or {}):
            value, current = wanted.get(key), before.fields.get(key)
            seen_value = current if base is None else base.fields.get(key)
            if value == seen_value or value == current:
                continue  # unchanged by this write (others' change stays), or already so
            if seen_value != current:
                clashes.append(key)
            if value is None:
                del target[key]
            else:
                target[key] = _crdt_value(value)
    doc.unobserve(subscription)
    return _Planned(before, changes[0] if changes else None, clashes)


@dataclass(slots=True)
class _Dirty:
    """A document changed here and not materialized since: when first and last, and by whom."""

    first: float
    last: float
    task: asyncio.Task[None] | None = None
    editors: set[int] = field(default_factory=set)


@dataclass(slots=True)
class _Clock:
    """Awareness clocks for the server's state: rising, and ahead of other nodes' (time)."""

    last: int = 0

    def next(self) -> int:
        self.last = max(self.last + 1, int(time.time() * 1000))
        return self.last


class ContentBinding:
    """Content items <-> their live documents; one per app. Use as `async with`, inside the
    RoomManager's block (and the Relay's): leaving materializes what is still pending."""

    def __init__(
        self,
        rooms: RoomManager,
        sessions: SessionFactory,
        relay: Relay | None = None,
        *,
        debounce_seconds: float = 1.0,
        max_wait_seconds: float = 10.0,
        versions: conflicts.Versions,
    ) -> None:
        self.rooms = rooms
        self._sessions = sessions
        self._relay = relay
        # Merges against the versions a write names, and records its conflicts as versions.
        self._versions = versions
        self._debounce = debounce_seconds
        self._max_wait = max(max_wait_seconds, debounce_seconds)
        self._dirty: dict[str, _Dirty] = {}
        self._clock = _Clock()
        self._renewer: asyncio.Task[None] | None = None
        self._started = False

    async def __aenter__(self) -> Self:
        if self._started or self.rooms.seed is not None:
            raise RuntimeError("a ContentBinding starts once, one per RoomManager")
        self._started = True
        self.rooms.seed = self._seed
        hooks = self.rooms.hooks
        hooks.on_load.append(self._on_load)
        hooks.on_change.append(self._on_change)
        hooks.on_unload.append(self._on_unload)
        self._renewer = asyncio.create_task(self._renew_forever(), name="content-validation")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        hooks = self.rooms.hooks
        hooks.on_load.remove(self._on_load)
        hooks.on_change.remove(self._on_change)
        hooks.on_unload.remove(self._on_unload)
        self.rooms.seed = None
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        dirty, self._dirty = self._dirty, {}
        tasks = [entry.task for entry in dirty.values() if entry.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for doc_id, entry in dirty.items():
            await self._store(doc_id, entry.editors)

    # -- the contract -------------------------------------------------------------

    async def current(self, item_id: int) -> ContentState:
        """The live document's content if loaded, else the stored state, else the SQL row."""
        doc_id = document_id(item_id)
        room = self.rooms.get(doc_id)
        if room is None:
            stored = await self.rooms.store.load(doc_id)
            if stored.snapshot is not None or stored.updates:
                doc = await asyncio.to_thread(_doc_from_stored, stored)
                return state_of(doc)
            async with transaction(self._sessions) as db:
                state = await sql_state(db, item_id)
            if state is None:
                raise NotFound("No such content item", code="content_not_found")
            return state
        return await asyncio.to_thread(_state_of_update, room.sync_step1_reply(EMPTY_VECTOR))

    async def write(
        self,
        db: AsyncSession,
        principal: Principal,
        item_id: int,
        *,
        body: str | None = None,
        fields: Mapping[str, Any] | None = None,
        base: ContentState | None = None,
        base_version_id: int | None = None,
        origin: str = "rest",
    ) -> ContentState:
        """Apply a write to the live document durably, then materialize it into `db`.

        Call it before anything else writes in `db`'s transaction: the update is logged in
        a transaction of its own, which SQLite would make wait for `db`'s write lock.
        With `base` (or `base_version_id`), changes others made since it are kept: text
        merges three-way; a field both changed takes this write's value, and the conflict
        is recorded. Returns the document's content once the write is in.
        """
        doc_id = document_id(item_id)
        level = await require_level(db, principal, doc_id, "write")
        await require_document(db, doc_id)
        if fields:
            await _require_valid(db, item_id, fields)
        if base is None and base_version_id is not None:
            base = await self._versions.content_of(db, item_id, base_version_id)
        peer = RestPeer(principal)
        room = await self.rooms.join(doc_id, peer, level)
        try:
            live = room.sync_step1_reply(EMPTY_VECTOR)
            planned = await asyncio.to_thread(_plan, live, body, fields, base)
            if planned.update is not None:
                await room.apply_update(peer, planned.update, hold=False)
            after = await asyncio.to_thread(_state_of_update, room.sync_step1_reply(EMPTY_VECTOR))
        finally:
            await self.rooms.leave(doc_id, peer)
        logger.debug("%s write to %s: %s conflicts", origin, doc_id, len(planned.conflicts))
        editors = {principal.user_id} if principal.user_id is not None else set()
        outcome = await materialize(db, item_id, after, editors=editors)
        await self._show_errors(doc_id, outcome.errors)
        if planned.conflicts:
            await conflicts.record(
                db,
                self._versions,
                principal,
                item_id,
                theirs=planned.before,
                ours=after,
                names=planned.conflicts,
            )
        return after

    async def close(self, item_id: int) -> None:
        """After the item's deletion committed: end its document on every node."""
        doc_id = document_id(item_id)
        entry = self._dirty.pop(doc_id, None)
        if entry is not None and entry.task is not None:
            entry.task.cancel()
        await self.rooms.remove(doc_id)
        if self._relay is not None:
            await self._relay.publish_removal(doc_id)

    # -- seeding ------------------------------------------------------------------

    async def _seed(self, doc_id: str) -> None:
        """Give an existing item's document with no stored state its SQL content."""
        item_id = content_item_id(doc_id)
        if item_id is None:
            return
        async with transaction(self._sessions) as db:
            if await _has_stored_state(db, doc_id):
                return
            state = await sql_state(db, item_id)
        if state is not None:
            update = await asyncio.to_thread(initial_update, state)
            await self.rooms.store.initialise(doc_id, update)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            await self._renew_all()

    async def _renew_all(self) -> None:
        """A function of its own, so that the endless loop keeps no room alive in a local."""
        for doc_id, room in self.rooms.rooms.items():
            if content_item_id(doc_id) is not None:
                try:
                    await _renew(room)
                except Exception:
                    logger.exception("renewing the validation state of %s failed", doc_id)

    # -- materializing ------------------------------------------------------------

    async def _on_load(self, doc_id: str, room: LoadedRoom) -> None:
        # Validates (and repairs a materialization a crash lost) once the room is open.
        if content_item_id(doc_id) is not None:
            self._touch(doc_id)

    async def _on_change(self, doc_id: str, update: bytes, peer: Peer | None) -> None:
        if peer is not None and content_item_id(doc_id) is not None:
            self._touch(doc_id, peer.principal.user_id)

    async def _on_unload(self, doc_id: str) -> None:
        entry = self._dirty.pop(doc_id, None)
        if entry is None:
            return
        if entry.task is not None:
            entry.task.cancel()
        await self._store(doc_id, entry.editors)

    def _touch(self, doc_id: str, editor: int | None = None) -> None:
        now = asyncio.get_running_loop().time()
        entry = self._dirty.get(doc_id)
        if entry is not None:
            entry.last = now
            if editor is not None:
                entry.editors.add(editor)
            return
        entry = self._dirty[doc_id] = _Dirty(first=now, last=now)
        if editor is not None:
            entry.editors.add(editor)
        entry.task = asyncio.create_task(self._settle(doc_id, entry), name=f"store {doc_id}")

    async def _settle(self, doc_id: str, entry: _Dirty) -> None:
        """Materialize once changes pause for the debounce (or after the max wait)."""
        loop = asyncio.get_running_loop()
        while True:
            due = min(entry.last + self._debounce, entry.first + self._max_wait)
            if due > loop.time():
                await asyncio.sleep(due - loop.time())
                continue
            seen, entry.first = entry.last, loop.time()
            editors, entry.editors = entry.editors, set()
            if not await self._store(doc_id, editors):
                entry.editors |= editors
            elif entry.last == seen:
                if self._dirty.get(doc_id) is entry:
                    del self._dirty[doc_id]
                return
            entry.last = max(entry.last, entry.first)

    async def _store(self, doc_id: str, editors: Collection[int] = ()) -> bool:
        """Materialize the document's state (live, else stored); False if that failed.

        `editors` made the changes: mentions they added notify others, never themselves.
        """
        item_id = content_item_id(doc_id)
        if item_id is None:
            return True
        try:
            room = self.rooms.get(doc_id)
            if room is not None:
                live = room.sync_step1_reply(EMPTY_VECTOR)
                state = await asyncio.to_thread(_state_of_update, live)
            else:
                stored = await self.rooms.store.load(doc_id)
                state = state_of(await asyncio.to_thread(_doc_from_stored, stored))
            async with transaction(self._sessions) as db:
                outcome = await materialize(db, item_id, state, editors=editors)
        except Exception:
            logger.exception("materializing %s failed; retrying", doc_id)
            return False
        if outcome.found:
            await self._show_errors(doc_id, outcome.errors)
        return True

    async def _show_errors(self, doc_id: str, errors: dict[str, str]) -> None:
        """Publish the validation state (every field's message; empty once all are valid)."""
        state = {"server": True, "validation": dict(sorted(errors.items()))}
        entry = AwarenessEntry(SERVER_CLIENT_ID, self._clock.next(), state)
        update = encode_awareness_update([entry])
        room = self.rooms.get(doc_id)
        if room is not None:
            await room.apply_remote_awareness(update)
        if self._relay is not None:
            await self._relay.publish_awareness(doc_id, update)


async def _require_valid(db: AsyncSession, item_id: int, fields: Mapping[str, Any]) -> None:
    """Unprocessable naming every field of a write whose value could not be stored."""
    item = await db.get(ContentItem, item_id)
    if item is None:
        raise NotFound("No such content item", code="content_not_found")
    errors = await invalid_fields(db, item, fields)
    if errors:
        raise Unprocessable(
            "Some field values are invalid",
            code="invalid_field_values",
            errors=[
                {"loc": ["body", name], "message": message, "type": "invalid_value"}
                for name, message in sorted(errors.items())
            ],
        )


async def _has_stored_state(db: AsyncSession, doc_id: str) -> bool:
    found = sa.or_(
        sa.exists().where(DocumentSnapshot.document_id == doc_id),
        sa.exists().where(DocumentUpdate.document_id == doc_id),
    )
    return bool(await db.scalar(sa.select(found)))
