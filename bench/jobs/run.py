"""Job-system benchmark: jobs/s, enqueue and wake-up latency, kill -9 reclaim; SQLite, MariaDB.

    .venv/bin/python bench/jobs/run.py                  # make bench-jobs: the full run, minutes
    .venv/bin/python bench/jobs/run.py --smoke          # seconds: it all still works (CI)
    .venv/bin/python bench/jobs/run.py --backends mariadb --workers 3 --jobs 20000
    .venv/bin/python bench/jobs/run.py --parts reclaim  # only the kill -9 runs, both backends

For each backend (a fresh SQLite file on disk; a throwaway MariaDB with a throwaway Redis,
started as the test suite starts them, tests/support/servers.py) it migrates the database
with `realtime-cms migrate`, then measures (bench/jobs/measure.py says how):

1. throughput: a backlog of --jobs no-op jobs through 1 and 3 `realtime-cms worker`
   processes (--workers, --concurrency each), jobs/s against the issue's floor;
2. enqueue latency: a request-like transaction with and without an `enqueue`;
3. wake-up latency: commit -> handler start with an idle worker, woken through Redis, by
   polling (no Redis), and in-process (`embedded`, the worker `serve` runs by default);
4. reclaim after kill -9: 3 workers with a --heartbeat-seconds heartbeat run half-second
   jobs; one holding jobs is SIGKILLed and replaced, --kills times: seconds (and heartbeats)
   until its jobs are queued again, against the soak's target of 3 heartbeats.

A throughput under its floor is reported, not failed: the run is then repeated with py-spy
on the workers and SQL counting in them (--profile auto), and the table says where a worker
spends its time per job. A reclaim slower than its target is reported too. Only a broken
run (a worker that fails, a job not done or lost, a killed worker's jobs not back within
60 s) exits 1.
Results: bench/results/jobs-<UTC stamp>/ (results.json, results.md, the workers' logs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.jobs import measure, plugin, report, spy  # noqa: E402
from realtime_cms.db import create_engine  # noqa: E402
from tests.support.servers import (  # noqa: E402
    MariaDBServer,
    RedisServer,
    ServerError,
    find_binary,
)

# The smoke run's counts (CI: under two minutes with MariaDB's start); a short poll interval.
SMOKE: dict[str, Any] = {
    "workers": [2],  # one run, two processes: claims across processes still meet
    "jobs": 200,
    "enqueue_samples": 30,
    "wakeup_samples": 10,
    "polling_samples": 3,
    "poll_seconds": 0.25,
    "kills": 2,
}


PARTS = ("throughput", "enqueue", "wakeup", "reclaim")


class BenchMariaDB(MariaDBServer):
    """The test suite's throwaway MariaDB with a chosen commit flush (the tests use 0):
    1 is MariaDB's default (the redo log written and fsynced at each commit), 2 writes it
    at each commit and fsyncs once a second, like SQLite's WAL with synchronous=NORMAL."""

    def __init__(self, flush: int) -> None:
        super().__init__()
        self.flush = flush

    def _command(self) -> list[str]:
        return [
            f"--innodb-flush-log-at-trx-commit={self.flush}"
            if option.startswith("--innodb-flush-log-at-trx-commit=")
            else option
            for option in super()._command()
        ]

    def version(self) -> str:
        return self.execute("SELECT VERSION()").strip()


@contextlib.contextmanager
def servers(args: argparse.Namespace, notes: list[str]) -> Iterator[dict[str, Any]]:
    """MariaDB and Redis if their binaries are here (else noted UNAVAILABLE)."""
    found: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if "mariadb" in args.backends:
            if all(find_binary(name) for name in MariaDBServer.BINARIES):
                found["mariadb"] = stack.enter_context(BenchMariaDB(args.mariadb_flush))
            else:
                notes.append(
                    "UNAVAILABLE mariadb: mariadbd not found (apt-get install mariadb-server)"
                )
        if find_binary("redis-server"):
            found["redis"] = stack.enter_context(RedisServer())
        else:
            notes.append("UNAVAILABLE redis: redis-server not found: no Redis wake-ups")
        yield found


