"""REST for heartbeat alerts, alert configurations and scaling rules, on a live server.

The server runs no embedded worker: the tests drive `workers.monitor` themselves (as a
worker would run it, in one transaction with its after-commit effects), so no periodic run
changes an alert or a configuration behind a test's back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any, get_args

import pytest
import sqlalchemy as sa

from handlers import keys
from handlers.jobs import runtime_of
from realtime_cms.db import transaction
from realtime_cms.jobs import alerts, processes
from realtime_cms.jobs.schemas import Action, Channel, Condition
from realtime_cms.models.analytics import AuditLog
from realtime_cms.models.base import utcnow
from realtime_cms.models.notifications import Notification
from realtime_cms.models.workers import (
    AlertConfiguration,
    HeartbeatAlert,
    ScalingRule,
    Worker,
    WorkerActivityLog,
    WorkerJob,
    WorkerProcess,
)
from tests.jobs.test_api import answer, call
from tests.jobs.test_api_live import Watcher
from tests.support.harness import Harness, make_settings, start_harness
from tests.support.jobs import run_job
from tests.support.live import eventually

ALERTS = "/api/v1/alerts"
CONFIGURATIONS = "/api/v1/alert-configurations"
RULES = "/api/v1/scaling-rules"
DECISION = "/api/v1/scaling/decision"
LEVEL = {"alert_level": 1, "threshold_minutes": 5, "notification_channels": ["in_app"]}
RULE = {"condition_type": "queue_length", "threshold_value": 10, "action": "scale_up"}


@pytest.fixture(scope="module")
async def harness(database_url: str, redis_url: str | None) -> AsyncIterator[Harness]:
    """A web server without its embedded worker: the monitor runs only when a test says."""
    h = await start_harness(make_settings(database_url, redis_url, worker_embedded=False))
    try:
        yield h
    finally:
        await h.client.close()


@pytest.fixture(autouse=True)
async def clean(harness: Harness) -> None:
    """No processes, alerts, levels, rules, jobs or notifications left by another test."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        for model in (
            HeartbeatAlert,
            AlertConfiguration,
            ScalingRule,
            WorkerJob,
            WorkerActivityLog,
            WorkerProcess,
            Worker,
            Notification,
        ):
            await db.execute(sa.delete(model))


async def silent_process(harness: Harness, since: datetime) -> str:
    """A worker process whose last heartbeat was at `since` (and none since)."""
    return await processes.register(
        harness.app[keys.SESSIONS], kind="worker", concurrency=2, queues=["default"], now=since
    )


async def monitor(harness: Harness, at: datetime) -> str:
    runtime = runtime_of(harness.app)
    return str(await run_job(harness.app[keys.SESSIONS], alerts.MONITOR, {}, runtime, at=at))


async def raised_alert(harness: Harness) -> tuple[str, dict[str, Any], datetime]:
    """A process silent for 3 minutes and the level-1 alert the monitor raised for it."""
    start = utcnow()
    process_id = await silent_process(harness, start)
    await monitor(harness, start + timedelta(minutes=3))
    listed = await call(harness, "GET", f"{ALERTS}?filter[worker_id]={process_id}", 200)
    [alert] = listed["data"]
    return process_id, alert, start


async def told(harness: Harness) -> int:
    """How many worker alerts the admin (who holds `workers.manage`) was told of."""
    return int(
        await harness.scalar(
            sa.select(sa.func.count())
            .select_from(Notification)
            .where(
                Notification.user_id == harness.users["admin"].id,
                Notification.type == "worker_alert",
            )
        )
    )


async def audited(harness: Harness, entity: str, entity_id: int) -> list[str]:
    """The audit actions on one entity, oldest first."""
    async with transaction(harness.app[keys.SESSIONS]) as db:
        found = await db.scalars(
            sa.select(AuditLog.action_type)
            .where(AuditLog.entity_type == entity, AuditLog.entity_id == entity_id)
            .order_by(AuditLog.id)
        )
        return list(found)


def body_fields(problem: dict[str, Any]) -> list[str]:
    """The body fields a 422 names (`loc` without its leading `body`)."""
    return [".".join(error["loc"][1:]) for error in problem["errors"]]


