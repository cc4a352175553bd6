"""The job benchmark's table: figures against the issue's floors, and published anchors.

Floors (the job system's issue, on this 2-core machine): >= 500 no-op jobs/s on MariaDB,
>= 300 on SQLite, wake-up p99 < 50 ms with Redis, a killed process' jobs reclaimed within
3 heartbeats (the kill -9 soak's). A missed floor is reported, never failed.
Anchors are other queues' published figures, printed for scale and not measured here.
"""

from __future__ import annotations

from typing import Any

FLOORS = {"mariadb": 500.0, "sqlite": 300.0}
WAKEUP_P99_MS = 50.0
RECLAIM_HEARTBEATS = 3.0  # the slowest reclaim of a run, kill to jobs queued again
ANCHORS = (
    "Solid Queue (Rails, published): ~350-400 jobs/s per MySQL database",
    "Laravel database queue (published): ~350-400 jobs/s on MySQL",
)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def throughput_line(row: dict[str, Any]) -> str:
    floor = FLOORS[row["backend"]]
    rate = row["jobs_per_second"]
    broken = "" if row["ok"] else f"  BROKEN: {row['completed']}/{row['jobs']} completed"
    server = row.get("server_cpu_ms_per_job")
    return (
        f"throughput {row['backend']:<8} {row['workers']} worker(s) x {row['concurrency']}: "
        f"{rate:7.1f} jobs/s (steady {row['steady_jobs_per_second']:.1f}; worker CPU "
        f"{row['worker_cpu_ms_per_job']} ms/job"
        + (f", server {server} ms/job" if server is not None else "")
        + f"; load {_load(row)}) "
        f"floor {floor:.0f}: x{rate / floor:.2f} {_verdict(rate >= floor)}{broken}"
    )


def _load(row: dict[str, Any]) -> str:
    return " -> ".join(f"{x:.2f}" for x in row.get("load", ())) or "-"


def _server(row: dict[str, Any]) -> str:
    server = row.get("server_cpu_ms_per_job")
    return "-" if server is None else f"{server} ms"


def enqueue_line(row: dict[str, Any]) -> str:
    a, b = row["without"], row["with"]
    return (
        f"enqueue    {row['backend']:<8} tx p50/p99 {a['p50']:.2f}/{a['p99']:.2f} ms -> "
        f"with enqueue {b['p50']:.2f}/{b['p99']:.2f} ms "
        f"({row['delta_p50']:+.2f}/{row['delta_p99']:+.2f})"
    )


def wakeup_line(row: dict[str, Any]) -> str:
    tail = ""
    if row["mode"] == "redis":
        tail = f"  target p99 < {WAKEUP_P99_MS:.0f} ms: {_verdict(row['p99'] < WAKEUP_P99_MS)}"
    return (
        f"wake-up    {row['backend']:<8} {row['mode']:<8} p50 {row['p50']:8.2f} ms  "
        f"p99 {row['p99']:8.2f} ms  max {row['max']:8.2f} ms (n {row['n']}){tail}"
    )


def _reclaim_verdict(row: dict[str, Any]) -> str:
    top = row["back"]["max_heartbeats"]
    if top is None:
        return "-"
    return (
        f"<= {RECLAIM_HEARTBEATS:.0f} heartbeats: x{top / RECLAIM_HEARTBEATS:.2f} "
        f"{_verdict(top <= RECLAIM_HEARTBEATS)}"
    )


def _seconds(spread: dict[str, Any], key: str) -> str:
    return "-" if spread[key] is None else f"{spread[key]:.2f}"


