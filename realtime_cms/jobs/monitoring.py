"""Operating the monitor and the autoscaler: heartbeat alerts (read, acknowledge), alert
configurations and scaling rules (validated, audited changes), and the scaling decision.

Reading needs `workers.view`, changing `workers.manage`. Acknowledging an alert suppresses
it: the monitor (realtime_cms/jobs/alerts.py) tells nobody of it again but keeps recording
its escalation, until the process heartbeats again and the alert clears. Suppressing emits
`AlertChanged`, as the monitor does, for the operators' live page.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from realtime_cms.audit import record
from realtime_cms.errors import Conflict, NotFound, Unprocessable
from realtime_cms.events import emit
from realtime_cms.jobs.alerts import AlertChanged
from realtime_cms.jobs.scaling import desired_workers
from realtime_cms.jobs.schemas import (
    MAX_THRESHOLD,
    AlertConfigurationCreate,
    AlertOut,
    ScalingDecisionOut,
    ScalingRuleCreate,
    ScalingRuleOut,
)
from realtime_cms.listing import ListQuery, Page
from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import AlertConfiguration, HeartbeatAlert, ScalingRule, Worker
from realtime_cms.principal import Principal
from realtime_cms.rbac.authorize import authorize
from realtime_cms.uniqueness import taken

VIEW, MANAGE = "workers.view", "workers.manage"
CONFIGURATION_COLUMNS = (
    "alert_level",
    "threshold_minutes",
    "escalation_after_minutes",
    "notification_channels",
    "is_active",
)
RULE_COLUMNS = ("condition_type", "threshold_value", "action", "worker_count", "is_active")
# What `threshold_value` means per condition (realtime_cms/jobs/scaling.py), as
# (low, high, high included, what it is).
THRESHOLDS = {
    "queue_length": (0.0, MAX_THRESHOLD, True, "a number of due jobs, 0 or more"),
    "worker_load": (0.0, 100.0, True, "a percentage of live capacity, 0 to 100"),
    "time_of_day": (0.0, 24.0, False, "an hour of the day in UTC, 0 to below 24"),
}


# --- audited rows ----------------------------------------------------------------------------


def _values(row: Any, columns: Iterable[str]) -> dict[str, Any]:
    return {column: getattr(row, column) for column in columns}


async def _created(
    db: AsyncSession, principal: Principal, row: Any, entity: str, columns: tuple[str, ...]
) -> None:
    db.add(row)
    await db.flush()
    # Answer what was stored (MariaDB keeps whole seconds of the timestamps).
    await db.refresh(row)
    await record(db, principal, f"{entity}.create", entity, row.id, _values(row, columns))


async def _updated(
    db: AsyncSession,
    principal: Principal,
    row: Any,
    entity: str,
    changes: dict[str, Any],
) -> None:
    """Apply `changes`; audit what actually changed (nothing: no entry)."""
    changed = {k: [getattr(row, k), v] for k, v in changes.items() if getattr(row, k) != v}
    if not changed:
        return
    for key, (_, new) in changed.items():
        setattr(row, key, new)
    await db.flush()
    await db.refresh(row)
    old = {key: old for key, (old, _) in changed.items()}
    new = {key: new for key, (_, new) in changed.items()}
    await record(db, principal, f"{entity}.update", entity, row.id, {"old": old, "new": new})


async def _deleted(
    db: AsyncSession, principal: Principal, row: Any, entity: str, columns: tuple[str, ...]
) -> None:
    row_id, values = row.id, _values(row, columns)
    await db.delete(row)
    await db.flush()
    await record(db, principal, f"{entity}.delete", entity, row_id, values)


def _invalid(field: str, message: str, code: str) -> Unprocessable:
    """A refusal naming one body field, shaped as the body's own validation errors are."""
    return Unprocessable(
        f"{field}: {message}",
        code=code,
        errors=[{"loc": ["body", field], "message": message, "type": code}],
    )


# --- heartbeat alerts ----------------------------------------------------------------------


def alerts() -> sa.Select[Any]:
    """Alerts with their worker joined (listing fields may use both)."""
    return sa.select(HeartbeatAlert).join(Worker, Worker.worker_id == HeartbeatAlert.worker_id)


