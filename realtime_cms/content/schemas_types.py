"""Request and response shapes for content types, their custom fields, categories and tags."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from realtime_cms.content.fields import FieldType, parse_options
from realtime_cms.content.slugs import SLUG_PATTERN

# The live document's `fields` map keeps these next to the custom fields (docs/protocol.md).
RESERVED_FIELD_NAMES = frozenset({"title", "excerpt", "slug", "body"})
# A TEXT column holds 65,535 bytes on MySQL/MariaDB.
MAX_TEXT_BYTES = 65_535


def _utf8(value: str) -> str:
    # json.loads lets lone surrogates (\ud800) through; no database can store them.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    return value


def _text_column(value: str) -> str:
    if len(_utf8(value).encode("utf-8")) > MAX_TEXT_BYTES:
        raise ValueError(f"must be at most {MAX_TEXT_BYTES} bytes of UTF-8")
    return value


def _field_name(value: str) -> str:
    if value in RESERVED_FIELD_NAMES:
        raise ValueError(f"{value!r} is reserved ({', '.join(sorted(RESERVED_FIELD_NAMES))})")
    return value


Description = Annotated[str, AfterValidator(_text_column)]
FieldName = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,99}$"), AfterValidator(_field_name)
]
TypeName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50),
    AfterValidator(_utf8),
]
TermName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_utf8),
]
FieldLabel = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=255),
    AfterValidator(_utf8),
]
TypeSlug = Annotated[str, StringConstraints(max_length=50, pattern=SLUG_PATTERN)]
TermSlug = Annotated[str, StringConstraints(max_length=100, pattern=SLUG_PATTERN)]
ParentId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Options = dict[str, Any]


class _Patch(BaseModel):
    """A partial update: absent fields stay, and only nullable columns accept null."""

    model_config = ConfigDict(extra="forbid")
    NULLABLE: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _refuse_null(self) -> _Patch:
        for name in self.model_fields_set - self.NULLABLE:
            if getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields the caller sent."""
        return self.model_dump(exclude_unset=True)


# Content types


class ContentTypeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TypeName
    slug: TypeSlug | None = None
    description: Description | None = None
    is_hierarchical: bool = False
    has_tags: bool = True
    has_categories: bool = True


class ContentTypeUpdate(_Patch):
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"description"})

    name: TypeName | None = None
    slug: TypeSlug | None = None
    description: Description | None = None
    is_hierarchical: bool | None = None
    has_tags: bool | None = None
    has_categories: bool | None = None


class ContentTypeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    description: str | None
    is_hierarchical: bool
    has_tags: bool
    has_categories: bool
    created_at: datetime | None
    updated_at: datetime | None


# Custom field definitions


class CustomFieldCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    field_name: FieldName
    field_label: FieldLabel
    field_type: FieldType
    options: Options | None = None
    is_required: bool = False


class CustomFieldUpdate(_Patch):
    field_name: FieldName | None = None
    field_label: FieldLabel | None = None
    field_type: FieldType | None = None
    options: Options | None = None
    is_required: bool | None = None


class CustomFieldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    content_type_id: int
    field_name: str
    field_label: str
    field_type: str
    options: dict[str, Any]
    is_required: bool
    created_at: datetime | None
    updated_at: datetime | None

    @field_validator("options", mode="before")
    @classmethod
    def _stored_json(cls, value: Any) -> Any:
        return parse_options(value) if value is None or isinstance(value, str) else value


# Categories and tags


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TermName
    slug: TermSlug | None = None
    description: Description | None = None
    parent_id: ParentId | None = None


class CategoryUpdate(_Patch):
    NULLABLE: ClassVar[frozenset[str]] = frozenset({"description", "parent_id"})

    name: TermName | None = None
    slug: TermSlug | None = None
    description: Description | None = None
    parent_id: ParentId | None = None


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    description: str | None
    parent_id: int | None
    created_at: datetime | None
    updated_at: datetime | None


class CategoryNode(BaseModel):
    """A category with its subcategories, as `GET /api/v1/categories/tree` nests them."""

    id: int
    name: str
    slug: str
    description: str | None
    parent_id: int | None
    children: list[CategoryNode]


class TagCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: TermName
    slug: TermSlug | None = None


class TagUpdate(_Patch):
    name: TermName | None = None
    slug: TermSlug | None = None


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    created_at: datetime | None
    updated_at: datetime | None
