"""REST for websites: the public, unauthenticated delivery of published content."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.accounts.guards import limit_key, throttle
from realtime_cms.content import delivery
from realtime_cms.content.queries import term_field
from realtime_cms.content.schemas import DeliveryItemOut
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.content import ContentItem, ContentType

routes = Routes("delivery")

PASSWORD_HEADER = "X-Content-Password"
SITE_ITEMS = "/api/v1/delivery/sites/{site_id:\\d+}/items"
DELIVERY_LISTING = Listing(
    fields={
        "type": Field(ContentType.slug, operators=("eq", "in")),
        "slug": Field(ContentItem.slug, operators=("eq", "in")),
        "title": Field(ContentItem.title),
        "parent_id": Field(ContentItem.parent_id, int, operators=("eq", "in", "null")),
        "published_at": Field(ContentItem.published_at, datetime),
        "updated_at": Field(ContentItem.updated_at, datetime),
        "id": Field(ContentItem.id, int),
        "category_id": term_field("category_id"),
        "tag_id": term_field("tag_id"),
    },
    default_sort="-published_at,-id",
)


@routes.get(
    SITE_ITEMS,
    "List a site's published items",
    public=True,
    response=DeliveryItemOut,
    listing=DELIVERY_LISTING,
)
async def list_delivered_items(call: Call) -> Page[dict[str, object]]:
    """Published items of an active site whose visibility is public or password.
    Password-protected items are listed with `body`, `excerpt` and `custom_fields` null.
    Filter by type slug with `filter[type]=article`."""
    assert call.query is not None
    return await delivery.list_published(
        call.db, site_id=call.path_int("site_id"), query=call.query
    )


@routes.get(
    f"{SITE_ITEMS}/{{type_slug}}/{{slug}}",
    "Read a published item by slug",
    public=True,
    response=DeliveryItemOut,
)
async def get_delivered_item(call: Call) -> dict[str, object]:
    """A password-protected item needs the `X-Content-Password` header: missing is
    `401 content_password_required`, wrong is `403 content_password_invalid` (attempts are
    rate limited per client address and site). Anything not delivered is `404`."""
    site_id = call.path_int("site_id")
    password = call.request.headers.get(PASSWORD_HEADER)
    if password is not None:
        settings = call.app[keys.SETTINGS]
        key = limit_key("content-password", f"{site_id}:{call.principal.ip}")
        await throttle(
            call.app[keys.RATE_LIMITER],
            settings.rate_limit_window_seconds,
            (key, settings.login_ip_rate_limit),
            message="Too many password attempts; try again later",
        )
    item = await delivery.get_published(
        call.db,
        call.app[keys.PASSWORDS],
        site_id=site_id,
        type_slug=call.path_str("type_slug"),
        slug=call.path_str("slug"),
        password=password,
    )
    call.after.append(_no_store if item["password_protected"] else _shared)
    return item


def _shared(response: web.StreamResponse) -> None:
    response.headers["Cache-Control"] = "public, max-age=60"


def _no_store(response: web.StreamResponse) -> None:
    response.headers["Cache-Control"] = "private, no-store"