# --- heartbeat alerts ----------------------------------------------------------------------


async def test_an_alert_lists_with_its_workers_host_pid_and_last_heartbeat(
    harness: Harness,
) -> None:
    process_id, alert, start = await raised_alert(harness)
    assert (alert["worker_id"], alert["next_alert_level"], alert["failure_count"]) == (
        process_id,
        2,
        1,
    )
    assert alert["is_suppressed"] is False and alert["hostname"] and alert["pid"]
    assert datetime.fromisoformat(alert["last_heartbeat"]) == start
    one = (await call(harness, "GET", f"{ALERTS}/{alert['id']}", 200))["data"]
    assert one == alert
    # Silent for an hour: level 1 fires on one run, level 2 (due after 12 minutes) on the next.
    other = await silent_process(harness, start - timedelta(hours=1))
    await monitor(harness, start + timedelta(minutes=3, seconds=1))
    await monitor(harness, start + timedelta(minutes=3, seconds=2))
    listed = (await call(harness, "GET", ALERTS, 200))["data"]
    # The latest level fired first.
    assert [a["worker_id"] for a in listed] == [other, process_id]
    by_level = await call(harness, "GET", f"{ALERTS}?filter[next_alert_level]=3", 200)
    assert [a["worker_id"] for a in by_level["data"]] == [other]
    quiet = await call(harness, "GET", f"{ALERTS}?filter[is_suppressed]=true", 200)
    assert quiet["data"] == [] and quiet["meta"]["total"] == 0


async def test_an_unknown_alert_is_not_found(harness: Harness) -> None:
    for method, body in (("GET", None), ("PATCH", {"suppressed": True})):
        problem = await call(harness, method, f"{ALERTS}/999999", 404, json=body)
        assert problem["code"] == "alert_not_found"


async def test_suppressing_stops_the_notifications_but_not_the_escalation(
    harness: Harness,
) -> None:
    process_id, alert, start = await raised_alert(harness)
    assert await told(harness) == 1
    path = f"{ALERTS}/{alert['id']}"
    suppressed = (await call(harness, "PATCH", path, 200, json={"suppressed": True}))["data"]
    assert suppressed["is_suppressed"] is True
    # Level 2 falls due (10 minutes after level 1): recorded, but nobody is told or mailed.
    await monitor(harness, start + timedelta(minutes=14))
    escalated = (await call(harness, "GET", path, 200))["data"]
    assert (escalated["next_alert_level"], escalated["failure_count"]) == (3, 2)
    assert escalated["is_suppressed"] is True
    assert await told(harness) == 1
    mails = await harness.scalar(
        sa.select(sa.func.count()).select_from(WorkerJob).where(WorkerJob.type == "mail.send")
    )
    assert mails == 0
    assert await audited(harness, "heartbeat_alert", alert["id"]) == ["heartbeat_alert.suppress"]


async def test_an_unsuppressed_alert_notifies_its_next_level_again(harness: Harness) -> None:
    process_id, alert, start = await raised_alert(harness)
    path = f"{ALERTS}/{alert['id']}"
    await call(harness, "PATCH", path, 200, json={"suppressed": True})
    again = (await call(harness, "PATCH", path, 200, json={"suppressed": False}))["data"]
    assert again["is_suppressed"] is False
    await monitor(harness, start + timedelta(minutes=14))
    assert await told(harness) == 2
    assert await audited(harness, "heartbeat_alert", alert["id"]) == [
        "heartbeat_alert.suppress",
        "heartbeat_alert.unsuppress",
    ]


async def test_suppressing_twice_changes_and_audits_once(harness: Harness) -> None:
    _, alert, _ = await raised_alert(harness)
    path = f"{ALERTS}/{alert['id']}"
    for _ in range(2):
        body = (await call(harness, "PATCH", path, 200, json={"suppressed": True}))["data"]
        assert body["is_suppressed"] is True
    assert await audited(harness, "heartbeat_alert", alert["id"]) == ["heartbeat_alert.suppress"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["suppressed"]),
        ({"suppressed": "perhaps"}, ["suppressed"]),
        ({"suppressed": True, "muted": True}, ["muted"]),
    ],
)
async def test_a_bad_alert_change_names_the_field(
    harness: Harness, body: dict[str, Any], fields: list[str]
) -> None:
    _, alert, _ = await raised_alert(harness)
    problem = await call(harness, "PATCH", f"{ALERTS}/{alert['id']}", 422, json=body)
    assert body_fields(problem) == fields


