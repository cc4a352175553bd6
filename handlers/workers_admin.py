"""REST for the job system's monitor and autoscaler: heartbeat alerts, alert configurations,
scaling rules and the current scaling decision (realtime_cms/jobs/monitoring.py)."""

from __future__ import annotations

from datetime import datetime

from handlers.api import Call, Routes
from realtime_cms.jobs import monitoring
from realtime_cms.jobs.schemas import (
    AlertConfigurationCreate,
    AlertConfigurationOut,
    AlertConfigurationUpdate,
    AlertOut,
    AlertUpdate,
    ScalingDecisionOut,
    ScalingRuleCreate,
    ScalingRuleOut,
    ScalingRuleUpdate,
)
from realtime_cms.listing import Field, Listing, Page
from realtime_cms.models.workers import AlertConfiguration, HeartbeatAlert, ScalingRule, Worker

routes = Routes("background work")

ALERTS = "/api/v1/alerts"
ALERT = ALERTS + "/{alert_id:\\d+}"
CONFIGURATIONS = "/api/v1/alert-configurations"
CONFIGURATION = CONFIGURATIONS + "/{configuration_id:\\d+}"
RULES = "/api/v1/scaling-rules"
RULE = RULES + "/{rule_id:\\d+}"

ALERT_LISTING = Listing(
    fields={
        "id": Field(HeartbeatAlert.id, int),
        "worker_id": Field(HeartbeatAlert.worker_id),
        "hostname": Field(Worker.hostname),
        "is_suppressed": Field(HeartbeatAlert.is_suppressed, bool),
        "next_alert_level": Field(HeartbeatAlert.next_alert_level, int),
        "failure_count": Field(HeartbeatAlert.failure_count, int),
        "last_failure": Field(HeartbeatAlert.last_failure, datetime),
        "last_heartbeat": Field(Worker.last_heartbeat, datetime),
    },
    default_sort="-last_failure,id",
)
CONFIGURATION_LISTING = Listing(
    fields={
        "id": Field(AlertConfiguration.id, int),
        "alert_level": Field(AlertConfiguration.alert_level, int),
        "threshold_minutes": Field(AlertConfiguration.threshold_minutes, int),
        "is_active": Field(AlertConfiguration.is_active, bool),
    },
    default_sort="alert_level,id",
)
RULE_LISTING = Listing(
    fields={
        "id": Field(ScalingRule.id, int),
        "condition_type": Field(ScalingRule.condition_type),
        "action": Field(ScalingRule.action),
        "threshold_value": Field(ScalingRule.threshold_value, float),
        "worker_count": Field(ScalingRule.worker_count, int),
        "is_active": Field(ScalingRule.is_active, bool),
        "created_at": Field(ScalingRule.created_at, datetime),
    },
    default_sort="id",
)


# --- heartbeat alerts ----------------------------------------------------------------------


@routes.get(
    ALERTS,
    "List heartbeat alerts",
    permission=monitoring.VIEW,
    response=AlertOut,
    listing=ALERT_LISTING,
)
async def list_alerts(call: Call) -> Page[AlertOut]:
    """Every open alert (a cleared one is deleted), the latest level fired first, with its
    worker's host, pid and last heartbeat. Filter on `worker_id`, `is_suppressed`,
    `next_alert_level`, `hostname`..."""
    assert call.query is not None
    return await monitoring.list_alerts(call.db, call.principal, call.query)


@routes.get(ALERT, "Read a heartbeat alert", permission=monitoring.VIEW, response=AlertOut)
async def get_alert(call: Call) -> AlertOut:
    return await monitoring.get_alert(call.db, call.principal, call.path_int("alert_id"))


@routes.patch(
    ALERT,
    "Acknowledge (suppress) a heartbeat alert",
    permission=monitoring.MANAGE,
    body=AlertUpdate,
    response=AlertOut,
)
async def update_alert(call: Call) -> AlertOut:
    """`{"suppressed": true}` acknowledges the alert: nobody is notified of it again, while
    its escalation is still recorded (`next_alert_level`, `failure_count`). `false` lets it
    notify again from its next level. The alert clears when its process heartbeats again."""
    body: AlertUpdate = call.body
    return await monitoring.suppress_alert(
        call.db, call.principal, call.path_int("alert_id"), suppressed=body.suppressed
    )


# --- alert configurations ------------------------------------------------------------------


