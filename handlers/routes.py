"""Every route of the server, installed in one place."""

from __future__ import annotations

from aiohttp import web

from handlers import (
    audit,
    auth,
    batches,
    content_items,
    content_types,
    delivery,
    documents,
    health,
    jobs,
    metrics,
    notifications,
    openapi,
    pages,
    roles,
    schedules,
    sites,
    taxonomy,
    users,
    versions,
    workers_admin,
    ws_tickets,
)
from handlers.api import Api

# Handler modules declaring REST endpoints; their order is the order of the OpenAPI document.
ROUTE_TABLES = (
    auth,
    users,
    roles,
    sites,
    audit,
    content_types,
    taxonomy,
    content_items,
    versions,
    schedules,
    delivery,
    documents,
    ws_tickets,
    notifications,
    jobs,
    batches,
    workers_admin,
)


def build_api() -> Api:
    return Api(*(module.routes for module in ROUTE_TABLES))


def setup(app: web.Application) -> None:
    health.setup(app)
    metrics.setup(app)
    pages.setup(app)
    build_api().register(app)
    openapi.setup(app)
