"""SQLAlchemy models, one module per seed area; importing this package registers every table."""

from realtime_cms.models import (
    analytics,
    auth,
    clients,
    content,
    misc,
    notifications,
    realtime,
    sites,
    versions,
    workers,
    workflows,
)
from realtime_cms.models.base import Base, use_sqlite_autoincrement

use_sqlite_autoincrement(Base.metadata)

__all__ = [
    "Base",
    "analytics",
    "auth",
    "clients",
    "content",
    "misc",
    "notifications",
    "realtime",
    "sites",
    "versions",
    "workers",
    "workflows",
]
