"""Scaling rules into a desired worker count."""

from __future__ import annotations

from datetime import UTC, datetime

from realtime_cms.jobs.scaling import Load, decide
from realtime_cms.models.workers import ScalingRule

NOON = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _rule(
    id: int, condition: str, threshold: float, action: str, count: int, active: bool = True
) -> ScalingRule:
    return ScalingRule(
        id=id,
        condition_type=condition,
        threshold_value=threshold,
        action=action,
        worker_count=count,
        is_active=active,
    )


def _load(due: int = 0, live: int = 2, running: int = 0, capacity: int = 20) -> Load:
    return Load(due_jobs=due, live_workers=live, running=running, capacity=capacity)


def test_no_matching_rule_keeps_the_current_count() -> None:
    rules = [_rule(1, "queue_length", 1000, "scale_up", 8)]
    assert decide(rules, _load(due=10, live=3), NOON).desired == 3


def test_a_long_queue_scales_up_and_a_short_one_down() -> None:
    rules = [
        _rule(1, "queue_length", 500, "scale_up", 6),
        _rule(2, "queue_length", 10, "scale_down", 1),
    ]
    assert decide(rules, _load(due=800), NOON).desired == 6
    assert decide(rules, _load(due=3), NOON).desired == 1
    assert decide(rules, _load(due=100, live=4), NOON).desired == 4


def test_scaling_up_wins_over_scaling_down() -> None:
    rules = [
        _rule(1, "worker_load", 80, "scale_up", 5),
        _rule(2, "queue_length", 10, "scale_down", 1),
    ]
    decision = decide(rules, _load(due=0, running=18, capacity=20), NOON)
    assert (decision.desired, decision.matched) == (5, [1, 2])


def test_the_time_rule_that_came_last_is_in_force() -> None:
    rules = [
        _rule(1, "time_of_day", 8, "scale_up", 4),
        _rule(2, "time_of_day", 20, "scale_down", 1),
    ]
    assert decide(rules, _load(), NOON).desired == 4
    assert decide(rules, _load(), NOON.replace(hour=21)).desired == 1
    # Before 08:00 yesterday's 20:00 rule is still in force.
    assert decide(rules, _load(), NOON.replace(hour=6)).desired == 1


def test_inactive_rules_do_not_count() -> None:
    rules = [_rule(1, "queue_length", 0, "scale_up", 9, active=False)]
    assert decide(rules, _load(due=50, live=2), NOON).desired == 2