# --- alert configurations ------------------------------------------------------------------


async def test_an_alert_configuration_is_created_read_changed_deleted_and_audited(
    harness: Harness,
) -> None:
    body = {**LEVEL, "escalation_after_minutes": 30, "notification_channels": ["in_app", "email"]}
    created = (await call(harness, "POST", CONFIGURATIONS, 201, json=body))["data"]
    assert {k: created[k] for k in body} == body and created["is_active"] is True
    path = f"{CONFIGURATIONS}/{created['id']}"
    assert (await call(harness, "GET", path, 200))["data"] == created
    second = {**LEVEL, "alert_level": 2, "threshold_minutes": 60}
    await call(harness, "POST", CONFIGURATIONS, 201, json=second)
    listed = (await call(harness, "GET", CONFIGURATIONS, 200))["data"]
    assert [c["alert_level"] for c in listed] == [1, 2]
    change = {"escalation_after_minutes": None, "is_active": False}
    changed = (await call(harness, "PATCH", path, 200, json=change))["data"]
    assert (changed["escalation_after_minutes"], changed["is_active"]) == (None, False)
    assert changed["threshold_minutes"] == 5
    await call(harness, "DELETE", path, 204)
    problem = await call(harness, "GET", path, 404)
    assert problem["code"] == "alert_configuration_not_found"
    actions = await audited(harness, "alert_configuration", created["id"])
    assert actions == [
        "alert_configuration.create",
        "alert_configuration.update",
        "alert_configuration.delete",
    ]


async def test_stored_configurations_are_the_levels_the_monitor_fires(harness: Harness) -> None:
    body = {**LEVEL, "threshold_minutes": 30, "notification_channels": ["email"]}
    await call(harness, "POST", CONFIGURATIONS, 201, json=body)
    start = utcnow()
    await silent_process(harness, start)
    await monitor(harness, start + timedelta(minutes=20))
    assert (await call(harness, "GET", ALERTS, 200))["data"] == []
    await monitor(harness, start + timedelta(minutes=31))
    [alert] = (await call(harness, "GET", ALERTS, 200))["data"]
    assert alert["next_alert_level"] == 2
    # Email only: no in-app notification, one mail to the admin.
    assert await told(harness) == 0
    mails = await harness.scalar(
        sa.select(sa.func.count()).select_from(WorkerJob).where(WorkerJob.type == "mail.send")
    )
    assert mails == 1


