"""A hang reporter: a test still running after `LIMIT_SECONDS` gets every pending asyncio
task's stack printed (where each coroutine waits, which faulthandler cannot show), then the
process gets SIGINT, so a hang ends the run with its cause instead of timing CI out."""

from __future__ import annotations

import asyncio
import gc
import io
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# The slowest test (tests/collab/test_kill9.py) takes under 5 minutes on a loaded machine.
LIMIT_SECONDS = float(os.environ.get("RCMS_TEST_HANG_SECONDS", "900"))
# The real stderr, duplicated before output capture replaces fd 2 (set by `keep_stderr`).
_STDERR: list[int] = []


def keep_stderr() -> None:
    if not _STDERR:
        _STDERR.append(os.dup(2))


def _report(nodeid: str) -> None:
    text = io.StringIO()
    print(f"\n=== HANG: {nodeid} still running after {LIMIT_SECONDS:.0f} s", file=text)
    tasks = [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]
    for task in tasks:
        print(f"--- {task!r}", file=text)
        task.print_stack(limit=12, file=text)
    os.write(_STDERR[0] if _STDERR else 2, text.getvalue().encode(errors="replace"))
    os.kill(os.getpid(), signal.SIGINT)


@contextmanager
def watched(nodeid: str) -> Iterator[None]:
    timer = threading.Timer(LIMIT_SECONDS, _report, args=(nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
