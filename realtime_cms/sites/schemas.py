"""Request and response shapes for sites and site membership."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*(:\d{1,5})?$"
)

SiteName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]


def _domain(value: str) -> str:
    value = value.strip().lower()
    if not _DOMAIN.match(value):
        raise ValueError("must be a host name such as example.com (optionally with :port)")
    return value


class SiteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SiteName
    domain: str
    is_active: bool = True

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: str) -> str:
        return _domain(value)


class SiteUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SiteName | None = None
    domain: str | None = None
    is_active: bool | None = None

    @field_validator("domain")
    @classmethod
    def _check_domain(cls, value: str | None) -> str | None:
        return None if value is None else _domain(value)


class SiteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    domain: str
    is_active: bool
    created_at: datetime | None
    updated_at: datetime | None


class SiteMemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    user_id: int
    username: str
    email: str