async def test_a_configured_level_is_a_conflict(harness: Harness) -> None:
    await call(harness, "POST", CONFIGURATIONS, 201, json=LEVEL)
    problem = await call(harness, "POST", CONFIGURATIONS, 409, json=LEVEL)
    assert problem["code"] == "alert_level_taken"
    other = await call(harness, "POST", CONFIGURATIONS, 201, json={**LEVEL, "alert_level": 2})
    path = f"{CONFIGURATIONS}/{other['data']['id']}"
    problem = await call(harness, "PATCH", path, 409, json={"alert_level": 1})
    assert problem["code"] == "alert_level_taken"
    # Its own level is no conflict.
    await call(harness, "PATCH", path, 200, json={"alert_level": 2})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"alert_level": 0}, "alert_level"),
        ({"alert_level": "first"}, "alert_level"),
        ({"threshold_minutes": 0}, "threshold_minutes"),
        ({"threshold_minutes": None}, "threshold_minutes"),
        ({"escalation_after_minutes": 0}, "escalation_after_minutes"),
        ({"notification_channels": []}, "notification_channels"),
        ({"notification_channels": ["in_app", "in_app"]}, "notification_channels"),
        ({"notification_channels": ["sms"]}, "notification_channels.0"),
        ({"notification_channels": "in_app"}, "notification_channels"),
        ({"is_active": "sometimes"}, "is_active"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_a_bad_alert_configuration_is_refused_naming_the_field(
    harness: Harness, change: dict[str, Any], field: str
) -> None:
    problem = await call(harness, "POST", CONFIGURATIONS, 422, json={**LEVEL, **change})
    assert body_fields(problem) == [field]
    stored = (await call(harness, "POST", CONFIGURATIONS, 201, json=LEVEL))["data"]
    path = f"{CONFIGURATIONS}/{stored['id']}"
    problem = await call(harness, "PATCH", path, 422, json=change)
    assert body_fields(problem) == [field]
    assert (await call(harness, "GET", path, 200))["data"] == stored


async def test_a_configuration_without_a_required_field_names_it(harness: Harness) -> None:
    for missing in ("alert_level", "threshold_minutes", "notification_channels"):
        body = {k: v for k, v in LEVEL.items() if k != missing}
        problem = await call(harness, "POST", CONFIGURATIONS, 422, json=body)
        assert body_fields(problem) == [missing]


# --- scaling rules -------------------------------------------------------------------------


async def test_a_scaling_rule_is_created_read_changed_deleted_and_audited(
    harness: Harness,
) -> None:
    created = (await call(harness, "POST", RULES, 201, json={**RULE, "worker_count": 4}))["data"]
    assert (created["condition_type"], created["threshold_value"], created["worker_count"]) == (
        "queue_length",
        10.0,
        4,
    )
    assert created["is_active"] is True and created["created_at"]
    path = f"{RULES}/{created['id']}"
    assert (await call(harness, "GET", path, 200))["data"] == created
    change = {"condition_type": "time_of_day", "threshold_value": 9.5, "action": "scale_down"}
    changed = (await call(harness, "PATCH", path, 200, json=change))["data"]
    assert {k: changed[k] for k in change} == change and changed["worker_count"] == 4
    listed = await call(harness, "GET", f"{RULES}?filter[condition_type]=time_of_day", 200)
    assert [r["id"] for r in listed["data"]] == [created["id"]]
    await call(harness, "DELETE", path, 204)
    assert (await call(harness, "GET", path, 404))["code"] == "scaling_rule_not_found"
    assert await audited(harness, "scaling_rule", created["id"]) == [
        "scaling_rule.create",
        "scaling_rule.update",
        "scaling_rule.delete",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"condition_type": "moon_phase"}, "condition_type"),
        ({"action": "scale_sideways"}, "action"),
        ({"worker_count": -1}, "worker_count"),
        ({"worker_count": 1001}, "worker_count"),
        ({"threshold_value": -1}, "threshold_value"),
        ({"condition_type": "worker_load", "threshold_value": 100.5}, "threshold_value"),
        ({"condition_type": "time_of_day", "threshold_value": 24}, "threshold_value"),
        ({"is_active": None}, "is_active"),
    ],
)
async def test_a_bad_scaling_rule_is_refused_naming_the_field(
    harness: Harness, change: dict[str, Any], field: str
) -> None:
    body = {**RULE, "worker_count": 2, **change}
    problem = await call(harness, "POST", RULES, 422, json=body)
    assert body_fields(problem) == [field]
    stored = (await call(harness, "POST", RULES, 201, json={**RULE, "worker_count": 2}))["data"]
    path = f"{RULES}/{stored['id']}"
    problem = await call(harness, "PATCH", path, 422, json=change)
    assert body_fields(problem) == [field]
    assert (await call(harness, "GET", path, 200))["data"] == stored


async def test_a_threshold_is_checked_against_the_condition_it_will_have(
    harness: Harness,
) -> None:
    body = {**RULE, "threshold_value": 500, "worker_count": 2}
    stored = (await call(harness, "POST", RULES, 201, json=body))["data"]
    path = f"{RULES}/{stored['id']}"
    problem = await call(harness, "PATCH", path, 422, json={"condition_type": "worker_load"})
    assert problem["code"] == "invalid_threshold" and body_fields(problem) == ["threshold_value"]
    change = {"condition_type": "worker_load", "threshold_value": 80}
    assert (await call(harness, "PATCH", path, 200, json=change))["data"]["threshold_value"] == 80


