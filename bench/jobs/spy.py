"""Where a worker spends its time: py-spy samples of worker processes, summed by part.

`Recording(pids, folder)` starts one `py-spy record --format raw` per process (stacks of
every thread that is not idle, 250 samples a second, without pausing the process); `stop()`
ends them with SIGINT, which makes py-spy write its file. `summary()` reads the collapsed
stacks: the share of samples with each part of a job's path anywhere on the stack, by the
library of the innermost frame, and the functions most often on top.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
RATE = 250
# Functions of a job's path, counted wherever they are on a stack (inclusive shares).
INCLUSIVE = (
    ("claim", re.compile(r"^(\w+\.)?claim \(.*jobs/leases\.py")),
    ("complete", re.compile(r"^(\w+\.)?complete \(.*jobs/leases\.py")),
    ("job attempt", re.compile(r"^(\w+\.)?_attempt \(.*jobs/worker\.py")),
    (
        "heartbeat, reclaim, schedules",
        re.compile(
            r"^(\w+\.)?(_beat|_reclaim|_sample|_schedule_loop|heartbeat|reclaim_stale|tick) \("
        ),
    ),
    ("a commit", re.compile(r"^(\w+\.)?commit \(")),
    ("aiosqlite's thread", re.compile(r"^(\w+\.)?_connection_worker_thread \(")),
)
# The innermost frame's package: where the CPU went, by library.
PACKAGES = (
    "sqlalchemy",
    "aiosqlite",
    "aiomysql",
    "pymysql",
    "realtime_cms",
    "redis",
    "asyncio",
    "pydantic",
    "uvloop",
    "greenlet",
)
_FRAME = re.compile(r"^(?P<name>[^ ]+) \((?P<file>[^:)]+)")


class Recording:
    """py-spy attached to some processes until `stop()`."""

    def __init__(self, pids: list[int], folder: Path) -> None:
        self.folder = folder
        self.paths = [folder / f"py-spy-{pid}.txt" for pid in pids]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started, self.seconds = time.monotonic(), 0.0
        if not PY_SPY.exists() and shutil.which("py-spy") is None:
            self.error = "py-spy is not installed (.venv/bin/pip install py-spy)"
            return
        self.error = ""
        binary = str(PY_SPY if PY_SPY.exists() else shutil.which("py-spy"))
        for pid, path in zip(pids, self.paths, strict=True):
            with (folder / f"py-spy-{pid}.log").open("wb") as log:
                self.procs.append(
                    subprocess.Popen(
                        [
                            binary,
                            "record",
                            "--pid",
                            str(pid),
                            "--rate",
                            str(RATE),
                            "--format",
                            "raw",
                            "--nonblocking",
                            "--output",
                            str(path),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.started
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def summary(self, jobs: int) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        stacks: Counter[tuple[str, ...]] = Counter()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                stacks.update(_read(path))
        if not stacks:
            return {"error": f"py-spy wrote no samples; see {self.folder}/py-spy-*.log"}
        return summarize(stacks, seconds=self.seconds, processes=len(self.paths), jobs=jobs)


def _read(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['name']} ({file})"


def _package(frame: str) -> str:
    file = _short(frame).rpartition("(")[2]
    return next((name for name in PACKAGES if file.startswith(name)), "other")


def summarize(
    stacks: Counter[tuple[str, ...]], *, seconds: float, processes: int, jobs: int
) -> dict[str, Any]:
    """Shares of the samples by library, by function on the stack and on top; CPU per job."""
    total = sum(stacks.values())
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    tops: Counter[str] = Counter()
    for stack, count in stacks.items():
        for name, rx in INCLUSIVE:
            if any(rx.match(frame) for frame in stack):
                inclusive[name] += count
        packages[_package(stack[-1])] += count
        tops[_short(stack[-1])] += count
    possible = RATE * seconds * processes
    return {
        "samples": total,
        # Non-idle samples of every thread over a process' wall time: its CPU use, about.
        "busy_share": round(total / possible, 3) if possible else None,
        "busy_ms_per_job": round(1000 * total / RATE / jobs, 3) if jobs else None,
        "inclusive": {name: round(count / total, 3) for name, count in inclusive.most_common()},
        "packages": {name: round(count / total, 3) for name, count in packages.most_common()},
        "top": {name: round(count / total, 3) for name, count in tops.most_common(15)},
    }
