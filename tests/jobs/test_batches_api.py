"""REST and live pushes of job batches on a live server: who may, shapes, refusals, progress.

Batches of the test type sit on the queue `batches-idle`, which the server's embedded worker
does not take, so they stay as created; batches of `jobs.prune` (an operator type the worker
runs) show progress to the end.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel, Field

from handlers import keys
from handlers.jobs import runtime_of
from realtime_cms.jobs.registry import JobContext, JobType
from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.workers import WorkerJob
from realtime_cms.notifications.hub import NAMESPACE
from tests.jobs.test_api import call, fields_of
from tests.jobs.test_api_live import Watcher
from tests.support.harness import Harness
from tests.support.jobs import settle_jobs
from tests.support.live import eventually

IDLE = "batches-idle"
BATCHES = "/api/v1/batches"
DETAIL_FIELDS = {
    "id",
    "type",
    "status",
    "total",
    "completed",
    "failed",
    "pending",
    "callback",
    "created_at",
    "started_at",
    "completed_at",
}


class Count(BaseModel):
    model_config = {"extra": "forbid"}
    count: int = Field(ge=1)


async def _count(context: JobContext, payload: Count) -> str:
    return f"count {payload.count}"


TALLY = JobType("batches.tally", Count, _count, queue=IDLE, operator=True)
INTERNAL = JobType("batches.internal", Count, _count, queue=IDLE)


@pytest.fixture(scope="module", autouse=True)
def test_types(harness: Harness) -> None:
    registry = runtime_of(harness.app).jobs
    for job_type in (TALLY, INTERNAL):
        if job_type.name not in registry:
            registry.add(job_type)


def tallies(*counts: int) -> list[dict[str, int]]:
    return [{"count": count} for count in counts]


async def create(harness: Harness, **body: Any) -> dict[str, Any]:
    body = {"type": TALLY.name, "items": tallies(1, 2, 3), **body}
    return dict((await call(harness, "POST", BATCHES, 201, json=body))["data"])


# --- who may -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["viewer", "author", "editor"])
async def test_only_holders_of_the_job_permissions_read_or_create_batches(
    harness: Harness, role: str
) -> None:
    batch = await create(harness)
    for path in (BATCHES, f"{BATCHES}/{batch['id']}", f"{BATCHES}/{batch['id']}/items"):
        problem = await call(harness, "GET", path, 403, role=role)
        assert problem["code"] == "permission_denied", path
    body = {"type": TALLY.name, "items": tallies(1)}
    problem = await call(harness, "POST", BATCHES, 403, role=role, json=body)
    assert problem["code"] == "permission_denied"


# --- creating and reading ------------------------------------------------------------------


async def test_a_created_batch_reads_with_its_counters_items_and_jobs(harness: Harness) -> None:
    callback = {"type": TALLY.name, "payload": {"count": 9}}
    batch = await create(harness, items=tallies(4, 5), callback=callback, priority=7)
    assert set(batch) == DETAIL_FIELDS
    assert {key: batch[key] for key in ("type", "status", "total", "completed", "failed")} == {
        "type": TALLY.name,
        "status": "pending",
        "total": 2,
        "completed": 0,
        "failed": 0,
    }
    assert batch["pending"] == 2 and batch["started_at"] is None
    assert batch["callback"] == {"type": TALLY.name, "job_id": None}
    path = f"{BATCHES}/{batch['id']}"
    assert (await call(harness, "GET", path, 200))["data"] == batch
    items = await call(harness, "GET", f"{path}/items", 200)
    assert items["meta"]["total"] == 2
    assert [(item["status"], item["result"]) for item in items["data"]] == [("pending", None)] * 2
    jobs = await call(harness, "GET", f"/api/v1/jobs?filter[batch_job_id]={batch['id']}", 200)
    by_id = {job["id"]: job for job in jobs["data"]}
    assert set(by_id) == {item["job_id"] for item in items["data"]}
    assert {(job["queue"], job["priority"]) for job in by_id.values()} == {(IDLE, 7)}
    payloads = [
        (await call(harness, "GET", f"/api/v1/jobs/{item['job_id']}", 200))["data"]["payload"]
        for item in items["data"]
    ]
    assert payloads == tallies(4, 5)
    audited = await harness.scalar(
        sa.select(sa.func.count())
        .select_from(AuditLog)
        .where(AuditLog.action_type == "batch.create", AuditLog.entity_id == batch["id"])
    )
    assert audited == 1


async def test_batches_list_newest_first_and_filter_on_status_and_type(harness: Harness) -> None:
    first, second = await create(harness), await create(harness)
    listed = await call(harness, "GET", f"{BATCHES}?filter[type]={TALLY.name}", 200)
    ids = [batch["id"] for batch in listed["data"]]
    assert ids.index(second["id"]) < ids.index(first["id"])
    assert all(set(batch) == DETAIL_FIELDS for batch in listed["data"])
    done = await call(harness, "GET", f"{BATCHES}?filter[status]=completed", 200)
    assert first["id"] not in {batch["id"] for batch in done["data"]}
    items = await call(harness, "GET", f"{BATCHES}/{first['id']}/items?filter[status]=pending", 200)
    assert items["meta"]["total"] == 3
    for query in ("filter[payload]=x", "sort=payload"):
        problem = await call(harness, "GET", f"{BATCHES}?{query}", 400)
        assert problem["code"] in ("invalid_filter", "invalid_sort"), query


async def test_unknown_batches_are_not_found(harness: Harness) -> None:
    for path in (f"{BATCHES}/987654321", f"{BATCHES}/987654321/items"):
        assert (await call(harness, "GET", path, 404))["code"] == "batch_not_found", path


# --- refusals ------------------------------------------------------------------------------


async def _jobs_of_tally(harness: Harness) -> int:
    stmt = sa.select(sa.func.count()).select_from(WorkerJob).where(WorkerJob.queue == IDLE)
    return int(await harness.scalar(stmt))


async def test_an_invalid_item_is_refused_naming_its_index_and_field(harness: Harness) -> None:
    before = await _jobs_of_tally(harness)
    body = {"type": TALLY.name, "items": [{"count": 1}, {"count": 0}, {"count": 2, "extra": 1}]}
    problem = await call(harness, "POST", BATCHES, 422, json=body)
    assert problem["code"] == "invalid_payload"
    assert fields_of(problem) == ["items.1.count", "items.2.extra"]
    body = {"type": TALLY.name, "items": [{"count": 1}], "callback": {"type": TALLY.name}}
    problem = await call(harness, "POST", BATCHES, 422, json=body)
    assert fields_of(problem) == ["callback.payload.count"]
    assert await _jobs_of_tally(harness) == before


async def test_unknown_and_internal_types_are_refused_naming_the_field(harness: Harness) -> None:
    cases = [
        ({"type": "surely.not.a.type"}, "unknown_job_type", "type"),
        ({"type": INTERNAL.name}, "job_type_not_operator", "type"),
        ({"callback": {"type": "surely.not.a.type"}}, "unknown_job_type", "callback.type"),
        ({"callback": {"type": "mail.send"}}, "job_type_not_operator", "callback.type"),
    ]
    for change, code, field in cases:
        body = {"type": TALLY.name, "items": tallies(1), **change}
        problem = await call(harness, "POST", BATCHES, 422, json=body)
        assert (problem["code"], fields_of(problem)) == (code, [field]), change


async def test_a_batch_has_one_to_ten_thousand_items(harness: Harness) -> None:
    for items in ([], tallies(*[1] * 10_001)):
        problem = await call(
            harness, "POST", BATCHES, 422, json={"type": TALLY.name, "items": items}
        )
        assert [error["loc"] for error in problem["errors"]] == [["body", "items"]]
    batch = await create(harness, items=tallies(*[1] * 10_000))
    assert batch["total"] == 10_000


# --- progress, live ------------------------------------------------------------------------


class BatchWatcher(Watcher):
    """A `/notifications` client keeping every `batches` event too."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.batches: list[dict[str, Any]] = []
        self.sio.on("batches", self._batch_pushed, namespace=NAMESPACE)

    async def _batch_pushed(self, data: dict[str, Any]) -> None:
        self.batches.extend(data["batches"])

    def states(self, batch_id: int) -> list[dict[str, Any]]:
        return [batch for batch in self.batches if batch["id"] == batch_id]