async def test_non_finite_thresholds_are_refused(harness: Harness) -> None:
    for raw in (b"NaN", b"Infinity"):
        data = b'{"condition_type": "queue_length", "action": "scale_up", "worker_count": 1, '
        data += b'"threshold_value": ' + raw + b"}"
        response = await harness.call(
            "POST",
            RULES,
            role="admin",
            data=data,
            headers={"Content-Type": "application/json"},
        )
        problem = await answer(response, 422)
        assert body_fields(problem) == ["threshold_value"], raw


async def insert_due_jobs(harness: Harness, count: int) -> None:
    async with transaction(harness.app[keys.SESSIONS]) as db:
        for _ in range(count):
            db.add(
                WorkerJob(
                    id=str(uuid.uuid4()),
                    type="jobs.prune",
                    queue="admin-idle",
                    payload={},
                    run_at=utcnow() - timedelta(minutes=1),
                )
            )


async def test_the_scaling_decision_names_the_rule_whose_count_won(harness: Harness) -> None:
    idle = (await call(harness, "GET", DECISION, 200))["data"]
    assert idle["decided_by"] is None and idle["matched_rule_ids"] == []
    assert idle["desired"] == idle["live_workers"] == 0
    down = {"threshold_value": 2, "action": "scale_down", "worker_count": 1}
    low = (await call(harness, "POST", RULES, 201, json={**RULE, **down}))["data"]
    up = {"threshold_value": 5, "action": "scale_up", "worker_count": 3}
    high = (await call(harness, "POST", RULES, 201, json={**RULE, **up}))["data"]
    bigger = {"threshold_value": 5, "action": "scale_up", "worker_count": 6, "is_active": False}
    await call(harness, "POST", RULES, 201, json={**RULE, **bigger})
    quiet = (await call(harness, "GET", DECISION, 200))["data"]
    assert (quiet["desired"], quiet["due_jobs"], quiet["matched_rule_ids"]) == (1, 0, [low["id"]])
    assert quiet["decided_by"] == low
    await insert_due_jobs(harness, 6)
    busy = (await call(harness, "GET", DECISION, 200))["data"]
    assert (busy["desired"], busy["due_jobs"], busy["matched_rule_ids"]) == (3, 6, [high["id"]])
    assert busy["decided_by"] == high


def test_the_schemas_accept_exactly_what_the_monitor_and_the_autoscaler_know() -> None:
    assert set(get_args(Channel)) == set(alerts.CHANNELS)
    columns = ScalingRule.__table__.c
    assert list(get_args(Condition)) == list(columns.condition_type.type.enums)  # type: ignore[attr-defined]
    assert list(get_args(Action)) == list(columns.action.type.enums)  # type: ignore[attr-defined]


# --- who may -------------------------------------------------------------------------------


def operations(alert_id: int, configuration_id: int, rule_id: int) -> list[tuple[str, str, Any]]:
    """Every operation of this API, as (method, path, body), reads first."""
    return [
        ("GET", ALERTS, None),
        ("GET", f"{ALERTS}/{alert_id}", None),
        ("GET", CONFIGURATIONS, None),
        ("GET", f"{CONFIGURATIONS}/{configuration_id}", None),
        ("GET", RULES, None),
        ("GET", f"{RULES}/{rule_id}", None),
        ("GET", DECISION, None),
        ("PATCH", f"{ALERTS}/{alert_id}", {"suppressed": True}),
        ("POST", CONFIGURATIONS, {**LEVEL, "alert_level": 9}),
        ("PATCH", f"{CONFIGURATIONS}/{configuration_id}", {"threshold_minutes": 9}),
        ("DELETE", f"{CONFIGURATIONS}/{configuration_id}", None),
        ("POST", RULES, {**RULE, "worker_count": 9}),
        ("PATCH", f"{RULES}/{rule_id}", {"worker_count": 9}),
        ("DELETE", f"{RULES}/{rule_id}", None),
    ]


