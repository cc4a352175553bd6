"""REST for notifications: one's own list, reads and preferences; templates, categories, sending.

Own notifications and preferences need only an account. Templates and categories need
`notifications.manage`; sending needs `notifications.send`; worker notifications need
`workers.manage`. Live pushes (new notifications, read state, counts) happen after commit.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa

from handlers import keys
from handlers.api import Call, Routes
from realtime_cms.errors import Invalid
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.notifications import (
    Notification,
    NotificationCategory,
    NotificationTemplate,
)
from realtime_cms.models.workers import WorkerNotification
from realtime_cms.notifications import categories, preferences, reads, templates
from realtime_cms.notifications.owner import require_user
from realtime_cms.notifications.schemas import (
    NotificationCategoryCreate,
    NotificationCategoryOut,
    NotificationCategoryUpdate,
    NotificationOut,
    PreferenceOut,
    PreferencesPut,
    ReadAllOut,
    ReadIn,
    ReadOut,
    SendIn,
    SendOut,
    TemplateCreate,
    TemplateOut,
    TemplateUpdate,
    UnreadOut,
    WorkerNotificationOut,
)
from realtime_cms.notifications.service import notify, user_ids_for

routes = Routes("notifications")

NOTIFICATIONS = "/api/v1/notifications"
TEMPLATES = "/api/v1/notification-templates"
TEMPLATE = TEMPLATES + "/{template_id:\\d+}"
CATEGORIES = "/api/v1/notification-categories"
CATEGORY = CATEGORIES + "/{category_id:\\d+}"

NOTIFICATION_LISTING = Listing(
    fields={
        "id": Field(Notification.id, int),
        "category_id": Field(Notification.category_id, int),
        "type": Field(Notification.type),
        "is_read": Field(Notification.is_read, bool),
        "created_at": Field(Notification.created_at, datetime),
    },
    default_sort="-id",
    extra_params=frozenset({"unread", "after_id"}),
)
TEMPLATE_LISTING = Listing(
    fields={
        "id": Field(NotificationTemplate.template_id, int),
        "name": Field(NotificationTemplate.name),
        "type": Field(NotificationTemplate.type),
    },
    default_sort="id",
)
CATEGORY_LISTING = Listing(
    fields={
        "id": Field(NotificationCategory.id, int),
        "name": Field(NotificationCategory.name),
        "is_system": Field(NotificationCategory.is_system, bool),
    },
    default_sort="id",
)
WORKER_LISTING = Listing(
    fields={
        "id": Field(WorkerNotification.id, int),
        "worker_id": Field(WorkerNotification.worker_id),
        "type": Field(WorkerNotification.type),
        "priority": Field(WorkerNotification.priority, int),
        "batch_id": Field(WorkerNotification.batch_id),
        "processed_at": Field(WorkerNotification.processed_at, datetime),
        "created_at": Field(WorkerNotification.created_at, datetime),
    },
    default_sort="id",
)


def _push_read(call: Call, ids: list[int] | None, unread: dict[str, Any]) -> None:
    hub = call.app[keys.NOTIFIER].hub
    user_id = require_user(call.principal)
    if hub is not None:
        call.after_commit.append(partial(reads.push_read, hub, user_id, ids, unread))


def _flag(name: str, raw: str) -> bool:
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise Invalid(f"{name} must be true or false", code="invalid_query")


def _cursor(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise Invalid("after_id must be a notification id", code="invalid_query")
    return int(raw)


# --- one's own notifications ------------------------------------------------------------------


@routes.get(
    NOTIFICATIONS,
    "List your notifications",
    response=NotificationOut,
    listing=NOTIFICATION_LISTING,
)
async def list_notifications(call: Call) -> Page[dict[str, Any]]:
    """Newest first. `unread=true|false` filters on read state; `after_id` is a cursor:
    only notifications with a higher id, oldest first unless `sort` says otherwise."""
    query = call.query
    assert query is not None
    where = [Notification.user_id == require_user(call.principal)]
    if "unread" in query.extra:
        unread = _flag("unread", query.extra["unread"])
        where.append(reads.UNREAD if unread else Notification.is_read.is_(True))
    if "after_id" in query.extra:
        where.append(Notification.id > _cursor(query.extra["after_id"]))
        if "sort" not in call.request.query:
            query.sort = [("id", False)]
    page = await query.fetch(call.db, sa.select(Notification), *where)
    items = await reads.as_json(call.db, list(page.items))
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


@routes.get(NOTIFICATIONS + "/unread-counts", "Count your unread notifications", response=UnreadOut)
async def get_unread_counts(call: Call) -> dict[str, Any]:
    """In total and per category (`none` for uncategorised)."""
    return await reads.unread_counts(call.db, call.principal)


@routes.get(
    NOTIFICATIONS + "/{notification_id:\\d+}",
    "Read one of your notifications",
    response=NotificationOut,
)
async def get_notification(call: Call) -> dict[str, Any]:
    """Counts a view (`view_count`, `last_viewed_at`); it does not mark it read."""
    return await reads.view(call.db, call.principal, call.path_int("notification_id"))


@routes.post(NOTIFICATIONS + "/read", "Mark notifications read", body=ReadIn, response=ReadOut)
async def mark_notifications_read(call: Call) -> dict[str, Any]:
    """`read` lists the ids that were unread until now; others' ids are ignored."""
    body: ReadIn = call.body
    done = await reads.mark_read(call.db, call.principal, ids=body.ids)
    unread = await reads.unread_counts(call.db, call.principal)
    _push_read(call, done, unread)
    return {"read": done, "unread": unread}