@routes.get(
    CONFIGURATIONS,
    "List alert configurations",
    permission=monitoring.VIEW,
    response=AlertConfigurationOut,
    listing=CONFIGURATION_LISTING,
)
async def list_alert_configurations(call: Call) -> Page[AlertConfiguration]:
    """The stored alert levels, lowest first. With none stored the monitor's defaults apply:
    level 1 after 2 minutes of silence (in-app), level 2 after 12 minutes or 10 minutes
    after level 1 (in-app and email)."""
    assert call.query is not None
    return await monitoring.list_alert_configurations(call.db, call.principal, call.query)


@routes.post(
    CONFIGURATIONS,
    "Create an alert configuration",
    permission=monitoring.MANAGE,
    body=AlertConfigurationCreate,
    response=AlertConfigurationOut,
    status=201,
)
async def create_alert_configuration(call: Call) -> AlertConfiguration:
    """A level configured already is 409 `alert_level_taken`; a bad field is 422 naming it."""
    body: AlertConfigurationCreate = call.body
    return await monitoring.create_alert_configuration(call.db, call.principal, body)


@routes.get(
    CONFIGURATION,
    "Read an alert configuration",
    permission=monitoring.VIEW,
    response=AlertConfigurationOut,
)
async def get_alert_configuration(call: Call) -> AlertConfiguration:
    return await monitoring.get_alert_configuration(
        call.db, call.principal, call.path_int("configuration_id")
    )


@routes.patch(
    CONFIGURATION,
    "Change an alert configuration",
    permission=monitoring.MANAGE,
    body=AlertConfigurationUpdate,
    response=AlertConfigurationOut,
)
async def update_alert_configuration(call: Call) -> AlertConfiguration:
    """Only the fields sent change; `escalation_after_minutes` alone may be set to null."""
    body: AlertConfigurationUpdate = call.body
    return await monitoring.update_alert_configuration(
        call.db, call.principal, call.path_int("configuration_id"), body.changes()
    )


@routes.delete(CONFIGURATION, "Delete an alert configuration", permission=monitoring.MANAGE)
async def delete_alert_configuration(call: Call) -> None:
    """With no configuration left, the monitor's defaults apply again."""
    await monitoring.delete_alert_configuration(
        call.db, call.principal, call.path_int("configuration_id")
    )


# --- scaling rules -------------------------------------------------------------------------


@routes.get(
    RULES,
    "List scaling rules",
    permission=monitoring.VIEW,
    response=ScalingRuleOut,
    listing=RULE_LISTING,
)
async def list_scaling_rules(call: Call) -> Page[ScalingRule]:
    assert call.query is not None
    return await monitoring.list_scaling_rules(call.db, call.principal, call.query)


@routes.post(
    RULES,
    "Create a scaling rule",
    permission=monitoring.MANAGE,
    body=ScalingRuleCreate,
    response=ScalingRuleOut,
    status=201,
)
async def create_scaling_rule(call: Call) -> ScalingRule:
    """`threshold_value` must mean something for `condition_type` (422 `invalid_threshold`
    naming it otherwise): due jobs >= 0, load 0-100 percent, hour of day 0 to below 24."""
    body: ScalingRuleCreate = call.body
    return await monitoring.create_scaling_rule(call.db, call.principal, body)


@routes.get(RULE, "Read a scaling rule", permission=monitoring.VIEW, response=ScalingRuleOut)
async def get_scaling_rule(call: Call) -> ScalingRule:
    return await monitoring.get_scaling_rule(call.db, call.principal, call.path_int("rule_id"))


@routes.patch(
    RULE,
    "Change a scaling rule",
    permission=monitoring.MANAGE,
    body=ScalingRuleUpdate,
    response=ScalingRuleOut,
)
async def update_scaling_rule(call: Call) -> ScalingRule:
    """Only the fields sent change; the threshold is checked against the rule's condition as
    it will be."""
    body: ScalingRuleUpdate = call.body
    return await monitoring.update_scaling_rule(
        call.db, call.principal, call.path_int("rule_id"), body.changes()
    )


@routes.delete(RULE, "Delete a scaling rule", permission=monitoring.MANAGE)
async def delete_scaling_rule(call: Call) -> None:
    await monitoring.delete_scaling_rule(call.db, call.principal, call.path_int("rule_id"))


@routes.get(
    "/api/v1/scaling/decision",
    "Read the scaling decision",
    permission=monitoring.VIEW,
    response=ScalingDecisionOut,
)
async def scaling_decision(call: Call) -> ScalingDecisionOut:
    """The worker count the active rules ask for now (`rcms_workers_desired` on /metrics),
    the load it was judged on, the rules that matched and the one whose count won."""
    return await monitoring.scaling_decision(call.db, call.principal)
