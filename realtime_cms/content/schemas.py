"""Request and response shapes for content items and the public delivery API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from realtime_cms.content.slugs import SLUG_PATTERN

Status = Literal["draft", "scheduled", "published", "archived", "expired"]
Visibility = Literal["public", "private", "password"]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
Slug = Annotated[str, StringConstraints(max_length=255, pattern=SLUG_PATTERN)]
# An excerpt is a TEXT column: 65,535 bytes on MySQL, at most 4 bytes per character.
Excerpt = Annotated[str, StringConstraints(max_length=16_383)]
# A content password is hashed with argon2id; the bound keeps hashing cheap to refuse.
ContentPassword = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Ids = Annotated[list[Annotated[int, Field(ge=1, lt=2**31)]], Field(max_length=200)]
FieldValues = Annotated[dict[str, Any], Field(max_length=200)]
ItemId = Annotated[int, Field(ge=1, lt=2**31)]

# Fields of ItemUpdate that may not be sent as null (null only means "absent" for them).
_NOT_NULL = ("title", "slug", "body", "visibility", "status", "site_id", "custom_fields")


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: Annotated[int, Field(ge=1, lt=2**63)]
    content_type_id: ItemId
    title: Title
    slug: Slug | None = None
    body: str = ""
    excerpt: Excerpt | None = None
    parent_id: ItemId | None = None
    visibility: Visibility = "public"
    password: ContentPassword | None = None
    status: Status = "draft"
    published_at: datetime | None = None
    custom_fields: FieldValues = {}
    categories: Ids = []
    tags: Ids = []


class ItemUpdate(BaseModel):
    """A partial change: only the fields sent are changed (`parent_id`, `excerpt`: null clears)."""

    model_config = ConfigDict(extra="forbid")

    site_id: Annotated[int, Field(ge=1, lt=2**63)] | None = None
    title: Title | None = None
    slug: Slug | None = None
    body: str | None = None
    excerpt: Excerpt | None = None
    parent_id: ItemId | None = None
    visibility: Visibility | None = None
    password: ContentPassword | None = None
    status: Status | None = None
    published_at: datetime | None = None
    custom_fields: FieldValues | None = None
    categories: Ids | None = None
    tags: Ids | None = None
    base_version: ItemId | None = None

    @model_validator(mode="after")
    def _no_null_for_required(self) -> ItemUpdate:
        for name in _NOT_NULL:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the caller sent (explicit nulls included), without `base_version`."""
        return {
            name: getattr(self, name) for name in self.model_fields_set if name != "base_version"
        }


class ItemSummaryOut(BaseModel):
    """An item as collections list it: everything but the body."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    site_id: int
    content_type_id: int
    author_id: int
    parent_id: int | None
    title: str
    slug: str
    excerpt: str | None
    status: Status
    visibility: Visibility
    published_at: datetime | None
    archived_at: datetime | None
    expired_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None
    custom_fields: dict[str, Any]
    categories: list[int]
    tags: list[int]


class ItemOut(ItemSummaryOut):
    """One item with its Markdown body."""

    body: str


class FieldsUpdate(BaseModel):
    """Custom field values to set; a null value removes the stored value."""

    model_config = ConfigDict(extra="forbid")

    fields: FieldValues
    base_version: ItemId | None = None


class FieldsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: int
    fields: dict[str, Any]


class IdsUpdate(BaseModel):
    """The complete set of category (or tag) ids the item is to have."""

    model_config = ConfigDict(extra="forbid")

    ids: Ids


class IdsOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    item_id: int
    ids: list[int]


class DeliveryItemOut(BaseModel):
    """A published item as websites see it; a password-protected item's content is withheld
    in listings (`body`, `excerpt` and `custom_fields` are null there)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    type: str
    slug: str
    title: str
    excerpt: str | None
    body: str | None
    custom_fields: dict[str, Any] | None
    categories: list[int]
    tags: list[int]
    parent_id: int | None
    password_protected: bool
    published_at: datetime | None
    updated_at: datetime | None
