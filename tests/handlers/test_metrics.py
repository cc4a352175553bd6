"""`GET /metrics`: the job system in Prometheus' format, for loopback or a bearer token."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from handlers import keys
from realtime_cms.db import transaction
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import ScalingRule, WorkerJob
from tests.support.harness import Harness


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_show_queue_depth_and_the_desired_workers(harness: Harness) -> None:
    queue = f"metrics-{uuid.uuid4().hex[:8]}"  # a queue no worker takes: the jobs stay due
    async with transaction(harness.app[keys.SESSIONS]) as db:
        for _ in range(3):
            db.add(
                WorkerJob(id=str(uuid.uuid4()), type="x", payload={}, queue=queue, run_at=utcnow())
            )
        db.add(
            ScalingRule(
                condition_type="queue_length", threshold_value=1, action="scale_up", worker_count=7
            )
        )
    response = await harness.client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = _samples(await response.text())
    assert samples[("rcms_jobs_due", (("queue", queue),))] == 3
    assert samples[("rcms_jobs", (("queue", queue), ("status", "queued")))] == 3
    assert samples[("rcms_workers_desired", ())] == 7
    assert samples[("rcms_workers_live", ())] >= 1  # the embedded worker


async def test_metrics_need_the_token_once_one_is_set(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness.app[keys.SETTINGS], "metrics_token", "scrape-" + "s" * 30)
    missing = await harness.client.get("/metrics")
    wrong = await harness.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    right = await harness.client.get(
        "/metrics", headers={"Authorization": "Bearer scrape-" + "s" * 30}
    )
    assert (missing.status, wrong.status, right.status) == (401, 401, 200)
    assert (await wrong.json())["code"] == "bad_token"


async def test_without_a_token_only_loopback_clients_are_answered(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness.app[keys.SETTINGS], "trusted_proxies", ["127.0.0.1"])
    response = await harness.client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.status == 403
    assert (await response.json())["code"] == "metrics_local_only"
