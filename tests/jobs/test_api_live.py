"""Live job status over `/notifications`: pushed to holders of `jobs.view`, nobody else.

Every connection of a user whose credential holds `jobs.view` sits in the room `jobs`; job
changes arrive there as `jobs` events (coalesced, with queue depth). A role granted or taken
away moves a connected user in or out of the room at once.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import socketio

from handlers import keys
from handlers.notifications_socket import NotificationsNamespace
from realtime_cms.events import EventBus
from realtime_cms.jobs.events import MAX_CHANGES, ROOM, JobChanged, JobFeed
from realtime_cms.notifications.hub import NAMESPACE
from tests.support.harness import Harness
from tests.support.jobs import settle_jobs
from tests.support.live import eventually


class Watcher:
    """A `/notifications` client keeping every `jobs` event."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.sio = socketio.AsyncClient(reconnection=False)
        self.pushes: list[dict[str, Any]] = []
        self.sio.on("jobs", self._pushed, namespace=NAMESPACE)

    async def _pushed(self, data: dict[str, Any]) -> None:
        self.pushes.append(data)

    async def connect(self) -> Watcher:
        await self.sio.connect(
            self.url,
            namespaces=[NAMESPACE],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=10,
        )
        return self

    async def round_trip(self) -> None:
        """An acknowledged event: pushes the server sent this socket before it are in."""
        answer = await self.sio.call("unread", {}, namespace=NAMESPACE, timeout=15)
        assert answer["ok"], answer

    def statuses(self, job_id: str) -> list[str]:
        return [c["status"] for push in self.pushes for c in push["changes"] if c["id"] == job_id]


Open = Callable[[str], Awaitable[Watcher]]


@pytest.fixture
async def watch(harness: Harness) -> AsyncIterator[Open]:
    url = str(harness.client.make_url("/"))
    opened: list[Watcher] = []

    async def open_watcher(token: str) -> Watcher:
        watcher = await Watcher(url, token).connect()
        opened.append(watcher)
        return watcher

    yield open_watcher
    for watcher in opened:
        if watcher.sio.connected:
            await watcher.sio.disconnect()


def namespace(harness: Harness) -> NotificationsNamespace:
    handler = harness.app[keys.SIO].namespace_handlers[NAMESPACE]
    assert isinstance(handler, NotificationsNamespace)
    return handler


def in_jobs_room(harness: Harness, user_id: int) -> bool:
    listeners = [item for item in namespace(harness).listeners.values() if item.user_id == user_id]
    return bool(listeners) and all(item.jobs for item in listeners)


async def enqueue_prune(harness: Harness) -> str:
    response = await harness.call("POST", "/api/v1/jobs", role="admin", json={"type": "jobs.prune"})
    body = await response.json()
    assert response.status == 201, body
    return str(body["data"]["id"])


async def test_a_job_run_is_pushed_to_an_admin_and_not_to_a_viewer(
    harness: Harness, watch: Open
) -> None:
    admin = await watch(harness.tokens["admin"])
    viewer = await watch(harness.tokens["viewer"])
    job_id = await enqueue_prune(harness)
    await settle_jobs(harness.app[keys.SESSIONS], ["jobs.prune"])
    await eventually(lambda: "completed" in admin.statuses(job_id))
    statuses = admin.statuses(job_id)
    # Coalesced pushes keep each job's latest status: the run ends with its completion.
    assert statuses[-1] == "completed" and set(statuses) <= {"queued", "processing", "completed"}
    change = next(c for p in admin.pushes for c in p["changes"] if c["id"] == job_id)
    assert (change["type"], change["queue"]) in {("jobs.prune", "maintenance"), (None, None)}
    depth = {q["queue"]: q for q in admin.pushes[-1]["queues"]}
    assert {"queued", "due", "processing", "failed"} <= set(depth["maintenance"])
    await viewer.round_trip()
    assert viewer.pushes == []


