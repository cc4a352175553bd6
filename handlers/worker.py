"""`realtime-cms worker`: a process that runs background jobs and nothing else.

It enters the core's `Runtime` with the worker role only (no web server, no sockets; live
pushes go out through Redis, write-only) and runs until SIGTERM or SIGINT, when the worker
stops claiming, lets running jobs finish for `RCMS_JOB_GRACE_SECONDS`, releases the rest to
the queue and deregisters.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from realtime_cms.config import Settings
from realtime_cms.jobs.worker import WorkerOptions
from realtime_cms.runtime import Runtime

log = logging.getLogger(__name__)


async def run(settings: Settings, options: WorkerOptions) -> None:
    """Run the jobs of `options.queues` until a stop signal; then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Runtime(settings, worker=options) as runtime:
            assert runtime.worker is not None
            log.info(
                "worker %s running %d at a time from queues %s",
                runtime.worker.process_id or "(registering)",
                runtime.worker.options.concurrency,
                ",".join(runtime.worker.options.queues),
            )
            await stop.wait()
            log.info("worker %s stopping", runtime.worker.process_id)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
