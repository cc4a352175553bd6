"""`realtime-cms worker --autoscale MIN:MAX`: child worker processes that follow the rules.

On one machine, without Kubernetes and KEDA, this supervisor evaluates the scaling rules
(realtime_cms/jobs/scaling.py) every `INTERVAL_SECONDS` and keeps between MIN and MAX
`realtime-cms worker` children running: it starts children at once when more are asked for
(or when one died), and stops the newest with SIGTERM (a graceful stop) only after fewer
were asked for `COOLDOWN_ROUNDS` rounds in a row, so a queue that drains and refills does
not make workers come and go. The supervisor runs no jobs itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from realtime_cms.config import Settings
from realtime_cms.db import create_engine, session_factory
from realtime_cms.jobs.scaling import desired_workers
from realtime_cms.models.base import utcnow

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 15.0
COOLDOWN_ROUNDS = 4


def parse_bounds(raw: str) -> tuple[int, int]:
    """`MIN:MAX` (0 <= MIN <= MAX, MAX >= 1) as two numbers; ValueError otherwise."""
    low, sep, high = raw.partition(":")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ValueError("give the bounds as MIN:MAX, e.g. 1:4")
    minimum, maximum = int(low), int(high)
    if minimum > maximum or maximum < 1 or maximum > 64:
        raise ValueError("need 0 <= MIN <= MAX, 1 <= MAX <= 64")
    return minimum, maximum


class Supervisor:
    """Keeps the number of child workers at the clamped desired count."""

    def __init__(
        self,
        settings: Settings,
        bounds: tuple[int, int],
        child_args: Sequence[str],
        *,
        interval: float = INTERVAL_SECONDS,
    ) -> None:
        self.settings = settings
        self.minimum, self.maximum = bounds
        self._child_args = list(child_args)
        self._interval = interval
        self.children: list[asyncio.subprocess.Process] = []
        self._lower_rounds = 0

    async def run(self, stop: asyncio.Event) -> None:
        engine = create_engine(self.settings.database_url, pool_size=1)
        sessions = session_factory(engine)
        try:
            while not stop.is_set():
                try:
                    async with sessions() as db:
                        decision = await desired_workers(db, utcnow())
                    await self.follow(decision.desired)
                except Exception:  # the database away: keep the children, ask again later
                    log.exception("autoscale: evaluating the scaling rules failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._interval)
        finally:
            await self._stop_all()
            await engine.dispose()

    async def follow(self, desired: int) -> None:
        """One round: reap exited children, then start or (after the cooldown) stop some."""
        self.children = [c for c in self.children if c.returncode is None]
        target = max(self.minimum, min(self.maximum, desired))
        if len(self.children) < target:
            self._lower_rounds = 0
            for _ in range(target - len(self.children)):
                await self._start()
        elif len(self.children) > target:
            self._lower_rounds += 1
            if self._lower_rounds >= COOLDOWN_ROUNDS:
                self._lower_rounds = 0
                for child in self.children[target:]:
                    child.send_signal(signal.SIGTERM)
                self.children = self.children[:target]
        else:
            self._lower_rounds = 0

    async def _start(self) -> None:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "handlers", "worker", *self._child_args
        )
        log.info("autoscale: started worker pid %s (%d running)", child.pid, len(self.children) + 1)
        self.children.append(child)

    async def _stop_all(self) -> None:
        for child in self.children:
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)
        grace = self.settings.job_grace_seconds + 5
        for child in self.children:
            try:
                await asyncio.wait_for(child.wait(), grace)
            except TimeoutError:
                child.kill()
                await child.wait()


async def run(settings: Settings, bounds: tuple[int, int], child_args: Sequence[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await Supervisor(settings, bounds, child_args).run(stop)
