"""The durable CRDT update log: group-committed appends, catch-up reads, compaction to snapshots."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import sqlalchemy as sa
from pycrdt import Decoder, Doc, get_update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.collab.log_writers import writer_for
from realtime_cms.db import SessionFactory, transaction
from realtime_cms.models.realtime import DocumentSnapshot, DocumentUpdate

logger = logging.getLogger(__name__)

Rows = list[tuple[int, bytes]]

# A batch closes early at this many update bytes: one INSERT stays far below MariaDB's
# default max_allowed_packet (16 MiB).
_MAX_BATCH_BYTES = 4 << 20
# Compaction deletes the rows it folded by id, this many per statement.
_DELETE_CHUNK = 500
# Passes of `apply_rows` at most (each one must integrate a row held pending before).
_MAX_PASSES = 16
# `Doc().get_update()` and `Doc().get_state()`: the placeholder a first compaction locks.
_EMPTY_STATE = b"\x00\x00"
_EMPTY_VECTOR = b"\x00"


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """Everything needed to rebuild a document: the snapshot, then the log rows.

    `updates` is every log row not folded into the snapshot, in id order; it may hold rows
    at or below the snapshot's last folded id (committed late, or folded while this was
    read): CRDT updates are idempotent. `last_id` is the cursor for `updates_since`.
    """

    snapshot: bytes | None
    updates: Rows
    last_id: int

    def apply_to(self, doc: Doc) -> Rows:
        """Apply the snapshot, then the rows (see `apply_rows`); returns rows left pending."""
        if self.snapshot is not None:
            with pycrdt_errors("the snapshot"):
                doc.apply_update(self.snapshot)
        return apply_rows(doc, self.updates)


@dataclass(frozen=True, slots=True)
class CompactionResult:
    """What one compaction did: rows folded (and deleted), rows kept, the new snapshot."""

    last_update_id: int
    folded: int
    kept: int
    state_bytes: int


class CorruptUpdateError(ValueError):
    """Stored bytes pycrdt cannot apply (an error or a panic); `where` names them."""

    def __init__(self, where: str) -> None:
        self.where = where
        super().__init__(f"pycrdt cannot apply {where}")


class _NothingToWrite(Exception):
    """Rolls a transaction back on purpose."""


@dataclass(slots=True)
class _Append:
    document_id: str
    update: bytes
    future: asyncio.Future[int]


class pycrdt_errors:  # named as the function it replaced: `with pycrdt_errors(where):`
    """Turn pycrdt errors and panics (BaseExceptions: pyo3_runtime.PanicException) into one.

    A class rather than a `contextlib.contextmanager`: it wraps every apply of the hot
    path, and a generator-based one costs several times more to enter and leave."""

    __slots__ = ("_where",)

    def __init__(self, where: str) -> None:
        self._where = where

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        if exc is None or isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
            return
        raise CorruptUpdateError(self._where) from exc


class _Clocks:
    """A state vector's clock per client, decoded on first use (most checks never need it)."""

    def __init__(self, vector: bytes) -> None:
        self._vector = vector
        self._clocks: dict[int, int] | None = None

    def get(self, client: int) -> int:
        if self._clocks is None:
            decoder = Decoder(self._vector)
            clocks: dict[int, int] = {}
            for _ in range(decoder.read_var_uint()):
                found = decoder.read_var_uint()
                clocks[found] = decoder.read_var_uint()
            self._clocks = clocks
        return self._clocks.get(client, 0)


def _integrated(update: bytes, vector: bytes, clocks: _Clocks) -> bool:
    """Whether a doc whose state vector is `vector` holds all of `update`.

    The update's diff against the vector must carry no structs (every insert is in the
    doc) and every range it deletes must lie below the doc's clocks (known, so deleted).
    """
    decoder = Decoder(get_update(update, vector))
    if decoder.read_var_uint():
        return False
    for _ in range(decoder.read_var_uint()):
        client = decoder.read_var_uint()
        for _ in range(decoder.read_var_uint()):
            clock, length = decoder.read_var_uint(), decoder.read_var_uint()
            if clock + length > clocks.get(client):
                return False
    return True


def apply_rows(doc: Doc, rows: Rows) -> Rows:
    """Apply log rows to `doc` until pycrdt settles; returns the rows it still holds pending.

    An update whose dependencies are missing is held pending, and pycrdt 0.14.13 does not
    reliably integrate it once they arrive (30 edits applied in a shuffled order lose some
    in most orders), so rows still pending after a pass are applied again while that helps.
    Raises CorruptUpdateError if pycrdt cannot apply a row.
    """
    pending = rows
    for _ in range(_MAX_PASSES):
        for update_id, update in pending:
            with pycrdt_errors(f"update {update_id}"):
                doc.apply_update(update)
        still = _still_pending(doc, pending)
        if len(still) in (0, len(pending)):
            return still
        pending = still
    return pending


