"""Benchmark orchestrator: every server fresh per run, interleaved, the Node generator as load.

    bench/.venv/bin/python bench/run.py --profile smoke     # seconds per server: does it all work
    bench/.venv/bin/python bench/run.py --profile full      # the matrix of docs/benchmarks.md
    bench/.venv/bin/python bench/run.py --scenarios s1,s4 --servers ours-collab,hocuspocus \
        --modes memory --reps 3 --scale 0.5

For each scenario, repetition, server and persistence mode (in that nesting, so servers
alternate A/B/A/B), it starts the server pinned to CPU 0 in a fresh temporary directory, runs
`node bench/loadgen/main.mjs` pinned to CPU 1 and stops the server. S5 asks for restarts
between its parts (a `{"restart": true}` line from the generator, answered on its stdin): the
same server is stopped and started again on its data. Results go to
bench/results/<UTC stamp>/ (raw.jsonl, results.md, *.png) and bench/results/latest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import s5_parts, write_report  # noqa: E402
from servers.catalog import BENCH, SERVERS, Launch, Unavailable  # noqa: E402

TRACE = BENCH.parent.parent / "shared" / "bench-data" / "automerge-paper.json.gz"
SERVER_CPU, GENERATOR_CPU = "0", "1"
START_TIMEOUT = 60.0
LOADGEN = BENCH / "loadgen" / "main.mjs"

# Scenario parameters; --scale multiplies the counts marked in SCALED.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "s1": {"docs": 100, "editors": 5, "rate": 5, "seconds": 120, "warmup": 10, "witnesses": 3},
        "s2": {"docs": 4, "editors": 5, "rate": 5, "growth": 1.5, "seconds": 30, "warmup": 5,
               "maxDocs": 2000, "witnesses": 2},
        "s3": {"sizes": [2, 5, 10, 20, 50, 100, 200], "rate": 5, "seconds": 20, "warmup": 3,
               "witnesses": 2},
        "s4": {"rates": [250, 500, 1000, 2000, 4000, 8000, 16000], "seconds": 10, "all": False},
        # patches 0: the whole trace. chunkBytes: the seed's updates stay under ours' default
        # 256 KiB limit (RCMS_COLLAB_MAX_UPDATE_BYTES); the whole doc is ~290 KB.
        "s5": {"patches": 0, "chunkBytes": 131072, "joins": 50, "joinTimeout": 60, "settle": 3,
               "docs": 1000, "connections": 10000, "hold": 10, "connectRate": 500,
               "connectConcurrency": 50, "rampSeconds": 120},
    },
    "smoke": {
        "s1": {"docs": 2, "editors": 3, "rate": 5, "seconds": 1.5, "warmup": 0.5, "witnesses": 1,
               "grace": 1},
        "s2": {"docs": 2, "editors": 3, "rate": 5, "growth": 2, "seconds": 1, "warmup": 0.5,
               "maxDocs": 4, "witnesses": 1, "grace": 1},
        "s3": {"sizes": [2, 4], "rate": 5, "seconds": 1, "warmup": 0.5, "witnesses": 1,
               "grace": 1},
        "s4": {"rates": [100, 300], "seconds": 1, "all": False},
        "s5": {"patches": 3000, "chunkBytes": 131072, "joins": 5, "joinTimeout": 30, "settle": 1,
               "docs": 10, "connections": 50, "hold": 1, "connectRate": 500,
               "connectConcurrency": 20, "rampSeconds": 30},
    },
}
SCALED = {"s1": ("docs", "seconds"), "s2": ("seconds", "maxDocs"), "s3": ("seconds",),
          "s4": ("seconds",), "s5": ("joins", "docs", "connections", "hold")}
# S4 floods one connection: ours runs it with the rate limit lifted (see the catalog).
DEFAULT_SERVERS = {
    "s1": ["ours-collab", "ours-collab-msgpack", "ours-ws", "ours-ysio", "y-websocket",
           "hocuspocus", "pycrdt-websocket", "floor-relay", "floor-crdt"],
    "s2": ["ours-collab", "ours-collab-msgpack", "ours-ws", "y-websocket", "hocuspocus",
           "pycrdt-websocket", "floor-relay", "floor-crdt"],
    "s3": ["ours-collab", "ours-collab-msgpack", "ours-ws", "y-websocket", "hocuspocus",
           "pycrdt-websocket", "floor-relay", "floor-crdt"],
    "s4": ["ours-collab", "ours-collab-tuned", "ours-collab-msgpack-tuned", "ours-ws-tuned",
           "y-websocket", "hocuspocus", "pycrdt-websocket", "floor-crdt"],
    # The *-tuned servers differ from their untuned ones only in the rate limit, which S5
    # never meets.
    "s5": ["ours-collab", "ours-collab-msgpack", "ours-ws", "ours-ysio", "y-websocket",
           "hocuspocus", "pycrdt-websocket", "floor-relay", "floor-crdt"],
}
# The smoke run proves every server and adapter with S1 (in memory, and durable where the
# persistence differs), and each other scenario on two servers (the tuned one in S4). The
# *-tuned servers only lift a rate limit: S1 would prove nothing more with them.
SMOKE_RUNS = {
    *(("s1", server, "memory") for server in SERVERS if not server.endswith("-tuned")),
    *(("s1", server, "durable") for server in
      ("ours-collab", "y-websocket", "hocuspocus", "pycrdt-websocket")),
    ("s2", "ours-collab", "memory"), ("s2", "y-websocket", "memory"),
    ("s3", "ours-ws", "memory"), ("s3", "hocuspocus", "memory"),
    ("s4", "ours-collab-tuned", "memory"), ("s4", "floor-crdt", "memory"),
    ("s5", "ours-collab", "durable"), ("s5", "y-websocket", "memory"),
}


def raise_open_files(wanted: int = 65536) -> None:
    """S5 holds 10,000 connections: the servers and the generator inherit this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else max(hard, wanted)
    for limit in ((target, target), (hard, hard)):  # raising the hard limit needs root
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, limit)
            return


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str, argv: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    if taskset and (os.cpu_count() or 1) >= 2:
        return [taskset, "-c", cpu, *argv]
    return argv


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited {process.returncode}: {tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"server not listening after {START_TIMEOUT:.0f} s: {tail(log)}")


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-1500:] if log.exists() else ""


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class Server:
    """One server under test in its directory: started, restarted on the same port and data
    (S5 asks for that between its parts), stopped."""

    def __init__(self, launch: Launch, workdir: Path, port: int) -> None:
        self.launch, self.workdir, self.port = launch, workdir, port
        self.log = workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                pinned(SERVER_CPU, self.launch.argv), cwd=self.workdir, env=self.launch.env,
                stdout=out, stderr=subprocess.STDOUT)
        wait_listening(self.port, self.process, self.log)
        if self.launch.after_start:
            self.launch.after_start(self.launch, self.port)
        return self.process

    def restart(self) -> dict[str, Any]:
        """Stop (SIGTERM, as an operator would) and start again; what the generator needs."""
        self.stop()
        try:
            process = self.start()
        except (RuntimeError, OSError) as failed:
            return {"ok": False, "error": f"{failed} {tail(self.log)[-300:]}"}
        return {"ok": True, "url": self.launch.url, "token": self.launch.token,
                "serverPid": process.pid}

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def drive(argv: list[str], timeout: float, server: Server, errors: Path) -> dict[str, Any]:
    """Run the generator to its end; serve its restart requests (a `{"restart": true}` line on
    its stdout, answered with one JSON line on its stdin). Its last stdout line is the result."""
    with errors.open("wb") as err:
        generator = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=err, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert generator.stdout is not None
        for line in generator.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    last = ""
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise subprocess.TimeoutExpired(argv, timeout) from None
            if line is None:
                break
            if line.startswith('{"restart"'):
                assert generator.stdin is not None
                generator.stdin.write(json.dumps(server.restart()) + "\n")
                generator.stdin.flush()
            elif line.strip():
                last = line
        generator.wait(10)
    finally:
        if generator.poll() is None:
            generator.kill()
            generator.wait(5)
    result: dict[str, Any] = json.loads(last) if last else {"ok": False}
    if not result.get("ok"):
        result.setdefault("error", tail(errors))
    return result


