"""Candidate fixes, applied by `server.py` (SOAK_PATCH=<name>) to measure them in a soak
before they land in a file this harness does not own. Empty until a fix needs one."""

from __future__ import annotations

from collections.abc import Callable

PATCHES: dict[str, Callable[[], None]] = {}


def apply(name: str) -> None:
    """Apply the named patch; an unknown name stops the server before it starts."""
    if name not in PATCHES:
        raise SystemExit(f"soak: no patch {name!r} (known: {', '.join(PATCHES) or 'none'})")
    PATCHES[name]()