def _still_pending(doc: Doc, rows: Rows) -> Rows:
    """The rows `doc` does not hold entirely (after they were applied to it)."""
    with pycrdt_errors("the document's state"):
        vector = doc.get_state()
        clocks = _Clocks(vector)
        still = [(i, u) for i, u in rows if not _integrated(u, vector, clocks)]
    return still


def apply_after_pending(
    doc: Doc, pending: Rows, row: tuple[int, bytes], changes: list[bytes] | None = None
) -> Rows:
    """Apply `row` to a doc holding `pending`; returns what is pending afterwards.

    The pending rows are applied again only when `row` moved the state vector: an update
    that integrates nothing cannot be what they wait for, so a stream of updates with
    missing dependencies costs one apply each, not one per pending row.

    `changes`, if given, is the (empty) list that `doc`'s observer appends each
    transaction's update to. When nothing is pending and the apply's changes are the row
    itself, byte for byte, all of it was integrated (a part held pending is not among the
    changes) and the state vector need not be checked: the usual case of an edit from a
    client in sync, whose update Yjs and yrs encode alike.
    """
    if not pending:
        if changes is None:
            return apply_rows(doc, [row])
        with pycrdt_errors(f"update {row[0]}"):
            doc.apply_update(row[1])
        return [] if changes == [row[1]] else _still_pending(doc, [row])
    with pycrdt_errors("the document's state"):
        before = doc.get_state()
    still = apply_rows(doc, [row])
    with pycrdt_errors("the document's state"):
        moved = doc.get_state() != before
    if not moved:
        return [*pending, *still]
    return apply_rows(doc, [*pending, *still])


def _squash(snapshot: bytes, rows: Rows) -> tuple[bytes, bytes, list[int]]:
    """Apply (never `merge_updates`) the snapshot and rows to a fresh Doc: its state, its
    state vector, and the rows it holds entirely (`get_update()` drops pending parts)."""
    doc: Doc = Doc()
    kept = {row_id for row_id, _ in StoredDocument(snapshot, rows, 0).apply_to(doc)}
    with pycrdt_errors("the squashed document"):
        state, vector = doc.get_update(), doc.get_state()
    return state, vector, [row_id for row_id, _ in rows if row_id not in kept]


def _log_of(document_id: str) -> sa.ColumnElement[bool]:
    return DocumentUpdate.document_id == document_id


def _snapshot_of(document_id: str) -> sa.ColumnElement[bool]:
    return DocumentSnapshot.document_id == document_id


_SNAPSHOT = sa.select(DocumentSnapshot.state, DocumentSnapshot.last_update_id)


async def _lock_snapshot(session: AsyncSession, document_id: str) -> tuple[bytes, int]:
    """Lock the document's snapshot row (inserting an empty one if absent) across processes.

    The insert takes SQLite's write lock before anything is read; on MariaDB it locks the
    row (waiting for a racing insert), as the SELECT ... FOR UPDATE then states.
    """
    values = {"document_id": document_id, "state": _EMPTY_STATE, "state_vector": _EMPTY_VECTOR}
    insert: sa.Executable
    if session.get_bind().dialect.name == "sqlite":
        insert = sqlite.insert(DocumentSnapshot).values(values).on_conflict_do_nothing()
    else:
        insert = mysql.insert(DocumentSnapshot).values(values)
        insert = insert.on_duplicate_key_update(document_id=insert.inserted.document_id)
    await session.execute(insert)
    locked = _SNAPSHOT.where(_snapshot_of(document_id)).with_for_update()
    row = (await session.execute(locked)).one()
    return bytes(row.state), int(row.last_update_id)


async def _log_rows(session: AsyncSession, document_id: str, after_id: int | None = None) -> Rows:
    """The document's log rows in id order, those above `after_id` if given."""
    query = sa.select(DocumentUpdate.id, DocumentUpdate.update).where(_log_of(document_id))
    if after_id is not None:
        query = query.where(DocumentUpdate.id > after_id)
    result = await session.execute(query.order_by(DocumentUpdate.id))
    return [(int(row_id), bytes(update)) for row_id, update in result]


