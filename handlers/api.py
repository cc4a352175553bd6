"""REST plumbing: route declarations, input validation, the edge transaction, JSON envelopes.

Handler modules declare endpoints on a `Routes` table (like aiohttp's RouteTableDef) with
what OpenAPI and the gatekeeping need to know: permission, body and response models, and
the collection's `Listing`. `Api.register` installs one wrapper per endpoint that
authenticates, authorizes, validates the query and body, opens the transaction, and
renders `{"data": ..., "meta": ...}`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from handlers import keys
from handlers.auth_context import check_csrf, principal_for
from realtime_cms.db import transaction
from realtime_cms.errors import (
    Conflict,
    Invalid,
    NotFound,
    Unauthorized,
    Unprocessable,
    UnsupportedMediaType,
)
from realtime_cms.listing import Listing, ListQuery, Page, parse_listing
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize

Handler = Callable[["Call"], Awaitable[Any]]
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@dataclass(slots=True)
class Call:
    """Everything a handler gets: the validated inputs, the principal and the DB session."""

    request: web.Request
    principal: Principal
    db: AsyncSession
    body: Any = None
    query: ListQuery | None = None
    params: Any = None
    after: list[Callable[[web.StreamResponse], None]] = field(default_factory=list)
    # Awaited in order once the transaction has committed (effects of a durable change).
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @property
    def app(self) -> web.Application:
        return self.request.app

    def path_int(self, name: str) -> int:
        """A numeric path segment (routes constrain it to digits)."""
        raw = self.request.match_info[name]
        value = int(raw)
        if value > 2**63 - 1:
            raise NotFound(f"No such {name.removesuffix('_id')}")
        return value

    def path_str(self, name: str) -> str:
        return self.request.match_info[name]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One REST operation and everything needed to gate, validate and document it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    permission: str | None = None
    public: bool = False
    body: type[BaseModel] | None = None
    # The handler reads `call.request` itself (e.g. application/octet-stream); no JSON checks.
    raw_body: bool = False
    response: type[BaseModel] | None = None
    # The handler answers application/octet-stream itself (documented as binary).
    raw_response: bool = False
    listing: Listing | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    description: str = ""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


class Routes:
    """A table of endpoints declared with decorators in one handler module."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.endpoints: list[Endpoint] = []

    def route(
        self, method: str, path: str, summary: str, **options: Any
    ) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            description = (handler.__doc__ or "").strip()
            options.setdefault("tag", self.tag)
            self.endpoints.append(
                Endpoint(method, path, handler, summary, description=description, **options)
            )
            return handler

        return decorate

    def get(self, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("GET", path, summary, **options)

    def post(self, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("POST", path, summary, **options)

    def patch(self, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("PATCH", path, summary, **options)

    def put(self, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("PUT", path, summary, **options)

    def delete(self, path: str, summary: str, **options: Any) -> Callable[[Handler], Handler]:
        return self.route("DELETE", path, summary, **options)


class Api:
    """Every endpoint of the REST API, installed on an aiohttp application."""

    def __init__(self, *tables: Routes) -> None:
        self.endpoints = [endpoint for table in tables for endpoint in table.endpoints]

    def register(self, app: web.Application) -> None:
        for endpoint in self.endpoints:
            app.router.add_route(endpoint.method, endpoint.path, _wrap(endpoint))
        app[API_KEY] = self


API_KEY = web.AppKey("api", Api)


def _wrap(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def view(request: web.Request) -> web.StreamResponse:
        principal = await principal_for(request)
        if not endpoint.public:
            if not principal.is_authenticated:
                raise Unauthorized(
                    "Sign in or send a bearer token", headers={"WWW-Authenticate": "Bearer"}
                )
            check_csrf(request)
            if endpoint.permission:
                authorize(principal, endpoint.permission)
        listing, params = _parse_query(endpoint, request)
        body = await _parse_body(endpoint, request)
        try:
            async with transaction(request.app[keys.SESSIONS]) as db:
                call = Call(request, principal, db, body=body, query=listing, params=params)
                result = await endpoint.handler(call)
                response = _render(endpoint, result)
        except IntegrityError as exc:
            # A uniqueness or reference check lost a race with a concurrent writer.
            raise Conflict(
                "The change conflicts with existing data", code="integrity_conflict"
            ) from exc
        for effect in call.after_commit:
            await effect()
        for hook in call.after:
            hook(response)
        return response

    view.__name__ = endpoint.operation_id
    return view


def _parse_query(endpoint: Endpoint, request: web.Request) -> tuple[ListQuery | None, Any]:
    items = list(request.query.items())
    if endpoint.listing is not None:
        return parse_listing(endpoint.listing, items), None
    if endpoint.query is not None:
        names = [name for name, _ in items]
        if len(names) != len(set(names)):
            raise Invalid("A query parameter was given more than once", code="invalid_query")
        return None, _validate(endpoint.query, dict(items), "query")
    if items:
        raise Invalid(f"Unknown query parameter {items[0][0]!r}", code="invalid_query")
    return None, None


async def _parse_body(endpoint: Endpoint, request: web.Request) -> Any:
    if endpoint.raw_body:
        return None
    raw = await request.read() if request.can_read_body else b""
    if endpoint.body is None:
        if raw.strip():
            raise Invalid("This endpoint takes no request body", code="unexpected_body")
        return None
    if not raw.strip():
        # An absent body is an empty object: models with only optional fields accept it.
        return _validate(endpoint.body, {}, "body")
    if request.method in _BODY_METHODS and request.content_type != "application/json":
        raise UnsupportedMediaType("Send the body as application/json")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Invalid(f"Malformed JSON body: {exc}", code="invalid_json") from exc
    # JSON carries U+0000 only escaped (or in a UTF-16/32 body, whose bytes hold NULs), so
    # other bodies need no walk.
    if b"\\u0000" in raw or b"\x00" in raw:
        _refuse_nul(data)
    return _validate(endpoint.body, data, "body")


def _nul_paths(data: Any) -> list[tuple[str, ...]]:
    """Where `data` (parsed JSON) holds a NUL character, in keys or string values, in order."""
    found: list[tuple[str, ...]] = []
    # A stack, not recursion: json.loads accepts nesting as deep as the recursion limit.
    stack: list[tuple[tuple[str, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                found.append(path)
        elif isinstance(value, dict):
            # A key with a NUL is reported as its own value would be: in place of it.
            items = [((*path, k), "\x00" if "\x00" in k else v) for k, v in value.items()]
            stack.extend(reversed(items))
        elif isinstance(value, list):
            stack.extend(reversed([((*path, str(i)), item) for i, item in enumerate(value)]))
    return found


def _refuse_nul(data: Any) -> None:
    """Unprocessable naming every field holding U+0000, whatever the endpoint and backend:
    text stored with one ends early for C-string tools and clients, and sorts and compares
    unlike what it shows, so no text received over REST may carry one."""
    paths = _nul_paths(data)
    if paths:
        message = "must not contain NUL characters (U+0000)"
        errors = [
            {"loc": ["body", *path], "message": message, "type": "nul_character"} for path in paths
        ]
        raise Unprocessable("The body did not validate", errors=errors)


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": [where, *map(str, err["loc"])], "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        raise Unprocessable(f"The {where} did not validate", errors=errors) from exc


def _dump(model: type[BaseModel] | None, item: Any) -> Any:
    if model is None:
        return item.model_dump(mode="json") if isinstance(item, BaseModel) else item
    return model.model_validate(item, from_attributes=True).model_dump(mode="json")


def _render(endpoint: Endpoint, result: Any) -> web.StreamResponse:
    if isinstance(result, web.StreamResponse):
        return result
    if result is None:
        return web.Response(status=204)
    if isinstance(result, Page):
        payload: dict[str, Any] = {
            "data": [_dump(endpoint.response, item) for item in result.items],
            "meta": {"total": result.total, "limit": result.limit, "offset": result.offset},
        }
    else:
        payload = {"data": _dump(endpoint.response, result)}
    return web.json_response(payload, status=endpoint.status)
