"""Request and response shapes for roles and permissions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

RoleName = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[a-z][a-z0-9_.-]{1,49}$")
]
PermissionName = Annotated[str, StringConstraints(max_length=100)]


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: RoleName
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    permissions: list[PermissionName] = Field(default_factory=list, max_length=200)


class RoleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: RoleName | None = None
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    permissions: list[PermissionName] | None = Field(default=None, max_length=200)


class RoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    permissions: list[str] = Field(default_factory=list)
    created_at: datetime | None = None


class PermissionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None


class AuditEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int | None
    action_type: str
    entity_type: str | None
    entity_id: int | None
    ip_address: str | None
    details: str | None
    status: str
    created_at: datetime | None