def reclaim_line(row: dict[str, Any]) -> str:
    back, dead = row["back"], row["dead"]
    broken = f"  BROKEN: {row['broken']}" if row["broken"] else ""
    others = (
        f"; {row['others_declared_dead']} live process(es) declared dead"
        if row["others_declared_dead"]
        else ""
    )
    return (
        f"reclaim    {row['backend']:<8} kill -9 x{row['kills']} (heartbeat "
        f"{row['heartbeat_seconds']:g} s): jobs back p50 {_seconds(back, 'p50')} s, max "
        f"{_seconds(back, 'max')} s = {_seconds(back, 'p50_heartbeats')} / "
        f"{_seconds(back, 'max_heartbeats')} heartbeats (process failed p50 "
        f"{_seconds(dead, 'p50')} s, max {_seconds(dead, 'max')} s){others}  target "
        f"{_reclaim_verdict(row)}{broken}"
    )


def profile_lines(profile: dict[str, Any]) -> str:
    if "error" in profile:
        return f"  profile: {profile['error']}"

    def sql(kind: str, figures: dict[str, Any]) -> str:
        mean = figures["mean_ms"]
        return f"{kind} {figures['per_job']}" + (f" ({mean:.2f} ms each)" if mean else "")

    statements = ", ".join(sql(kind, figures) for kind, figures in profile["sql_per_job"].items())

    def shares(key: str, count: int = 8) -> str:
        return ", ".join(
            f"{name} {share:.0%}" for name, share in list(profile[key].items())[:count]
        )

    return "\n".join(
        [
            f"  profile: {profile['jobs_per_second_under_py_spy']} jobs/s under py-spy; worker "
            f"CPU {profile['busy_ms_per_job']} ms per job (threads busy {profile['busy_share']:.0%}"
            f" of the processes' time); per job: {statements or 'no SQL counted'}",
            f"    samples with, on the stack: {shares('inclusive')}",
            f"    by the innermost frame's library: {shares('packages')}",
            f"    on top of the stack: {shares('top')}",
        ]
    )


def render(record: dict[str, Any]) -> str:
    m = record["machine"]
    args = record["args"]
    out = [
        f"# Jobs benchmark {record['stamp']}",
        "",
        f"{m['cpus']} CPUs ({m['cpu']}), load {m['load']} at start; Python {m['python']}, "
        f"SQLite {m['sqlite']}, MariaDB {m['mariadb']} "
        f"(innodb_flush_log_at_trx_commit={args['mariadb_flush']}); {record['seconds']} s.",
    ]
    backends = record["backends"].values()
    if any(result["throughput"] for result in backends):
        out += _throughput_table(record)
    if any(result["enqueue"] for result in backends):
        out += _enqueue_table(record)
    if any(result["wakeup"] for result in backends):
        out += _wakeup_table(record)
    if any(result.get("reclaim") for result in backends):
        out += _reclaim_table(record)
    out += ["", *record["notes"]]
    return "\n".join(out) + "\n"