def backend_for(name: str, found: dict[str, Any], out: Path, patch: str) -> measure.Backend:
    redis = found["redis"].url if "redis" in found else None
    if name == "sqlite":
        url = f"sqlite+aiosqlite:///{out / 'bench.sqlite3'}"
        return measure.Backend(name, url, redis, patch=patch)
    url = found["mariadb"].create_database("bench_jobs")
    return measure.Backend(name, url, redis, patch=patch, server_pid=found["mariadb"].pid)


async def prepare(backend: measure.Backend, out: Path) -> None:
    await asyncio.to_thread(measure.migrate, backend, out / "migrate.log")
    engine = create_engine(backend.database_url)
    try:
        await plugin.create_tables(engine)
    finally:
        await engine.dispose()


async def throughputs(
    backend: measure.Backend, args: argparse.Namespace, out: Path
) -> list[dict[str, Any]]:
    """Each worker count once; again under py-spy where the floor was missed (--profile)."""
    rows = []
    async with measure.Client.open(backend, redis=backend.redis_url is not None) as client:
        for workers in args.workers:
            common = {
                "workers": workers,
                "jobs": args.jobs,
                "concurrency": args.concurrency,
                "give_up_after": args.timeout,
            }
            row = await measure.throughput(client, backend, out / "workers.log", **common)
            print(report.throughput_line(row), flush=True)
            missed = row["jobs_per_second"] < report.FLOORS[backend.name]
            if args.profile == "always" or (args.profile == "auto" and missed):
                row["profile"] = await profiled(client, backend, out, common)
                print(report.profile_lines(row["profile"]), flush=True)
            rows.append(row)
    return rows


async def profiled(
    client: measure.Client, backend: measure.Backend, out: Path, common: dict[str, Any]
) -> dict[str, Any]:
    """The same run with py-spy on every worker and SQL counted in them."""
    folder = out / f"profile-{backend.name}-{common['workers']}w"
    folder.mkdir()
    extra = {plugin.SQL_COUNTS_ENV: str(folder)}

    def record(pids: list[int]) -> spy.Recording:
        return spy.Recording(pids, folder)

    row = await measure.throughput(
        client, backend, folder / "workers.log", extra_env=extra, on_started=record, **common
    )
    recording: spy.Recording = row.pop("hooked")
    recording.stop()
    summary = recording.summary(row["completed"])
    summary["jobs_per_second_under_py_spy"] = row["jobs_per_second"]
    summary["sql_per_job"] = sql_per_job(folder, row["completed"])
    summary["folder"] = str(folder)
    return summary


def sql_per_job(folder: Path, jobs: int) -> dict[str, dict[str, float | None]]:
    """Statements and commits per job, over every worker process of the run (what they
    sent from start to stop, heartbeats and scheduler ticks included), and the mean wall
    time of each kind of statement (waiting for a lock included)."""
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for path in folder.glob("sql-*.json"):
        record = json.loads(path.read_text())
        for kind, count in record["count"].items():
            counts[kind] = counts.get(kind, 0) + count
        for kind, spent in record["seconds"].items():
            seconds[kind] = seconds.get(kind, 0.0) + spent
    if not jobs:
        return {}
    return {
        kind: {
            "per_job": round(count / jobs, 2),
            "mean_ms": round(1000 * seconds[kind] / count, 3) if kind in seconds else None,
        }
        for kind, count in sorted(counts.items())
    }


