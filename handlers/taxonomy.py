"""REST for taxonomy."""

from __future__ import annotations

from handlers.api import Routes

routes = Routes("taxonomy")
