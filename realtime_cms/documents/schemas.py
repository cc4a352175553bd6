"""Request and response shapes for live documents: reads, binary state, grants, presence."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from realtime_cms.collab.access import Level


class LevelIn(BaseModel):
    """The level to grant a user on a document (creates or changes the grant)."""

    model_config = ConfigDict(extra="forbid")

    level: Level


class StateQuery(BaseModel):
    """`state_vector`: what the client has (base64url); the answer is only what it lacks."""

    model_config = ConfigDict(extra="forbid")

    # About 700 clients' clocks; `serve` admits request lines this long (see cli.py).
    state_vector: str | None = Field(default=None, max_length=6_000)


class PermissionOut(BaseModel):
    """One user's explicit grant on a document."""

    user_id: int
    username: str
    level: str
    granted_at: datetime | None


class LogOut(BaseModel):
    """The document's update log: rows not yet compacted and the bytes they hold."""

    rows: int
    bytes: int


class SnapshotOut(BaseModel):
    """The compacted state: up to which log id, how many updates it folded, its size."""

    last_update_id: int
    update_count: int
    bytes: int
    updated_at: datetime | None


class DocumentOut(BaseModel):
    """A document's metadata and content (`text`: Y.Text `body`, `fields`: Y.Map `fields`)."""

    id: str
    is_content: bool
    content_item_id: int | None
    level: Level
    loaded: bool
    peers: int
    log: LogOut
    snapshot: SnapshotOut | None
    state_vector: str
    text: str
    fields: dict[str, Any]


class UpdateAccepted(BaseModel):
    """A durable update: the document's state vector (base64url) right after it."""

    document_id: str
    state_vector: str


class PresentUserOut(BaseModel):
    """A user connected to the document on any node."""

    user_id: int
    username: str
    connections: int
    last_seen: datetime