async def one_backend(
    name: str, found: dict[str, Any], args: argparse.Namespace, out: Path
) -> dict[str, Any]:
    folder = out / name
    folder.mkdir()
    backend = backend_for(name, found, folder, args.patch)
    await prepare(backend, folder)
    result: dict[str, Any] = {"throughput": [], "enqueue": None, "wakeup": [], "reclaim": None}
    if "throughput" in args.parts:
        result["throughput"] = await throughputs(backend, args, folder)
    if "enqueue" in args.parts:
        async with measure.Client.open(backend, redis=backend.redis_url is not None) as client:
            result["enqueue"] = await measure.enqueue_latency(
                client, backend, samples=args.enqueue_samples
            )
        print(report.enqueue_line(result["enqueue"]), flush=True)
    if "wakeup" in args.parts:
        modes = [("redis", args.wakeup_samples)] if backend.redis_url else []
        modes += [("polling", args.polling_samples), ("embedded", args.wakeup_samples)]
        for mode, samples in modes:
            row = await measure.wakeup_latency(
                backend,
                folder / "workers.log",
                mode=mode,
                samples=samples,
                poll_seconds=args.poll_seconds,
            )
            print(report.wakeup_line(row), flush=True)
            result["wakeup"].append(row)
    if "reclaim" in args.parts:
        async with measure.Client.open(backend, redis=backend.redis_url is not None) as client:
            result["reclaim"] = await measure.reclaim_after_kill(
                client,
                backend,
                folder / "workers.log",
                kills=args.kills,
                heartbeat_seconds=args.heartbeat_seconds,
            )
        print(report.reclaim_line(result["reclaim"]), flush=True)
    return result


def machine(found: dict[str, Any]) -> dict[str, str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "mariadb": found["mariadb"].version() if "mariadb" in found else "-",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


async def main_async(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    notes: list[str] = []
    record: dict[str, Any] = {
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "notes": notes,
        "backends": {},
    }
    with servers(args, notes) as found:
        record["machine"] = machine(found)
        for name in args.backends:
            if name == "mariadb" and "mariadb" not in found:
                continue
            record["backends"][name] = await one_backend(name, found, args, out)
    return record


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, no profile (CI)")
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--parts", default=",".join(PARTS), help="which measurements")
    parser.add_argument("--workers", default="1,3", help="worker process counts")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per process")
    parser.add_argument("--jobs", type=int, default=5000, help="the backlog")
    parser.add_argument("--enqueue-samples", type=int, default=500)
    parser.add_argument("--wakeup-samples", type=int, default=200)
    parser.add_argument("--polling-samples", type=int, default=40)
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=1.0,
        help="RCMS_JOB_POLL_SECONDS of the workers (the product's default)",
    )
    parser.add_argument("--kills", type=int, default=10, help="kill -9 runs per backend")
    parser.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=1.0,
        help="RCMS_JOB_HEARTBEAT_SECONDS of the kill -9 runs' workers (the soak test's)",
    )
    parser.add_argument(
        "--mariadb-flush",
        type=int,
        choices=(0, 1, 2),
        default=1,
        help="innodb_flush_log_at_trx_commit (1: MariaDB's durable default)",
    )
    parser.add_argument(
        "--patch",
        default="",
        help="run the workers with candidate changes "
        f"(bench/jobs/plugin.py: {', '.join(plugin.PATCHES)})",
    )
    parser.add_argument("--profile", choices=("auto", "always", "never"), default="auto")
    parser.add_argument("--timeout", type=float, default=300.0, help="per throughput run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    args.backends = [b for b in args.backends.split(",") if b]
    args.workers = [int(w) for w in args.workers.split(",") if w]
    args.parts = [p for p in args.parts.split(",") if p]
    if unknown := set(args.parts) - set(PARTS):
        parser.error(f"--parts: unknown {sorted(unknown)}")
    if unknown := set(args.backends) - set(report.FLOORS):
        parser.error(f"--backends: unknown {sorted(unknown)}")
    if unknown := set(filter(None, args.patch.split(","))) - set(plugin.PATCHES):
        parser.error(f"--patch: unknown {sorted(unknown)}")
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.profile = "never"
    return args


def main() -> int:
    args = parse()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"jobs-{stamp}"
    out.mkdir(parents=True)
    started = time.monotonic()
    try:
        record = asyncio.run(main_async(args, out))
    except (ServerError, RuntimeError, OSError) as failed:
        print(f"FAILED: {failed} (logs in {out})")
        return 1
    record["stamp"], record["seconds"] = stamp, round(time.monotonic() - started)
    (out / "results.json").write_text(json.dumps(record, indent=1))
    text = report.render(record)
    (out / "results.md").write_text(text)
    print("\n" + text)
    print(f"results: {out}")
    return 0 if report.all_ok(record) else 1


if __name__ == "__main__":
    sys.exit(main())
