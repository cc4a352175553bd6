"""Worker processes for the job-system soak tests: `realtime-cms worker` run as a child."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


def worker_env(database_url: str, redis_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a worker taking the probe queue, with a 1-second heartbeat."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RCMS_")}
    env.update(
        RCMS_DATABASE_URL=database_url,
        RCMS_SECRET_KEY="soak-" + "x" * 40,
        RCMS_REDIS_PREFIX=f"rcms-soak-{os.getpid()}:",
        RCMS_JOB_PLUGINS="tests.jobs.probe",
        RCMS_JOB_QUEUES="probe",
        RCMS_JOB_HEARTBEAT_SECONDS="1",
        RCMS_JOB_CONCURRENCY="5",
        RCMS_JOB_GRACE_SECONDS="5",
        RCMS_LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    if redis_url:
        env["RCMS_REDIS_URL"] = redis_url
    return env


class WorkerProcess:
    """One `python -m handlers worker` child; its output goes to `log`."""

    def __init__(self, env: dict[str, str], log: IO[bytes]) -> None:
        self._env = env
        self._log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "handlers", "worker"],
            cwd=ROOT,
            env=self._env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        """SIGKILL: no chance to release its jobs or deregister."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the graceful stop; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)