class UpdateStore:
    """The append-only log of every document's CRDT updates, plus one snapshot per document.

    Use it as `async with UpdateStore(sessions) as store:`; a store starts once, and leaving
    the block writes every pending append before it returns. Appends are group-committed: a
    background flusher writes all appends that arrive within `commit_window` seconds (up to
    `max_batch` rows) in one transaction with one multi-row INSERT, and each `append` returns
    only after that COMMIT. Appends that arrive while a batch is being written form the next
    batch at once (they have waited already).
    """

    def __init__(
        self,
        sessions: SessionFactory,
        *,
        commit_window: float = 0.008,
        max_batch: int = 512,
        catchup_overlap: int = 4096,
    ) -> None:
        if max_batch < 1 or commit_window < 0 or catchup_overlap < 0:
            raise ValueError("max_batch must be positive, the others not negative")
        self._sessions = sessions
        self._writer = writer_for(sessions)
        # Transactions committed so far: appends / batches is what group commit saves.
        self.batches_committed = 0
        self._window = commit_window
        self._max_batch = max_batch
        self._overlap = catchup_overlap
        self._pending: list[_Append] = []
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False

    async def __aenter__(self) -> Self:
        if self._flusher is not None:
            raise RuntimeError("an UpdateStore starts only once")
        self._flusher = asyncio.create_task(self._run(), name="update-store-flusher")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        self._wake.set()
        self._full.set()
        if self._flusher is not None:
            try:
                await self._flusher
            finally:
                await asyncio.to_thread(self._writer.close)

    async def append(self, document_id: str, update: bytes) -> int:
        """Log one update; returns its id once the transaction holding it has committed.

        If that commit fails, every append of the batch raises its error. Cancelling the
        caller does not withdraw the update (peers may have it already).
        """
        return await self.enqueue(document_id, update)

    def enqueue(self, document_id: str, update: bytes) -> asyncio.Future[int]:
        """Queue one update for the next batch, without waiting; the future is its log id.

        Updates are written in the order they were queued. The future fails with the error
        of the commit that held the update.
        """
        if self._flusher is None or self._closing:
            raise RuntimeError("the UpdateStore is not running")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(_Append(document_id, update, future))
        self._pending_bytes += len(update)
        self._wake.set()
        if len(self._pending) >= self._max_batch or self._pending_bytes >= _MAX_BATCH_BYTES:
            self._full.set()
        return future

    async def load(self, document_id: str) -> StoredDocument:
        """The snapshot and every log row not folded into it. Errors propagate."""
        rows, snapshot = await self._read(document_id, None)
        state, last_folded = snapshot if snapshot is not None else (None, 0)
        return StoredDocument(state, rows, max([last_folded, *(row_id for row_id, _ in rows)]))

    async def updates_since(self, document_id: str, after_id: int) -> Rows:
        """What a node holding everything up to log id `after_id` may lack, in apply order.

        On MariaDB an id is handed out at INSERT but a row becomes visible at COMMIT, so a
        row with a lower id can appear after a higher one has been read. Catch-up therefore
        re-reads an overlap: every row with an id above `after_id - catchup_overlap`. Group
        commit keeps one transaction per node in flight, so the overlap covers a row whose
        commit lagged while other nodes wrote up to `catchup_overlap` rows. Re-applying rows
        a node has is harmless: CRDT updates are idempotent. Rows in that range may already
        be folded into the snapshot (and deleted), so when the snapshot reaches past the
        range's start it comes first, as `(its last folded id, state)`.
        """
        floor = after_id - self._overlap
        rows, snapshot = await self._read(document_id, floor)
        if snapshot is not None and snapshot[1] > floor:
            return [(snapshot[1], snapshot[0]), *rows]
        return rows

    async def _read(
        self, document_id: str, after_id: int | None
    ) -> tuple[Rows, tuple[bytes, int] | None]:
        """Log rows (above `after_id`), then the snapshot as `(state, last folded id)`.

        SQLite runs these reads outside a shared snapshot. In this order a compaction that
        commits between them only makes the rows redundant, never missing.
        """
        async with transaction(self._sessions) as session:
            rows = await _log_rows(session, document_id, after_id)
            found = (await session.execute(_SNAPSHOT.where(_snapshot_of(document_id)))).first()
        return rows, (bytes(found.state), int(found.last_update_id)) if found else None

    async def log_stats(self, document_id: str) -> tuple[int, int]:
        """How many log rows the document has, and how many update bytes they hold."""
        size = sa.func.coalesce(sa.func.sum(sa.func.length(DocumentUpdate.update)), 0)
        query = sa.select(sa.func.count(), size).where(_log_of(document_id))
        async with transaction(self._sessions) as session:
            rows, total = (await session.execute(query)).one()
        return int(rows), int(total)

    async def compact(self, document_id: str) -> CompactionResult | None:
        """Fold the document's log into its snapshot; None if there was nothing to fold.

        Under the document's snapshot-row lock: apply the snapshot and every log row to a
        fresh Doc, write the new snapshot, delete exactly the rows folded (by id, so a row
        committed meanwhile stays, whatever its id). Rows pycrdt holds pending (their
        dependencies are not stored yet) stay in the log. If any stored bytes cannot be
        applied, the compaction is abandoned and logged, and the log stays as it is.
        """
        try:
            async with transaction(self._sessions) as session:
                return await self._compact_locked(session, document_id)
        except _NothingToWrite:
            return None

    async def _compact_locked(self, session: AsyncSession, document_id: str) -> CompactionResult:
        state, last_folded = await _lock_snapshot(session, document_id)
        rows = await _log_rows(session, document_id)
        if not rows:
            raise _NothingToWrite
        try:
            new_state, vector, folded = await asyncio.to_thread(_squash, state, rows)
        except CorruptUpdateError as exc:
            logger.error("not compacting %s: %s (the log is kept)", document_id, exc, exc_info=exc)
            raise _NothingToWrite from exc
        if not folded:
            raise _NothingToWrite
        last_id = max(last_folded, folded[-1])
        await session.execute(
            sa.update(DocumentSnapshot)
            .where(_snapshot_of(document_id))
            .values(
                state=new_state,
                state_vector=vector,
                last_update_id=last_id,
                update_count=DocumentSnapshot.update_count + len(folded),
            )
        )
        for start in range(0, len(folded), _DELETE_CHUNK):
            chunk = folded[start : start + _DELETE_CHUNK]
            await session.execute(sa.delete(DocumentUpdate).where(DocumentUpdate.id.in_(chunk)))
        return CompactionResult(last_id, len(folded), len(rows) - len(folded), len(new_state))

    async def delete(self, document_id: str) -> None:
        """Remove the document's log and snapshot."""
        async with transaction(self._sessions) as session:
            await session.execute(sa.delete(DocumentUpdate).where(_log_of(document_id)))
            await session.execute(sa.delete(DocumentSnapshot).where(_snapshot_of(document_id)))

    async def initialise(self, document_id: str, state: bytes) -> bool:
        """Seed a document that has neither snapshot nor log rows; False if anything exists.

        The INSERT comes first: the primary key lets exactly one of two racing callers win,
        and on SQLite it takes the write lock before anything is read. `state` must be a
        valid update (CorruptUpdateError otherwise); it is stored byte for byte.
        """
        _, vector, _ = _squash(state, [])
        snapshot = {"document_id": document_id, "state": state, "state_vector": vector}
        try:
            async with transaction(self._sessions) as session:
                await session.execute(sa.insert(DocumentSnapshot).values(snapshot))
                logged = sa.select(DocumentUpdate.id).where(_log_of(document_id)).limit(1)
                if await session.scalar(logged) is not None:
                    raise _NothingToWrite
        except (IntegrityError, _NothingToWrite):
            return False
        return True

    async def _run(self) -> None:
        """The flusher: write pending appends batch by batch until closed and drained."""
        try:
            while self._pending or not self._closing:
                if self._pending:
                    await self._flush(self._take_batch())
                else:
                    await self._idle()
        finally:
            for item in self._pending:
                item.future.cancel()

    async def _idle(self) -> None:
        """Sleep until an append arrives, then let others join it for `commit_window`."""
        self._wake.clear()
        await self._wake.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._window):
                await self._full.wait()

    def _take_batch(self) -> list[_Append]:
        count, size = 0, 0
        for item in self._pending:
            if count == self._max_batch or (count and size + len(item.update) > _MAX_BATCH_BYTES):
                break
            count, size = count + 1, size + len(item.update)
        batch = self._pending[:count]
        del self._pending[:count]
        self._pending_bytes -= size
        if len(self._pending) < self._max_batch and self._pending_bytes < _MAX_BATCH_BYTES:
            self._full.clear()
        return batch

    async def _flush(self, batch: list[_Append]) -> None:
        try:
            ids = await self._insert(batch)
        except Exception as exc:
            logger.warning("committing %s updates failed: %r", len(batch), exc)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        except BaseException:
            for item in batch:
                item.future.cancel()
            raise
        self.batches_committed += 1
        for item, row_id in zip(batch, ids, strict=True):
            if not item.future.done():
                item.future.set_result(row_id)

    async def _insert(self, batch: list[_Append]) -> list[int]:
        """One transaction for the whole batch; returns the ids in the batch's order."""
        return await self._writer.insert([(item.document_id, item.update) for item in batch])
