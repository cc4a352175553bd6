"""REST for content types."""

from __future__ import annotations

from handlers.api import Routes

routes = Routes("content types")