async def test_an_operators_cancel_is_pushed_with_type_and_queue(
    harness: Harness, watch: Open
) -> None:
    admin = await watch(harness.tokens["admin"])
    # A prune due tomorrow stays queued: it is cancelled before it runs.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = {"type": "jobs.prune", "run_at": tomorrow}
    response = await harness.call("POST", "/api/v1/jobs", role="admin", json=body)
    job_id = (await response.json())["data"]["id"]
    cancelled = await harness.call("POST", f"/api/v1/jobs/{job_id}/cancel", role="admin")
    assert cancelled.status == 200, await cancelled.text()
    await eventually(lambda: "cancelled" in admin.statuses(job_id))
    change = [c for p in admin.pushes for c in p["changes"] if c["id"] == job_id][-1]
    assert change == {
        "id": job_id,
        "status": "cancelled",
        "type": "jobs.prune",
        "queue": "maintenance",
    }


async def test_a_role_granting_jobs_view_moves_a_connected_user_in_and_out_of_the_room(
    harness: Harness, watch: Open
) -> None:
    name = f"watcher-{uuid.uuid4().hex[:8]}"
    user = await harness.add_user(name, "viewer")
    watcher = await watch(await harness.login(name))
    assert not in_jobs_room(harness, user.id)
    response = await harness.call(
        "POST",
        "/api/v1/roles",
        role="admin",
        json={"name": f"job-watchers-{name}", "permissions": ["jobs.view"]},
    )
    role_id = (await response.json())["data"]["id"]
    grant = f"/api/v1/users/{user.id}/roles/{role_id}"
    assert (await harness.call("PUT", grant, role="admin")).status == 204
    await eventually(lambda: in_jobs_room(harness, user.id))
    job_id = await enqueue_prune(harness)
    await eventually(lambda: bool(watcher.statuses(job_id)))

    assert (await harness.call("DELETE", grant, role="admin")).status == 204
    await eventually(lambda: not in_jobs_room(harness, user.id))
    await settle_jobs(harness.app[keys.SESSIONS], ["jobs.prune"])
    await watcher.round_trip()
    seen = len(watcher.pushes)
    admin = await watch(harness.tokens["admin"])
    later = await enqueue_prune(harness)
    await eventually(lambda: bool(admin.statuses(later)))
    await watcher.round_trip()
    assert watcher.statuses(later) == [] and len(watcher.pushes) == seen


class Recorder:
    """An emitter keeping what a feed pushes."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def emit(self, event: str, data: Any = None, **kwargs: Any) -> None:
        self.sent.append((event, data, kwargs))
        self.arrived.set()


async def test_a_burst_of_changes_is_one_push_with_failures_first_and_a_count_of_the_rest() -> None:
    bus, recorder = EventBus(), Recorder()

    async def snapshot() -> list[dict[str, Any]]:
        return [{"queue": "q", "queued": 1}]

    async with JobFeed(bus, recorder, snapshot, interval=0.01):
        # One commit's worth of events (dispatch is synchronous): 1000 jobs of which 3 failed,
        # and job 50 changing twice.
        burst: list[Any] = [JobChanged(f"job-{n}", "completed", "t", "q") for n in range(1000)]
        burst[500] = JobChanged("job-500", "failed", "t", "q")
        burst[998] = JobChanged("job-998", "failed", "t", "q")
        burst.append(JobChanged("job-50", "failed", "t", "q"))
        bus.dispatch(burst)
        async with asyncio.timeout(15):
            await recorder.arrived.wait()
    [(event, data, where)] = recorder.sent
    assert event == "jobs" and where == {"room": ROOM, "namespace": "/notifications"}
    changes = data["changes"]
    assert len(changes) == MAX_CHANGES and data["more"] == 1000 - MAX_CHANGES
    assert [c["id"] for c in changes[:3]] == ["job-500", "job-998", "job-50"]
    assert all(c["status"] == "failed" for c in changes[:3])
    assert all(c["status"] == "completed" for c in changes[3:])
    assert data["queues"] == [{"queue": "q", "queued": 1}]


async def test_a_feed_whose_snapshot_fails_still_pushes_the_changes() -> None:
    bus, recorder = EventBus(), Recorder()

    async def snapshot() -> list[dict[str, Any]]:
        raise ConnectionError("the database is away")

    async with JobFeed(bus, recorder, snapshot, interval=0.01):
        bus.dispatch([JobChanged("job-1", "failed")])
        async with asyncio.timeout(15):
            await recorder.arrived.wait()
    [(_, data, _)] = recorder.sent
    assert data == {"changes": [JobChanged("job-1", "failed").as_json()], "more": 0, "queues": None}
