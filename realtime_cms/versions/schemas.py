"""Request and response shapes for versions, diffs, restorations, conflicts and history."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class VersionCreate(BaseModel):
    """A manual version of the item's current content, with optional notes."""

    model_config = ConfigDict(extra="forbid")

    notes: str | None = Field(default=None, max_length=10_000)


class DiffQuery(BaseModel):
    """The two versions to compare: `from` (the older side) and `to`, both required (checked
    after the item is found, so a missing item answers 404 first)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: int | None = Field(default=None, alias="from", ge=1, le=2**63 - 1)
    to: int | None = Field(default=None, ge=1, le=2**63 - 1)


class VersionOut(BaseModel):
    """One version: who saved it, when, why, and the hash of its content."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    content_id: int
    version_number: int
    user_id: int | None
    # The saver's username, so readers without `users.view` can see who saved it.
    username: str | None = None
    created_at: datetime | None
    notes: str | None
    is_autosave: bool
    publish_date: date | None
    lifecycle_status: str | None
    content_hash: str
    is_full_content: bool


class VersionMetadataOut(BaseModel):
    """What the item looked like besides its content when the version was saved."""

    model_config = ConfigDict(from_attributes=True)

    change_type: str | None
    previous_version_id: int | None
    status: str | None
    visibility: str | None
    author_id: int | None
    published_at: datetime | None
    tags: list[Any] | None
    seo_title: str | None
    seo_description: str | None
    seo_keywords: str | None


class ContentOut(BaseModel):
    """A version's content: the Markdown body and the field values."""

    body: str
    fields: dict[str, Any]


class VersionDetailOut(VersionOut):
    """One version with its metadata and its reconstructed content."""

    metadata: VersionMetadataOut | None
    content: ContentOut


class VersionRef(BaseModel):
    id: int
    version_number: int
    content_hash: str


class Hunk(BaseModel):
    """Changed lines with context, like a unified diff hunk (line numbers start at 1).

    Each line starts with " " (context), "-" (only in `from`) or "+" (only in `to`).
    """

    old_start: int
    old_lines: int
    new_start: int
    new_lines: int
    lines: list[str]


class FieldChange(BaseModel):
    """A field whose value differs; `old`/`new` are null for an added/removed field."""

    field: str
    change: Literal["added", "removed", "changed"]
    old: Any = None
    new: Any = None


class VersionDiff(BaseModel):
    from_version: VersionRef
    to_version: VersionRef
    hunks: list[Hunk]
    fields: list[FieldChange]


class RestorationOut(BaseModel):
    """One restore of the item (`restoration_audit_log`); `previous_data` is the content
    before it, as canonical JSON `{"body", "fields"}`."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    site_id: int | None
    content_id: int
    version_id: int
    user_id: int
    restored_at: datetime | None
    status: str
    details: str | None
    previous_data: str | None


class ConflictOut(BaseModel):
    """How a conflict between two versions of the item was settled (`conflict_resolution`)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    version_a_id: int
    version_b_id: int
    conflict_type: str
    resolution_method: str
    resolved_by: int
    resolved_at: datetime | None
    notes: str | None


class HistoryEntryOut(BaseModel):
    """One entry of the generic change log (`version_history`); values are JSON text."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    entity_type: str
    entity_id: int
    version_number: int
    user_id: int | None
    change_type: str
    old_value: str | None
    new_value: str | None
    change_reason: str | None
    created_at: datetime | None
