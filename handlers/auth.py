"""REST for signing in and out, one's own account, password recovery and personal API tokens."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from handlers import keys
from handlers.api import Call, Routes
from handlers.auth_context import REMEMBER_COOKIE, SESSION_COOKIE
from realtime_cms.accounts import api_tokens, recovery, remember, service, signin
from realtime_cms.accounts.remember import SignIn
from realtime_cms.accounts.schemas import (
    AcceptedOut,
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenOut,
    LoginIn,
    LoginOut,
    MeOut,
    PasswordChangeIn,
    RememberIn,
    ResetConfirmIn,
    ResetRequestIn,
    TokenIn,
    UserOut,
)
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.auth import ApiToken

routes = Routes("auth")

# The remember-me cookie only travels to the endpoints that use it (exchange and logout).
REMEMBER_PATH = "/api/v1/auth"
TOKEN_LISTING = Listing(
    fields={
        "id": Field(ApiToken.id, int),
        "name": Field(ApiToken.name),
        "created_at": Field(ApiToken.created_at, datetime),
        "expires_at": Field(ApiToken.expires_at, datetime),
        "last_used_at": Field(ApiToken.last_used_at, datetime),
        "revoked_at": Field(ApiToken.revoked_at, datetime),
    },
    default_sort="id",
)


def _signed_in(call: Call, result: SignIn) -> LoginOut:
    """The sign-in answer; the same tokens also go into HttpOnly cookies for browsers."""
    settings = call.app[keys.SETTINGS]

    def set_cookies(response: web.StreamResponse) -> None:
        secure = settings.cookie_secure
        response.set_cookie(
            SESSION_COOKIE, result.token, path="/", httponly=True, samesite="Lax", secure=secure
        )
        if result.remember_token:
            response.set_cookie(
                REMEMBER_COOKIE,
                result.remember_token,
                path=REMEMBER_PATH,
                max_age=settings.remember_ttl_days * 86_400,
                httponly=True,
                samesite="Lax",
                secure=secure,
            )

    call.after.append(set_cookies)
    return LoginOut(
        token=result.token,
        expires_at=result.expires_at,
        user=UserOut.model_validate(result.user),
        remember_token=result.remember_token,
        remember_expires_at=result.remember_expires_at,
    )


def _clear_cookies(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/")
    response.del_cookie(REMEMBER_COOKIE, path=REMEMBER_PATH)


def _origin(call: Call) -> str:
    return recovery.link_base(
        call.app[keys.SETTINGS], f"{call.request.scheme}://{call.request.host}"
    )


@routes.post("/api/v1/auth/login", "Sign in", public=True, body=LoginIn, response=LoginOut)
async def login(call: Call) -> LoginOut:
    """Sign in with a username or email; answers a bearer token and sets the session cookie."""
    body: LoginIn = call.body
    app = call.app
    result = await signin.login(
        call.db,
        app[keys.PASSWORDS],
        app[keys.RATE_LIMITER],
        app[keys.SETTINGS],
        login=body.login,
        password=body.password,
        remember=body.remember,
        ip=call.principal.ip,
        user_agent=call.principal.user_agent,
    )
    return _signed_in(call, result)


@routes.post("/api/v1/auth/logout", "Sign out")
async def logout(call: Call) -> None:
    """End this session, forget this client's remember-me token and clear the cookies."""
    await signin.logout(
        call.db, call.principal, remember_token=call.request.cookies.get(REMEMBER_COOKIE)
    )
    call.after.append(_clear_cookies)


@routes.post("/api/v1/auth/logout-everywhere", "Sign out everywhere")
async def logout_everywhere(call: Call) -> None:
    """End every session and remember-me token of yours, this one included, revoke your API
    tokens and clear the cookies; your live connections close at once."""
    await signin.logout_everywhere(call.db, call.principal)
    call.after.append(_clear_cookies)


@routes.get("/api/v1/auth/me", "Who am I", response=MeOut)
async def me(call: Call) -> MeOut:
    """The signed-in user, their roles and the permissions in effect for this credential."""
    user = await service.current_user(call.db, call.principal)
    return MeOut(
        user=UserOut.model_validate(user),
        roles=sorted(call.principal.roles),
        permissions=sorted(call.principal.permissions),
    )