def _alert_out(alert: HeartbeatAlert, worker: Worker | None) -> AlertOut:
    return AlertOut(
        id=alert.id,
        worker_id=alert.worker_id,
        hostname=worker.hostname if worker else None,
        pid=worker.pid if worker else None,
        last_heartbeat=worker.last_heartbeat if worker else None,
        failure_count=alert.failure_count,
        last_failure=alert.last_failure,
        next_alert_level=alert.next_alert_level,
        is_suppressed=bool(alert.is_suppressed),
    )


async def _workers(db: AsyncSession, ids: set[str]) -> dict[str, Worker]:
    if not ids:
        return {}
    rows = await db.scalars(sa.select(Worker).where(Worker.worker_id.in_(ids)))
    return {row.worker_id: row for row in rows}


async def list_alerts(db: AsyncSession, principal: Principal, query: ListQuery) -> Page[AlertOut]:
    authorize(principal, VIEW)
    page = await query.fetch(db, alerts())
    workers = await _workers(db, {alert.worker_id for alert in page.items})
    items = [_alert_out(alert, workers.get(alert.worker_id)) for alert in page.items]
    return Page(items=items, total=page.total, limit=page.limit, offset=page.offset)


async def _alert(db: AsyncSession, alert_id: int) -> HeartbeatAlert:
    """The alert as stored now (the monitor may have changed or cleared it), or NotFound."""
    alert = await db.scalar(
        sa.select(HeartbeatAlert)
        .where(HeartbeatAlert.id == alert_id)
        .execution_options(populate_existing=True)
    )
    if alert is None:
        raise NotFound(f"No alert {alert_id} (cleared alerts are gone)", code="alert_not_found")
    return alert


async def get_alert(db: AsyncSession, principal: Principal, alert_id: int) -> AlertOut:
    authorize(principal, VIEW)
    alert = await _alert(db, alert_id)
    return _alert_out(alert, await db.get(Worker, alert.worker_id))