async def stored_things(harness: Harness) -> tuple[int, int, int]:
    _, alert, _ = await raised_alert(harness)
    configuration = await call(harness, "POST", CONFIGURATIONS, 201, json=LEVEL)
    rule = await call(harness, "POST", RULES, 201, json={**RULE, "worker_count": 2})
    return alert["id"], configuration["data"]["id"], rule["data"]["id"]


@pytest.mark.parametrize("role", ["viewer", "author", "editor"])
async def test_roles_without_the_worker_permissions_are_refused_and_change_nothing(
    harness: Harness, role: str
) -> None:
    ids = await stored_things(harness)
    for method, path, body in operations(*ids):
        problem = await call(harness, method, path, 403, role=role, json=body)
        assert problem["code"] == "permission_denied", (method, path)
    alert = (await call(harness, "GET", f"{ALERTS}/{ids[0]}", 200))["data"]
    assert alert["is_suppressed"] is False
    assert len((await call(harness, "GET", CONFIGURATIONS, 200))["data"]) == 1
    assert len((await call(harness, "GET", RULES, 200))["data"]) == 1


async def test_anonymous_callers_are_asked_to_sign_in(harness: Harness) -> None:
    for method, path, body in operations(1, 1, 1):
        problem = await answer(await harness.call(method, path, json=body), 401)
        assert problem["code"] == "unauthorized", (method, path)


async def test_workers_view_reads_and_only_workers_manage_changes(harness: Harness) -> None:
    ids = await stored_things(harness)
    name = f"watcher-{uuid.uuid4().hex[:8]}"
    role = {"name": name, "permissions": ["workers.view"]}
    await call(harness, "POST", "/api/v1/roles", 201, json=role)
    await harness.add_user(name, name)
    token = await harness.login(name)
    for method, path, body in operations(*ids):
        response = await harness.call(method, path, token=token, json=body)
        if method == "GET":
            await answer(response, 200)
        else:
            assert (await answer(response, 403))["code"] == "permission_denied", (method, path)


# --- live ----------------------------------------------------------------------------------


class AlertWatcher(Watcher):
    """A `/notifications` client keeping every `alerts` event too."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(url, token)
        self.alerts: list[dict[str, Any]] = []
        self.sio.on("alerts", self._alerted, namespace="/notifications")

    async def _alerted(self, data: dict[str, Any]) -> None:
        self.alerts.extend(data["alerts"])

    def of(self, alert_id: int) -> list[dict[str, Any]]:
        return [item for item in self.alerts if item["id"] == alert_id]


@pytest.fixture
async def watchers(harness: Harness) -> AsyncIterator[dict[str, AlertWatcher]]:
    url = str(harness.client.make_url("/"))
    opened = {role: AlertWatcher(url, harness.tokens[role]) for role in ("admin", "viewer")}
    for watcher in opened.values():
        await watcher.connect()
    yield opened
    for watcher in opened.values():
        if watcher.sio.connected:
            await watcher.sio.disconnect()


async def test_alerts_raised_suppressed_and_cleared_are_pushed_to_job_viewers(
    harness: Harness, watchers: dict[str, AlertWatcher]
) -> None:
    admin, viewer = watchers["admin"], watchers["viewer"]
    process_id, alert, start = await raised_alert(harness)
    await eventually(lambda: bool(admin.of(alert["id"])))
    assert admin.of(alert["id"])[-1] == {
        "id": alert["id"],
        "worker_id": process_id,
        "next_alert_level": 2,
        "failure_count": 1,
        "is_suppressed": False,
        "state": "open",
    }
    await call(harness, "PATCH", f"{ALERTS}/{alert['id']}", 200, json={"suppressed": True})
    await eventually(lambda: admin.of(alert["id"])[-1]["is_suppressed"])
    beat = processes.Beat("idle", 0, 10, None)
    back = start + timedelta(minutes=4)
    assert await processes.heartbeat(harness.app[keys.SESSIONS], process_id, beat, back)
    assert (await monitor(harness, back + timedelta(seconds=5))).endswith("1 alerts cleared")
    await eventually(lambda: admin.of(alert["id"])[-1]["state"] == "cleared")
    assert admin.of(alert["id"])[-1]["is_suppressed"] is True
    await viewer.round_trip()
    assert viewer.alerts == []