@routes.post(
    "/api/v1/auth/remember",
    "Resume with a remember-me token",
    public=True,
    body=RememberIn,
    response=LoginOut,
)
async def resume(call: Call) -> LoginOut:
    """Trade a remember-me token (body or cookie) for a new session and remember-me token."""
    body: RememberIn = call.body
    result = await remember.exchange(
        call.db,
        call.app[keys.SETTINGS],
        token=body.token or call.request.cookies.get(REMEMBER_COOKIE),
        ip=call.principal.ip,
        user_agent=call.principal.user_agent,
    )
    return _signed_in(call, result)


@routes.post("/api/v1/auth/password", "Change my password", body=PasswordChangeIn)
async def change_password(call: Call) -> None:
    """Change one's password; other sessions, remember-me and API tokens are revoked."""
    body: PasswordChangeIn = call.body
    app = call.app
    await service.change_password(
        call.db,
        app[keys.PASSWORDS],
        app[keys.RATE_LIMITER],
        app[keys.SETTINGS],
        call.principal,
        current_password=body.current_password,
        new_password=body.new_password,
    )


@routes.post(
    "/api/v1/auth/password-reset",
    "Request a password reset",
    public=True,
    body=ResetRequestIn,
    response=AcceptedOut,
    status=202,
)
async def request_reset(call: Call) -> AcceptedOut:
    """Mail a reset link; the answer is the same whether or not the email belongs to an account.

    It comes at once: the account is looked up, and the link mailed, by a job after it."""
    body: ResetRequestIn = call.body
    app = call.app
    await recovery.request_reset(
        call.db,
        app[keys.RATE_LIMITER],
        app[keys.SETTINGS],
        call.principal,
        email=body.email,
        base_url=_origin(call),
    )
    return AcceptedOut(message=recovery.RESET_ACCEPTED)


@routes.post(
    "/api/v1/auth/password-reset/confirm",
    "Set a new password with a reset token",
    public=True,
    body=ResetConfirmIn,
)
async def confirm_reset(call: Call) -> None:
    body: ResetConfirmIn = call.body
    await recovery.confirm_reset(
        call.db,
        call.app[keys.PASSWORDS],
        call.principal,
        token=body.token,
        new_password=body.password,
    )


@routes.post(
    "/api/v1/auth/verify-email", "Send an email verification link", response=AcceptedOut, status=202
)
async def request_verification(call: Call) -> AcceptedOut:
    """Mail the signed-in user a verification link; the answer does not wait for the mail."""
    app = call.app
    await recovery.request_verification(
        call.db, app[keys.RATE_LIMITER], app[keys.SETTINGS], call.principal, base_url=_origin(call)
    )
    return AcceptedOut(message="A verification link is being sent to your email address")


@routes.post(
    "/api/v1/auth/verify-email/confirm", "Confirm an email address", public=True, body=TokenIn
)
async def confirm_verification(call: Call) -> None:
    body: TokenIn = call.body
    await recovery.confirm_verification(call.db, call.principal, token=body.token)


@routes.get(
    "/api/v1/auth/tokens", "List my API tokens", response=ApiTokenOut, listing=TOKEN_LISTING
)
async def list_tokens(call: Call) -> Page[ApiToken]:
    assert call.query is not None
    return await api_tokens.list_tokens(call.db, call.principal, call.query)


@routes.post(
    "/api/v1/auth/tokens",
    "Create an API token",
    body=ApiTokenCreate,
    response=ApiTokenCreated,
    status=201,
)
async def create_token(call: Call) -> ApiTokenCreated:
    """Create a token scoped to some of one's permissions; only this answer shows the token."""
    body: ApiTokenCreate = call.body
    token, secret = await api_tokens.create_token(
        call.db, call.principal, name=body.name, scopes=body.scopes, expires_at=body.expires_at
    )
    return ApiTokenCreated(token=secret, **ApiTokenOut.model_validate(token).model_dump())


@routes.delete("/api/v1/auth/tokens/{token_id:\\d+}", "Revoke an API token")
async def revoke_token(call: Call) -> None:
    await api_tokens.revoke_token(call.db, call.principal, call.path_int("token_id"))