async def suppress_alert(
    db: AsyncSession, principal: Principal, alert_id: int, *, suppressed: bool
) -> AlertOut:
    """Acknowledge (suppress) an alert or let it notify again; audited when it changes. One
    conditional UPDATE: an alert the monitor cleared meanwhile is 404, never re-created."""
    authorize(principal, MANAGE)
    alert = await _alert(db, alert_id)
    if bool(alert.is_suppressed) != suppressed:
        result = await db.execute(
            sa.update(HeartbeatAlert)
            .where(HeartbeatAlert.id == alert_id)
            .values(is_suppressed=suppressed)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(f"Alert {alert_id} was cleared meanwhile", code="alert_not_found")
        alert = await _alert(db, alert_id)
        emit(db, AlertChanged.of(alert, "open"))
        action = "heartbeat_alert.suppress" if suppressed else "heartbeat_alert.unsuppress"
        details = {"worker_id": alert.worker_id, "next_alert_level": alert.next_alert_level}
        await record(db, principal, action, "heartbeat_alert", alert_id, details)
    return _alert_out(alert, await db.get(Worker, alert.worker_id))


# --- alert configurations ------------------------------------------------------------------


async def list_alert_configurations(
    db: AsyncSession, principal: Principal, query: ListQuery
) -> Page[AlertConfiguration]:
    authorize(principal, VIEW)
    return await query.fetch(db, sa.select(AlertConfiguration))


async def _configuration(db: AsyncSession, configuration_id: int) -> AlertConfiguration:
    row = await db.get(AlertConfiguration, configuration_id)
    if row is None:
        raise NotFound(
            f"No alert configuration {configuration_id}", code="alert_configuration_not_found"
        )
    return row


async def get_alert_configuration(
    db: AsyncSession, principal: Principal, configuration_id: int
) -> AlertConfiguration:
    authorize(principal, VIEW)
    return await _configuration(db, configuration_id)


async def _level_free(db: AsyncSession, level: int, *, exclude: int | None) -> None:
    same_level = AlertConfiguration.alert_level == level
    if await taken(db, AlertConfiguration.id, same_level, exclude=exclude):
        raise Conflict(f"Alert level {level} is configured already", code="alert_level_taken")


async def create_alert_configuration(
    db: AsyncSession, principal: Principal, body: AlertConfigurationCreate
) -> AlertConfiguration:
    """A new level (409 `alert_level_taken` for a level configured already). Once any level
    is stored, the stored active ones replace the monitor's defaults."""
    authorize(principal, MANAGE)
    await _level_free(db, body.alert_level, exclude=None)
    row = AlertConfiguration(**body.model_dump())
    await _created(db, principal, row, "alert_configuration", CONFIGURATION_COLUMNS)
    return row


async def update_alert_configuration(
    db: AsyncSession, principal: Principal, configuration_id: int, changes: dict[str, Any]
) -> AlertConfiguration:
    authorize(principal, MANAGE)
    row = await _configuration(db, configuration_id)
    if "alert_level" in changes:
        await _level_free(db, changes["alert_level"], exclude=row.id)
    await _updated(db, principal, row, "alert_configuration", changes)
    return row


async def delete_alert_configuration(
    db: AsyncSession, principal: Principal, configuration_id: int
) -> None:
    """Delete a level; with none left, the monitor's defaults apply again."""
    authorize(principal, MANAGE)
    row = await _configuration(db, configuration_id)
    await _deleted(db, principal, row, "alert_configuration", CONFIGURATION_COLUMNS)


# --- scaling rules -------------------------------------------------------------------------


def _check_threshold(condition: str, value: float) -> None:
    """`value` means something for `condition` (422 naming `threshold_value` otherwise)."""
    low, high, high_included, meaning = THRESHOLDS[condition]
    if not (low <= value <= high if high_included else low <= value < high):
        raise _invalid("threshold_value", f"for {condition}, {meaning}", "invalid_threshold")


async def list_scaling_rules(
    db: AsyncSession, principal: Principal, query: ListQuery
) -> Page[ScalingRule]:
    authorize(principal, VIEW)
    return await query.fetch(db, sa.select(ScalingRule))


async def _rule(db: AsyncSession, rule_id: int) -> ScalingRule:
    row = await db.get(ScalingRule, rule_id)
    if row is None:
        raise NotFound(f"No scaling rule {rule_id}", code="scaling_rule_not_found")
    return row


async def get_scaling_rule(db: AsyncSession, principal: Principal, rule_id: int) -> ScalingRule:
    authorize(principal, VIEW)
    return await _rule(db, rule_id)


async def create_scaling_rule(
    db: AsyncSession, principal: Principal, body: ScalingRuleCreate
) -> ScalingRule:
    authorize(principal, MANAGE)
    _check_threshold(body.condition_type, body.threshold_value)
    row = ScalingRule(**body.model_dump())
    await _created(db, principal, row, "scaling_rule", RULE_COLUMNS)
    return row


async def update_scaling_rule(
    db: AsyncSession, principal: Principal, rule_id: int, changes: dict[str, Any]
) -> ScalingRule:
    """Change a rule; its threshold is checked against its condition as they will be."""
    authorize(principal, MANAGE)
    row = await _rule(db, rule_id)
    if "condition_type" in changes or "threshold_value" in changes:
        _check_threshold(
            changes.get("condition_type", row.condition_type),
            changes.get("threshold_value", row.threshold_value),
        )
    await _updated(db, principal, row, "scaling_rule", changes)
    return row


async def delete_scaling_rule(db: AsyncSession, principal: Principal, rule_id: int) -> None:
    authorize(principal, MANAGE)
    row = await _rule(db, rule_id)
    await _deleted(db, principal, row, "scaling_rule", RULE_COLUMNS)


def deciding_rule(matched: list[ScalingRule], desired: int) -> ScalingRule | None:
    """The matched rule whose count the decision took: of the scale-up rules if any matched
    (they win), else of the scale-down ones; the oldest of equals."""
    ups = [rule for rule in matched if rule.action == "scale_up"]
    candidates = [rule for rule in ups or matched if rule.worker_count == desired]
    return min(candidates, key=lambda rule: rule.id, default=None)


async def scaling_decision(db: AsyncSession, principal: Principal) -> ScalingDecisionOut:
    """The desired worker count now, the load it was judged on, and the rule that decided."""
    authorize(principal, VIEW)
    decision = await desired_workers(db, utcnow())
    matched = list(
        await db.scalars(sa.select(ScalingRule).where(ScalingRule.id.in_(decision.matched)))
    )
    rule = deciding_rule(matched, decision.desired)
    load = decision.load
    return ScalingDecisionOut(
        desired=decision.desired,
        live_workers=load.live_workers,
        due_jobs=load.due_jobs,
        running=load.running,
        capacity=load.capacity,
        load_percent=load.load_percent,
        matched_rule_ids=decision.matched,
        decided_by=ScalingRuleOut.model_validate(rule) if rule is not None else None,
    )
