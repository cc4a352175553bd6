"""Recipes of the monitor's and autoscaler's operations: heartbeat alerts, alert
configurations, scaling rules and the scaling decision.

Importing this module registers them in `tests.security.recipes.RECIPES`. An alert belongs to
a `workers` row with no process behind it, which the server's own monitor (it judges
processes) leaves alone; each stored level has a level number of its own.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

from realtime_cms.models.base import utcnow
from realtime_cms.models.workers import AlertConfiguration, HeartbeatAlert, ScalingRule, Worker
from tests.security.principals import Who
from tests.security.recipes import Request, recipe
from tests.security.world import World

_levels = itertools.count(10)


def a_level() -> dict[str, object]:
    return {
        "alert_level": next(_levels),
        "threshold_minutes": 60,
        "notification_channels": ["in_app"],
    }


@recipe("list_alerts", "list_alert_configurations", "list_scaling_rules", "scaling_decision")
async def no_inputs(world: World, who: Who) -> Request:
    return Request()


async def an_alert(world: World) -> int:
    worker = await world.add(
        Worker(
            worker_id=str(uuid.uuid4()),
            type="job_process",
            hostname="matrix",
            last_heartbeat=utcnow() - timedelta(days=1),
        )
    )
    alert = await world.add(HeartbeatAlert(worker_id=worker.worker_id, next_alert_level=2))
    return alert.id


@recipe("get_alert")
async def alert(world: World, who: Who) -> Request:
    return Request({"alert_id": await an_alert(world)})


@recipe("update_alert")
async def suppress_alert(world: World, who: Who) -> Request:
    return Request({"alert_id": await an_alert(world)}, json={"suppressed": True})


@recipe("create_alert_configuration")
async def create_alert_configuration(world: World, who: Who) -> Request:
    return Request(json=a_level())


async def a_configuration(world: World) -> int:
    return (await world.add(AlertConfiguration(**a_level()))).id


@recipe("get_alert_configuration", "delete_alert_configuration")
async def configuration(world: World, who: Who) -> Request:
    return Request({"configuration_id": await a_configuration(world)})


@recipe("update_alert_configuration")
async def update_alert_configuration(world: World, who: Who) -> Request:
    params = {"configuration_id": await a_configuration(world)}
    return Request(params, json={"escalation_after_minutes": 30})


@recipe("create_scaling_rule")
async def create_scaling_rule(world: World, who: Who) -> Request:
    body = {
        "condition_type": "queue_length",
        "threshold_value": 100,
        "action": "scale_up",
        "worker_count": 2,
    }
    return Request(json=body)


async def a_rule(world: World) -> int:
    rule = ScalingRule(
        condition_type="worker_load", threshold_value=90, action="scale_up", worker_count=2
    )
    return (await world.add(rule)).id


@recipe("get_scaling_rule", "delete_scaling_rule")
async def rule(world: World, who: Who) -> Request:
    return Request({"rule_id": await a_rule(world)})


@recipe("update_scaling_rule")
async def update_scaling_rule(world: World, who: Who) -> Request:
    return Request({"rule_id": await a_rule(world)}, json={"worker_count": 3})
