"""A job plugin for the Background work browser tests (no tests here): `browser.gate` fails
while its gate file is missing and completes once the test has created it.

The tests' server loads it through `RCMS_JOB_PLUGINS` (its `register(registry)`).
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from realtime_cms.jobs.registry import JobContext, JobType, Registry


class Gate(BaseModel):
    model_config = {"extra": "forbid"}
    path: str


async def _through_the_gate(context: JobContext, payload: Gate) -> str:
    if not await asyncio.to_thread(os.path.exists, payload.path):
        raise RuntimeError(f"the gate {payload.path} is closed")
    return "through the gate"


# One attempt: a closed gate fails the job at once, with no backoff to wait for.
GATE = JobType(
    "browser.gate",
    Gate,
    _through_the_gate,
    queue="browser",
    max_attempts=1,
    operator=True,
    description="Fails until its gate file exists (browser tests)",
)


def register(registry: Registry) -> None:
    registry.add(GATE)
