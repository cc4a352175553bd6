"""REST for job batches: many jobs of one type as one unit, their progress and items."""

from __future__ import annotations

from datetime import datetime

from handlers.api import Call, Routes
from handlers.jobs import runtime_of
from realtime_cms.jobs import batch_service
from realtime_cms.jobs.schemas import BatchCreate, BatchItemOut, BatchOut
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.workers import BatchJob, BatchJobItem

routes = Routes("background work")

BATCHES = "/api/v1/batches"
BATCH = BATCHES + "/{batch_id:\\d+}"

BATCH_LISTING = Listing(
    fields={
        "id": Field(BatchJob.id, int),
        "type": Field(BatchJob.type),
        "status": Field(BatchJob.status),
        "total": Field(BatchJob.total, int),
        "created_at": Field(BatchJob.created_at, datetime),
        "started_at": Field(BatchJob.started_at, datetime),
        "completed_at": Field(BatchJob.completed_at, datetime),
    },
    default_sort="-created_at,-id",
)
ITEM_LISTING = Listing(
    fields={
        "id": Field(BatchJobItem.id, int),
        "job_id": Field(BatchJobItem.item_id),
        "status": Field(BatchJobItem.status),
        "processed_at": Field(BatchJobItem.processed_at, datetime),
    },
)


@routes.get(
    BATCHES, "List batches", permission="jobs.view", response=BatchOut, listing=BATCH_LISTING
)
async def list_batches(call: Call) -> Page[BatchOut]:
    """Newest first by default. Filter on `status`, `type`, and time ranges with
    `filter[created_at][gte]=...&filter[created_at][lt]=...` (also `started_at`,
    `completed_at`)."""
    assert call.query is not None
    return await batch_service.list_batches(call.db, call.principal, call.query)


@routes.post(
    BATCHES,
    "Create a batch",
    permission="jobs.manage",
    body=BatchCreate,
    response=BatchOut,
    status=201,
)
async def create_batch(call: Call) -> BatchOut:
    """One job of operator type `type` per item payload (1 to 10,000), and optionally a
    `callback` job enqueued once when the last item has ended. A type that is unknown or not
    an operator one is 422 naming `type` (or `callback.type`); a payload its schema refuses
    is 422 naming `items.<index>.<field>` (or `callback.payload.<field>`)."""
    body: BatchCreate = call.body
    registry = runtime_of(call.app).jobs
    return await batch_service.create(call.db, call.principal, registry, body)


@routes.get(BATCH, "Read a batch", permission="jobs.view", response=BatchOut)
async def get_batch(call: Call) -> BatchOut:
    """Its status and counters (`total`, `completed`, `failed`, `pending`) and its callback
    job once enqueued."""
    return await batch_service.get_batch(call.db, call.principal, call.path_int("batch_id"))


@routes.get(
    BATCH + "/items",
    "List a batch's items",
    permission="jobs.view",
    response=BatchItemOut,
    listing=ITEM_LISTING,
)
async def list_batch_items(call: Call) -> Page[BatchItemOut]:
    """In the order they were given. Filter on `status`, `job_id` and `processed_at`."""
    assert call.query is not None
    return await batch_service.list_items(
        call.db, call.principal, call.path_int("batch_id"), call.query
    )
