"""The permission catalog and the default roles seeded into every installation."""

from __future__ import annotations

from types import MappingProxyType

# Every permission the server checks, with the description stored in `permissions`.
PERMISSIONS: MappingProxyType[str, str] = MappingProxyType(
    {
        "users.view": "List and read user accounts",
        "users.manage": "Create, change, deactivate and delete user accounts",
        "roles.manage": "Create and change roles, their permissions and role grants",
        "sites.view": "List and read sites",
        "sites.manage": "Create, change and delete sites and site membership",
        "audit.view": "Read the audit log",
        "settings.manage": "Change server settings",
        "content.view": "Read content items, including drafts",
        "content.create": "Create content items",
        "content.update": "Change any content item",
        "content.update.own": "Change content items one authored",
        "content.delete": "Delete any content item",
        "content.delete.own": "Delete content items one authored",
        "content.publish": "Publish, schedule, archive and expire content items",
        "content_types.manage": "Create and change content types and custom fields",
        "taxonomy.manage": "Create and change categories and tags",
        "media.upload": "Upload media",
        "media.manage": "Change and delete any media",
        "versions.view": "Read version history",
        "versions.restore": "Restore versions",
        "documents.admin": "Administer every live document's permissions",
        "schedules.manage": "Schedule publishing and expiry",
        "workflows.manage": "Define workflows, states, triggers and actions",
        "workers.view": "Read the job worker processes, their health and activity",
        "workers.manage": "Manage workers, jobs, alerts and scaling rules",
        "jobs.view": "Read background jobs, queues and job types (secret payload fields hidden)",
        "jobs.manage": "Enqueue operator job types; retry, cancel and discard background jobs",
        "analytics.view": "Read analytics",
        "federation.manage": "Manage federation nodes and distribution",
        "clients.manage": "Manage clients",
        "notifications.manage": "Manage notification templates and categories",
        "notifications.send": "Send notifications to users (integrations)",
    }
)

# Scopes an API token may carry besides permissions. They are no permissions (no role holds
# them, any user may put them on their own token): they cap the token's level on live
# documents, which a token without any of them (or `documents.admin`) cannot reach at all.
TOKEN_SCOPES: MappingProxyType[str, str] = MappingProxyType(
    {
        "documents.read": "Read the live documents the owner may read (level read at most)",
        "documents.write": "Read and change the live documents the owner may (level write at most)",
    }
)

_EDITOR = frozenset(
    {
        "users.view",
        "sites.view",
        "content.view",
        "content.create",
        "content.update",
        "content.update.own",
        "content.delete",
        "content.delete.own",
        "content.publish",
        "taxonomy.manage",
        "media.upload",
        "media.manage",
        "versions.view",
        "versions.restore",
        "schedules.manage",
        "analytics.view",
    }
)
_AUTHOR = frozenset(
    {
        "sites.view",
        "content.view",
        "content.create",
        "content.update.own",
        "content.delete.own",
        "media.upload",
        "versions.view",
    }
)
_VIEWER = frozenset({"sites.view", "content.view", "versions.view"})

# name -> (description, permissions). `admin` holds every permission in the catalog.
DEFAULT_ROLES: MappingProxyType[str, tuple[str, frozenset[str]]] = MappingProxyType(
    {
        "admin": ("Administers the installation: every permission", frozenset(PERMISSIONS)),
        "editor": ("Edits, publishes and organises all content", _EDITOR),
        "author": ("Writes and edits their own content", _AUTHOR),
        "viewer": ("Reads content and its history", _VIEWER),
    }
)