def _throughput_table(record: dict[str, Any]) -> list[str]:
    args = record["args"]
    out = [
        "",
        f"## Throughput: a backlog of {args['jobs']} no-op jobs, {args['concurrency']} at "
        "once per worker process",
        "",
        "| backend | workers | jobs/s (commit to last) | steady 10-90 % | worker CPU per job "
        "| server CPU per job | load | floor | ratio | |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result in record["backends"].items():
        for row in result["throughput"]:
            floor = FLOORS[name]
            rate = row["jobs_per_second"]
            out.append(
                f"| {name} | {row['workers']} | {rate:.1f} | {row['steady_jobs_per_second']:.1f} "
                f"| {row['worker_cpu_ms_per_job']} ms | {_server(row)} | {_load(row)} "
                f"| {floor:.0f} | x{rate / floor:.2f} "
                f"| {_verdict(rate >= floor)} |"
            )
    out += ["", "Anchors, published figures (not measured here):"]
    out += [f"- {anchor}" for anchor in ANCHORS]
    out += _profiles(record)
    return out


def _enqueue_table(record: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Enqueue latency: a request-like transaction (insert a row, commit)",
        "",
        "| backend | without enqueue p50 / p99 | with enqueue p50 / p99 | delta p50 / p99 |",
        "|---|---|---|---|",
    ]
    for name, result in record["backends"].items():
        row = result["enqueue"]
        if row is None:
            continue
        a, b = row["without"], row["with"]
        out.append(
            f"| {name} | {a['p50']:.2f} / {a['p99']:.2f} ms | {b['p50']:.2f} / {b['p99']:.2f} ms "
            f"| {row['delta_p50']:+.2f} / {row['delta_p99']:+.2f} ms |"
        )
    return out


def _wakeup_table(record: dict[str, Any]) -> list[str]:
    out = [
        "",
        "## Wake-up latency: commit to handler start, one idle worker",
        "",
        "| backend | wake-up | p50 | p99 | max | n | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, result in record["backends"].items():
        for row in result["wakeup"]:
            target = (
                f"p99 < {WAKEUP_P99_MS:.0f} ms: x{row['p99'] / WAKEUP_P99_MS:.2f} "
                f"{_verdict(row['p99'] < WAKEUP_P99_MS)}"
                if row["mode"] == "redis"
                else "-"
            )
            out.append(
                f"| {name} | {row['mode']} | {row['p50']:.2f} ms | {row['p99']:.2f} ms "
                f"| {row['max']:.2f} ms | {row['n']} | {target} |"
            )
    return out


def _reclaim_table(record: dict[str, Any]) -> list[str]:
    args = record["args"]
    out = [
        "",
        f"## Reclaim after kill -9: 3 workers, a {args['heartbeat_seconds']:g} s heartbeat, "
        "one holding jobs SIGKILLed (and restarted) at a time",
        "",
        "Seconds from the SIGKILL until the process' row is `failed`, and until none of its "
        "jobs is `processing` under it (queued again), to within 50 ms; and from the killed "
        "process' last heartbeat to its jobs back (the stale window, 2.5 heartbeats by default, "
        "and the wait for a peer's sweep, every half heartbeat).",
        "",
        "| backend | kills | jobs held | process failed p50 / max | jobs back p50 / max "
        "| in heartbeats p50 / max | target | from its last heartbeat p50 / max | lost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for name, result in record["backends"].items():
        row = result.get("reclaim")
        if row is None:
            continue
        back, dead, beat = row["back"], row["dead"], row["back_since_last_heartbeat"]
        out.append(
            f"| {name} | {row['kills']} | {row['jobs_held']} "
            f"| {_seconds(dead, 'p50')} / {_seconds(dead, 'max')} s "
            f"| {_seconds(back, 'p50')} / {_seconds(back, 'max')} s "
            f"| {_seconds(back, 'p50_heartbeats')} / {_seconds(back, 'max_heartbeats')} "
            f"| {_reclaim_verdict(row)} "
            f"| {_seconds(beat, 'p50_heartbeats')} / {_seconds(beat, 'max_heartbeats')} "
            f"heartbeats | {row['lost']} of {row['enqueued']} |"
        )
        load = " -> ".join(f"{x:.2f}" for x in row["load"])
        notes.append(f"- {name}: load {load} (1-minute average, before -> after)")
        if row["others_declared_dead"]:
            notes.append(
                f"- {name}: {row['others_declared_dead']} process(es) not killed were declared "
                "dead too (a heartbeat later than the stale window)"
            )
        if row["broken"]:
            notes.append(f"- {name}: BROKEN: {row['broken']}")
    return [*out, "", *notes]


def _profiles(record: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, result in record["backends"].items():
        for row in result["throughput"]:
            if "profile" in row:
                lines += [
                    "",
                    f"Profile, {name}, {row['workers']} worker(s):",
                    "",
                    profile_lines(row["profile"]),
                ]
    return lines


def all_ok(record: dict[str, Any]) -> bool:
    return all(
        row["ok"]
        for result in record["backends"].values()
        for row in (
            *result["throughput"],
            *filter(None, [result["enqueue"], result.get("reclaim")]),
            *result["wakeup"],
        )
    )
