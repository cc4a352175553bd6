"""REST for content."""

from __future__ import annotations

from handlers.api import Routes

routes = Routes("content")
