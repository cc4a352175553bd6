"""Request and response shapes for notifications, templates, categories and preferences."""

from __future__ import annotations

import keyword
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Channel = Literal["in_app", "email"]
Frequency = Literal["immediate", "hourly", "daily", "off"]
CHANNELS: tuple[Channel, ...] = ("in_app", "email")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# A template's source, and a rendered text, are bounded: both are stored and mailed.
MAX_TEMPLATE = 20_000
MAX_MESSAGE = 60_000

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
TypeName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=50)]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9a-fA-F]{6}$")]
Source = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEMPLATE)]
DbId = Annotated[int, Field(ge=1, le=2**31 - 1)]
Username = Annotated[str, StringConstraints(min_length=1, max_length=50)]


def _identifiers(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    for value in values:
        if not _IDENTIFIER.match(value) or keyword.iskeyword(value):
            raise ValueError(f"{value!r} is not a variable name (letters, digits, underscore)")
        if value == "recipient":
            raise ValueError("'recipient' is given to every template; do not declare it")
    if len(set(values)) != len(values):
        raise ValueError("variables are listed once each")
    return values


def _channels(values: list[Channel] | None) -> list[Channel] | None:
    if values is not None and len(set(values)) != len(values):
        raise ValueError("channels are listed once each")
    return values


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    type: TypeName = "info"
    subject_template: Source
    body_template: Source
    variables: Annotated[list[str], Field(max_length=100)] = Field(default_factory=list)
    channels: Annotated[list[Channel], Field(min_length=1, max_length=2)] = Field(
        default_factory=lambda: list[Channel](["in_app"])
    )

    _check_variables = field_validator("variables")(_identifiers)
    _check_channels = field_validator("channels")(_channels)


class TemplateUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    type: TypeName | None = None
    subject_template: Source | None = None
    body_template: Source | None = None
    variables: Annotated[list[str], Field(max_length=100)] | None = None
    channels: Annotated[list[Channel], Field(min_length=1, max_length=2)] | None = None

    _check_variables = field_validator("variables")(_identifiers)
    _check_channels = field_validator("channels")(_channels)


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    type: str
    subject_template: str
    body_template: str
    variables: list[str]
    channels: list[str]

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, value: Any) -> Any:
        """A stored template names its key `template_id`; JSON lists stay lists."""
        if not hasattr(value, "template_id"):
            return value
        names = ("name", "description", "type", "subject_template", "body_template")
        data = {name: getattr(value, name) for name in names}
        for name in ("variables", "channels"):
            listed = getattr(value, name)
            data[name] = listed if isinstance(listed, list) else []
        return {"id": value.template_id, **data}


class NotificationCategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    color_code: Color = "#3498db"
    is_system: bool = False


class NotificationCategoryUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    color_code: Color | None = None


class NotificationCategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    color_code: str | None
    is_system: bool
    created_at: datetime | None
    updated_at: datetime | None


class NotificationCategoryBrief(BaseModel):
    id: int
    name: str
    color_code: str | None


class NotificationOut(BaseModel):
    """A notification as REST and the `/notifications` socket namespace show it."""

    id: int
    user_id: int
    category_id: int | None
    title: str
    message: str
    type: str | None
    is_read: bool
    view_count: int
    created_at: datetime | None
    last_viewed_at: datetime | None
    category: NotificationCategoryBrief | None


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # null: the user's default for every category without a preference of its own.
    category_id: DbId | None = None
    channels: Annotated[list[Channel], Field(max_length=2)]
    frequency: Frequency

    _check_channels = field_validator("channels")(_channels)


class PreferencesPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferences: Annotated[list[PreferenceIn], Field(min_length=1, max_length=200)]


class PreferenceOut(BaseModel):
    category_id: int | None
    channels: list[str]
    frequency: str
    # False when the value is inherited (the user's default, or the server's).
    explicit: bool


class ReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ids: Annotated[list[DbId], Field(min_length=1, max_length=500)]


class UnreadOut(BaseModel):
    total: int
    by_category: dict[str, int]


class ReadOut(BaseModel):
    read: list[int]
    unread: UnreadOut


class ReadAllOut(BaseModel):
    count: int
    unread: UnreadOut


class SendIn(BaseModel):
    """An integration's notification: a template (name or id) and its context, or a text."""

    model_config = ConfigDict(extra="forbid")

    template: Annotated[str, StringConstraints(min_length=1, max_length=100)] | DbId | None = None
    title: Title | None = None
    message: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE)] | None = None
    context: Annotated[dict[str, Any], Field(max_length=100)] = Field(default_factory=dict)
    user_ids: Annotated[list[DbId], Field(max_length=1000)] = Field(default_factory=list)
    usernames: Annotated[list[Username], Field(max_length=1000)] = Field(default_factory=list)
    category_id: DbId | None = None
    type: TypeName = "info"


class SendOut(BaseModel):
    recipients: int
    stored: int
    queued: int
    emails: int


class WorkerNotificationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    worker_id: str
    message: str
    type: str
    priority: int
    batch_id: str | None
    read_at: datetime | None
    processed_at: datetime | None
    created_at: datetime | None
