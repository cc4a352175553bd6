"""What a process can run: every domain's job types and periodic schedules, and plugins'.

Each domain keeps its job types beside its service (`<domain>/jobs.py`, or the module that
owns the work) and lists them here. `RCMS_JOB_PLUGINS` names more modules, each with a
`register(registry)` that adds its job types and, optionally, `schedules(settings)` giving
periodic ones.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from realtime_cms import mail
from realtime_cms.accounts import jobs as accounts_jobs
from realtime_cms.config import Settings
from realtime_cms.errors import ConfigurationError
from realtime_cms.jobs import alerts, maintenance
from realtime_cms.jobs.registry import JobType, Registry
from realtime_cms.jobs.schedules import Schedule
from realtime_cms.notifications import jobs as notifications_jobs
from realtime_cms.scheduling import jobs as scheduling_jobs
from realtime_cms.versions import jobs as versions_jobs

# One line per domain.
CORE_JOB_TYPES: tuple[JobType[Any], ...] = (
    mail.SEND,
    *accounts_jobs.JOB_TYPES,
    *maintenance.JOB_TYPES,
    *alerts.JOB_TYPES,
    *notifications_jobs.JOB_TYPES,
    *versions_jobs.JOB_TYPES,
    *scheduling_jobs.JOB_TYPES,
)


def _plugins(settings: Settings) -> list[ModuleType]:
    modules = []
    for name in settings.job_plugins:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"RCMS_JOB_PLUGINS: cannot import {name}: {exc}") from exc
        if not callable(getattr(module, "register", None)):
            raise ConfigurationError(f"RCMS_JOB_PLUGINS: {name} has no register(registry)")
        modules.append(module)
    return modules


def build_registry(settings: Settings) -> Registry:
    """The core's job types, then each plugin's."""
    registry = Registry()
    for job_type in CORE_JOB_TYPES:
        registry.add(job_type)
    for module in _plugins(settings):
        module.register(registry)
    return registry


def schedules(settings: Settings) -> list[Schedule]:
    """The core's periodic work, run exactly once per slot across all workers (one line per
    domain)."""
    core = [
        Schedule("jobs.prune", maintenance.PRUNE, cron="17 * * * *"),
        Schedule("workers.monitor", alerts.MONITOR, every_seconds=alerts.MONITOR_SECONDS),
        *notifications_jobs.schedules(settings),
        versions_jobs.retention_schedule(settings),
    ]
    extra = [
        s for m in _plugins(settings) if hasattr(m, "schedules") for s in m.schedules(settings)
    ]
    return core + extra