@routes.post(NOTIFICATIONS + "/read-all", "Mark all your notifications read", response=ReadAllOut)
async def mark_all_notifications_read(call: Call) -> dict[str, Any]:
    count = await reads.mark_all_read(call.db, call.principal)
    unread = await reads.unread_counts(call.db, call.principal)
    _push_read(call, None, unread)
    return {"count": count, "unread": unread}


@routes.get(
    "/api/v1/notification-preferences", "Read your notification preferences", response=PreferenceOut
)
async def get_notification_preferences(call: Call) -> Page[PreferenceOut]:
    """Your default (`category_id` null) and the preference in effect for every category."""
    found = await preferences.list_preferences(call.db, call.principal)
    return Page(items=found, total=len(found), limit=len(found), offset=0)


@routes.put(
    "/api/v1/notification-preferences",
    "Change your notification preferences",
    body=PreferencesPut,
    response=PreferenceOut,
)
async def put_notification_preferences(call: Call) -> Page[PreferenceOut]:
    """Sets the categories listed (null: your default). System categories cannot be muted."""
    body: PreferencesPut = call.body
    found = await preferences.put_preferences(call.db, call.principal, body.preferences)
    return Page(items=found, total=len(found), limit=len(found), offset=0)


@routes.post(
    NOTIFICATIONS + "/send",
    "Send a notification",
    permission="notifications.send",
    body=SendIn,
    response=SendOut,
)
async def send_notification(call: Call) -> dict[str, int]:
    """A template (name or id) with its `context`, or a `title` and `message`, to `user_ids`
    and/or `usernames`, under an optional category. Nothing is stored if any recipient's
    rendering fails."""
    body: SendIn = call.body
    users = await user_ids_for(call.db, body.user_ids, body.usernames)
    result = await notify(
        call.db,
        call.principal,
        users=users,
        template=body.template,
        title=body.title,
        message=body.message,
        context=body.context,
        category_id=body.category_id,
        type=body.type,
    )
    return {
        "recipients": result.recipients,
        "stored": len(result.deliveries),
        "queued": result.queued,
        "emails": result.emails,
    }


# --- templates ---------------------------------------------------------------------------------


@routes.get(
    TEMPLATES,
    "List notification templates",
    permission="notifications.manage",
    response=TemplateOut,
    listing=TEMPLATE_LISTING,
)
async def list_notification_templates(call: Call) -> Page[NotificationTemplate]:
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(NotificationTemplate))


@routes.post(
    TEMPLATES,
    "Create a notification template",
    permission="notifications.manage",
    body=TemplateCreate,
    response=TemplateOut,
    status=201,
)
async def create_notification_template(call: Call) -> NotificationTemplate:
    """The subject and body are checked: syntax (`template_syntax`), internals
    (`template_unsafe`) and undeclared variables (`template_undeclared_variables`)."""
    body: TemplateCreate = call.body
    return await templates.create_template(call.db, call.principal, **body.model_dump())


@routes.get(
    TEMPLATE,
    "Read a notification template",
    permission="notifications.manage",
    response=TemplateOut,
)
async def get_notification_template(call: Call) -> NotificationTemplate:
    return await templates.get_template(call.db, call.principal, call.path_int("template_id"))


@routes.patch(
    TEMPLATE,
    "Change a notification template",
    permission="notifications.manage",
    body=TemplateUpdate,
    response=TemplateOut,
)
async def update_notification_template(call: Call) -> NotificationTemplate:
    body: TemplateUpdate = call.body
    return await templates.update_template(
        call.db, call.principal, call.path_int("template_id"), **body.model_dump()
    )


@routes.delete(TEMPLATE, "Delete a notification template", permission="notifications.manage")
async def delete_notification_template(call: Call) -> None:
    await templates.delete_template(call.db, call.principal, call.path_int("template_id"))


# --- categories --------------------------------------------------------------------------------


@routes.get(
    CATEGORIES,
    "List notification categories",
    permission="notifications.manage",
    response=NotificationCategoryOut,
    listing=CATEGORY_LISTING,
)
async def list_notification_categories(call: Call) -> Page[NotificationCategory]:
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(NotificationCategory))


@routes.post(
    CATEGORIES,
    "Create a notification category",
    permission="notifications.manage",
    body=NotificationCategoryCreate,
    response=NotificationCategoryOut,
    status=201,
)
async def create_notification_category(call: Call) -> NotificationCategory:
    body: NotificationCategoryCreate = call.body
    return await categories.create_category(call.db, call.principal, **body.model_dump())


@routes.get(
    CATEGORY,
    "Read a notification category",
    permission="notifications.manage",
    response=NotificationCategoryOut,
)
async def get_notification_category(call: Call) -> NotificationCategory:
    return await categories.get_category(call.db, call.principal, call.path_int("category_id"))


@routes.patch(
    CATEGORY,
    "Change a notification category",
    permission="notifications.manage",
    body=NotificationCategoryUpdate,
    response=NotificationCategoryOut,
)
async def update_notification_category(call: Call) -> NotificationCategory:
    body: NotificationCategoryUpdate = call.body
    return await categories.update_category(
        call.db, call.principal, call.path_int("category_id"), **body.model_dump()
    )


@routes.delete(CATEGORY, "Delete a notification category", permission="notifications.manage")
async def delete_notification_category(call: Call) -> None:
    """System categories cannot be deleted (409 `category_is_system`)."""
    await categories.delete_category(call.db, call.principal, call.path_int("category_id"))


# --- worker notifications ----------------------------------------------------------------------


@routes.get(
    "/api/v1/worker-notifications",
    "List worker notifications",
    permission="workers.manage",
    response=WorkerNotificationOut,
    listing=WORKER_LISTING,
)
async def list_worker_notifications(call: Call) -> Page[WorkerNotification]:
    assert call.query is not None
    return await call.query.fetch(call.db, sa.select(WorkerNotification))