def run_one(
    scenario: str, server: str, mode: str, params: dict[str, Any], rep: int
) -> dict[str, Any]:
    """One fresh server, one generator run; the generator's JSON plus what we know."""
    kind = SERVERS[server]
    record: dict[str, Any] = {"scenario": scenario, "server": server, "mode": mode, "rep": rep,
                              "adapter": kind.adapter, "params": params}
    with tempfile.TemporaryDirectory(prefix=f"bench-{server}-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        try:
            launch: Launch = kind.launch(port, workdir, mode)
        except Unavailable as missing:
            return {**record, "ok": False, "unavailable": str(missing)}
        under_test = Server(launch, workdir, port)
        try:
            process = under_test.start()
            config = {
                "scenario": scenario, "adapter": kind.adapter, "url": launch.url,
                "token": launch.token, "serverPid": process.pid, "handshake": kind.handshake,
                "mode": mode, "prefix": f"b{rep}{int(time.time() * 1000) % 10**8}",
                "trace": str(TRACE), "params": params,
                "timeoutSeconds": timeout_for(scenario, params),
            }
            result = drive(pinned(GENERATOR_CPU, ["node", str(LOADGEN), json.dumps(config)]),
                           timeout_for(scenario, params) + 30, under_test,
                           workdir / "generator.log")
            if not result.get("ok"):
                result["server_log"] = tail(under_test.log)
            return {**record, **result}
        except (RuntimeError, OSError, subprocess.TimeoutExpired, json.JSONDecodeError) as failed:
            return {**record, "ok": False, "error": str(failed), "server_log": tail(under_test.log)}
        finally:
            under_test.stop()
            for leftover in Path("/dev/shm").glob(f"rcms-bench-{workdir.name}.sqlite3*"):
                leftover.unlink()


def timeout_for(scenario: str, params: dict[str, Any]) -> int:
    if scenario == "s5":  # seeding, two restarts, the joins, 3 holds, the ramps, closing
        return int(240 + params["joinTimeout"] + 3 * (params["hold"] + 5) + params["rampSeconds"])
    steps = {"s1": 1, "s2": 20, "s3": len(params.get("sizes", [])),
             "s4": len(params.get("rates", []))}[scenario]
    per_step = params["seconds"] + params.get("warmup", 0) + 20
    return int(60 + steps * per_step + params["seconds"])


def scaled(params: dict[str, Any], scenario: str, scale: float) -> dict[str, Any]:
    out = dict(params)
    for key in SCALED[scenario]:
        value = params[key] * scale
        out[key] = max(1, round(value)) if isinstance(params[key], int) else max(0.5, value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--scenarios", default="s1,s2,s3,s4,s5")
    parser.add_argument("--servers", help="comma-separated (default: each scenario's list)")
    parser.add_argument("--modes", default="memory,durable")
    parser.add_argument("--reps", type=int, help="repetitions (default: 3 full, 1 smoke)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply counts and durations")
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()

    smoke = args.profile == "smoke"
    reps = args.reps or (1 if smoke else 3)
    modes = args.modes.split(",")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"{args.profile}-{stamp}"
    out.mkdir(parents=True)
    if not TRACE.exists():
        sys.exit(f"the trace {TRACE} is missing (see shared/bench-data/README.md)")
    raise_open_files()
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    with (out / "raw.jsonl").open("w") as raw:
        for scenario in args.scenarios.split(","):
            params = scaled(PROFILES[args.profile][scenario], scenario, args.scale)
            chosen = args.servers.split(",") if args.servers else (
                list(SERVERS) if smoke else DEFAULT_SERVERS[scenario])
            for rep in range(reps):
                for server in chosen:
                    for mode in modes:
                        wanted = not smoke or bool(args.servers) or (
                            (scenario, server, mode) in SMOKE_RUNS)
                        if mode not in SERVERS[server].modes or not wanted:
                            continue
                        begun = time.monotonic()
                        record = run_one(scenario, server, mode, params, rep)
                        record["wall_seconds"] = round(time.monotonic() - begun, 1)
                        records.append(record)
                        raw.write(json.dumps(record) + "\n")
                        raw.flush()
                        print(summary_line(record), flush=True)
    write_report(out, records, {
        "profile": args.profile, "reps": reps, "scale": args.scale, "stamp": stamp,
        "seconds": round(time.monotonic() - started),
    })
    latest = args.out / "latest"
    with contextlib.suppress(FileNotFoundError):
        latest.unlink()
    latest.symlink_to(out.name)
    failed = [r for r in records if not r.get("ok") and "unavailable" not in r]
    unavailable = sorted({f"{r['server']} ({r['mode']}): {r['unavailable']}"
                          for r in records if "unavailable" in r})
    for line in unavailable:
        print(f"UNAVAILABLE {line}")
    print(f"{len(records)} runs, {len(failed)} failed, {len(unavailable)} unavailable; "
          f"report: {out / 'results.md'}")
    return 1 if failed else 0


def summary_line(record: dict[str, Any]) -> str:
    head = (f"{record['scenario']} {record['server']:<18} {record['mode']:<8} rep {record['rep']} "
            f"{record['wall_seconds']:>5.1f}s")
    if "unavailable" in record:
        return f"{head}  UNAVAILABLE: {record['unavailable']}"
    if not record.get("ok"):
        log = record.get("server_log", "")[-300:]
        return f"{head}  FAILED: {str(record.get('error'))[:300]} {log}"
    valid = "valid" if record["valid"] else f"INVALID {record['invalid']}"
    if record["scenario"] == "s5":
        join, idle = s5_parts(record)
        joined = ("join n/a" if join is None or "na" in join else
                  f"join p50 {join['time_to_synced_ms']['p50']} p99 "
                  f"{join['time_to_synced_ms']['p99']} ms")
        held = ("idle –" if idle is None else
                f"{idle['open']} idle: {idle['kib_per_connection']} KiB/conn "
                f"{idle['kib_per_doc']} KiB/doc")
        return f"{head}  {joined}; {held} {valid}"
    last = record["steps"][-1]
    return (f"{head}  steps {len(record['steps'])} p99 {last['latency_ms']['p99']} ms "
            f"drops {last['drops']} gen {last['generator_cpu']:.0%} {valid}")


if __name__ == "__main__":
    sys.exit(main())