async def test_a_batch_run_to_its_end_is_pushed_to_an_admin_and_not_to_a_viewer(
    harness: Harness,
) -> None:
    url = str(harness.client.make_url("/"))
    admin = await BatchWatcher(url, harness.tokens["admin"]).connect()
    viewer = await BatchWatcher(url, harness.tokens["viewer"]).connect()
    try:
        body = {"type": "jobs.prune", "items": [{}, {}, {}], "callback": {"type": "jobs.prune"}}
        batch = (await call(harness, "POST", BATCHES, 201, json=body))["data"]
        await settle_jobs(harness.app[keys.SESSIONS], ["jobs.prune"])
        final = {"id": batch["id"], "status": "completed", "total": 3, "completed": 3, "failed": 0}
        await eventually(lambda: final in admin.states(batch["id"]))
        # Counters only grow: pushes read them fresh, so none shows an older state than one before.
        seen = [state["completed"] for state in admin.states(batch["id"])]
        assert seen == sorted(seen) and admin.states(batch["id"])[-1] == final
        done = (await call(harness, "GET", f"{BATCHES}/{batch['id']}", 200))["data"]
        assert done["callback"]["job_id"] is not None and done["pending"] == 0
        job = await call(harness, "GET", f"/api/v1/jobs/{done['callback']['job_id']}", 200)
        # Enqueued in the last item's transaction, so settled with the items.
        assert job["data"]["status"] == "completed"
        await viewer.round_trip()
        assert viewer.batches == []
    finally:
        for watcher in (admin, viewer):
            await watcher.sio.disconnect()
