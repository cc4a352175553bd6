"""Request and response shapes for authentication, API tokens and user administration."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    model_validator,
)

Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$"
    ),
]
Email = Annotated[EmailStr, StringConstraints(max_length=100)]
# Length is checked by the password policy, which gives one clear message for every path.
Password = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
PersonName = Annotated[str, StringConstraints(strip_whitespace=True, max_length=50)]
OpaqueToken = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
SiteRef = Annotated[StrictInt, Field(ge=1)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoginIn(_Request):
    login: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=254)]
    password: Password
    remember: StrictBool = False


class RememberIn(_Request):
    """The remember-me token, from the body or (when absent) the remember cookie."""

    token: OpaqueToken | None = None

    @model_validator(mode="before")
    @classmethod
    def _empty_body(cls, data: Any) -> Any:
        return {} if data is None else data


class PasswordChangeIn(_Request):
    current_password: Password
    new_password: Password


class PasswordSetIn(_Request):
    password: Password


class ResetRequestIn(_Request):
    email: Email


class ResetConfirmIn(_Request):
    token: OpaqueToken
    password: Password


class TokenIn(_Request):
    token: OpaqueToken


_SCOPES = (
    "What the token may do. Permission names you hold (the token gets only these of your "
    "permissions), and `documents.read` / `documents.write`, which any user may add: they cap "
    "the token's level on live documents at read / write (`documents.admin`, a permission, "
    "at admin). A token with none of the three reaches no live document, whatever grants "
    "and roles give its owner."
)


class ApiTokenCreate(_Request):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    scopes: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        min_length=1, max_length=100, description=_SCOPES
    )
    expires_at: AwareDatetime | None = None


class UserCreate(_Request):
    username: Username
    email: Email
    password: Password
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    site_id: SiteRef | None = None
    is_active: StrictBool = True
    roles: list[Annotated[str, StringConstraints(max_length=50)]] = Field(
        default_factory=list, max_length=50
    )


class UserUpdate(_Request):
    """Only the fields sent are changed; names and site_id may be set to null."""

    username: Username | None = None
    email: Email | None = None
    first_name: PersonName | None = None
    last_name: PersonName | None = None
    site_id: SiteRef | None = None
    is_active: StrictBool | None = None


class UserOut(BaseModel):
    """A user as the API shows it: never the password hash or reset token."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str
    first_name: str | None
    last_name: str | None
    site_id: int | None
    is_active: bool
    last_login: datetime | None
    email_verified_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class LoginOut(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime
    user: UserOut
    remember_token: str | None = None
    remember_expires_at: datetime | None = None


class MeOut(BaseModel):
    user: UserOut
    roles: list[str]
    permissions: list[str]


class AcceptedOut(BaseModel):
    message: str


class UserRoleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None


class ApiTokenOut(BaseModel):
    """An API token as listed: its prefix, never the token or its hash."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[str] = Field(description=_SCOPES)
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime | None


class ApiTokenCreated(ApiTokenOut):
    """The answer to creating a token: the only time the token itself is shown."""

    token: str
