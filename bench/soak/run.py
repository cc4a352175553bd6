"""Soak: does the server's memory stay flat under hours of editing with joins and leaves?

    .venv/bin/python bench/soak/run.py --minutes 10        # make bench-soak MINUTES=10
    .venv/bin/python bench/soak/run.py --minutes 5 --tracemalloc 25    # find what grows

It starts ours the way bench/run.py does (the embedded SQLite, on /dev/shm in `memory`
mode, pinned to CPU 0) through `server.py`, a wrapper that adds the soak's debug hooks.
Here, pinned to CPU 1, `--editors` CollabClient connections over `/collab` type into
`--documents` documents (a cursor each, words at the cursor, awareness once a second),
and every `--churn-seconds` one editor reconnects (a new connection, a random document)
and another moves to a random document on its connection (leave, join). The server's
VmRSS is sampled every `--sample-seconds`.

Reported: RSS once every editor has joined, at half time and at the end; the slope
(MB/min, least squares over the second half: the first half is warm-up, when pools,
caches and allocator arenas fill); RSS and heap after `--quiet-seconds` with every editor
still seated and nobody typing (rooms stay loaded; quiet ones drop their shadow copy);
and RSS once every room has unloaded (every editor gone, past
RCMS_COLLAB_IDLE_UNLOAD_SECONDS). A slope above `--floor` is flagged; nothing
fails on it (the machine may be slow or shared), only a broken run exits non-zero.

Results go to bench/results/soak-<stamp>/: samples.csv, soak.json, server.log, and the
server's dumps (dump-<n>.json: rooms, peers, sockets, tasks, live objects by type;
with --tracemalloc, diff-<n>.txt: the growth since the first dump by traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SOAK = Path(__file__).resolve().parent
BENCH = SOAK.parent
ROOT = BENCH.parent
sys.path[:0] = [str(BENCH), str(ROOT)]

import pycrdt  # noqa: E402
from run import GENERATOR_CPU, Server, free_port, raise_open_files  # noqa: E402
from servers.catalog import PRODUCT_BIN, SERVERS  # noqa: E402
from words import type_once  # noqa: E402

from realtime_cms.client import ClientDocument, CollabClient  # noqa: E402
from realtime_cms.collab.protocol import AwarenessEntry, encode_awareness_update  # noqa: E402
from realtime_cms.config import Settings  # noqa: E402

DUMP_TIMEOUT = 180.0


def vm_status(pid: int) -> dict[str, int]:
    """VmRSS (KiB) and Threads of a process, and its open file descriptors."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "Threads"):
                out[name] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 3:
        return None
    xs, ys = [t for t, _ in samples], [mb for _, mb in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


@dataclass
class Counters:
    updates: int = 0
    awareness: int = 0
    joins: int = 0
    leaves: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, what: str, exc: BaseException) -> None:
        if len(self.errors) < 50:
            self.errors.append(f"{what}: {exc!r}")


class Editor:
    """One editor: a connection, the document it is in, its cursor and awareness clock."""

    def __init__(self, number: int, url: str, token: str, rng: random.Random) -> None:
        self.number, self.url, self.token, self.rng = number, url, token, rng
        self.client: CollabClient | None = None
        self.document: ClientDocument | None = None
        self.cursor = 0
        self.clock = 0
        self.busy = False

    async def connect(self, document_id: str, counters: Counters) -> None:
        self.client = CollabClient(self.url, self.token, timeout=60)
        await self.client.connect()
        await self.join(document_id, counters)

    async def join(self, document_id: str, counters: Counters) -> None:
        assert self.client is not None
        self.document = await self.client.join(document_id)
        self.cursor, self.clock = 0, 0
        counters.joins += 1

    async def move(self, document_id: str, counters: Counters) -> None:
        """Leave the document and join another on the same connection."""
        assert self.client is not None and self.document is not None
        old, self.document = self.document, None
        await self.client.leave(old.document_id)
        counters.leaves += 1
        await self.join(document_id, counters)

    async def close(self, counters: Counters) -> None:
        client, self.client, self.document = self.client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
            counters.leaves += 1

    def type(self, counters: Counters) -> None:
        """A word at the cursor (moved now and then), or a few words deleted once long."""
        document = self.document
        if document is None:
            return
        text = document.doc.get("body", type=pycrdt.Text)
        self.cursor = type_once(text, self.cursor, self.rng)
        counters.updates += 1

    async def send_cursor(self, counters: Counters) -> None:
        document = self.document
        if document is None:
            return
        self.clock += 1
        state = {"user": {"name": f"editor-{self.number}"}, "cursor": {"index": self.cursor}}
        entry = AwarenessEntry(document.doc.client_id, self.clock, state)
        await document.send_awareness(encode_awareness_update([entry]))
        counters.awareness += 1


class Load:
    """The editors, their typing, and the churn, until `stop` is set."""

    def __init__(self, args: argparse.Namespace, url: str, token: str) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.documents = [f"soak:doc-{n}" for n in range(args.documents)]
        self.editors = [
            Editor(n, url, token, random.Random(args.seed * 1000 + n)) for n in range(args.editors)
        ]
        self.counters = Counters()
        self.stop = asyncio.Event()

    async def open_all(self) -> None:
        gate = asyncio.Semaphore(10)

        async def one(editor: Editor) -> None:
            async with gate:
                await editor.connect(
                    self.documents[editor.number % len(self.documents)], self.counters
                )

        await asyncio.gather(*(one(editor) for editor in self.editors))

    async def close_all(self) -> None:
        await asyncio.gather(*(editor.close(self.counters) for editor in self.editors))

    async def typing(self, editor: Editor) -> None:
        if self.args.rate <= 0:
            return  # --rate 0: churn only (joins, leaves and reconnects)
        interval = 1.0 / self.args.rate
        next_cursor = time.monotonic() + editor.rng.random()
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), interval * editor.rng.uniform(0.5, 1.5))
                return
            client, document = editor.client, editor.document
            if editor.busy or client is None or document is None:
                continue
            try:
                editor.type(self.counters)
                if time.monotonic() >= next_cursor:
                    next_cursor += 1.0
                    await editor.send_cursor(self.counters)
                # The client keeps every awareness message and refusal: not the server's.
                client.awareness.clear()
                document.errors.clear()
            except Exception as exc:
                self.counters.error("typing", exc)

    async def churn(self) -> None:
        reconnect = True
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.args.churn_seconds)
                return
            idle = [editor for editor in self.editors if not editor.busy]
            editor = self.rng.choice(idle)
            target = self.rng.choice(self.documents)
            editor.busy = True
            try:
                if reconnect:
                    await editor.close(self.counters)
                    await editor.connect(target, self.counters)
                    self.counters.reconnects += 1
                else:
                    await editor.move(target, self.counters)
            except Exception as exc:
                self.counters.error("churn", exc)
                with contextlib.suppress(Exception):
                    await editor.close(self.counters)
                    await editor.connect(target, self.counters)
            finally:
                editor.busy = False
            reconnect = not reconnect

    async def run(self, seconds: float) -> None:
        tasks = [asyncio.create_task(self.typing(editor)) for editor in self.editors]
        tasks.append(asyncio.create_task(self.churn()))
        try:
            await asyncio.sleep(seconds)
        finally:
            self.stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    def document_bytes(self) -> int:
        """The size of every document's state as one open editor holds it."""
        seen: dict[str, int] = {}
        for editor in self.editors:
            if editor.document is not None:
                seen[editor.document.document_id] = len(editor.document.doc.get_update())
        return sum(seen.values())


class Dumps:
    """Ask the server for a dump (SIGUSR1) and read it back."""

    def __init__(self, folder: Path, pid: int) -> None:
        self.folder, self.pid, self.count = folder, pid, 0

    async def take(self, label: str, *, trim: bool = False) -> dict[str, Any]:
        """A dump; with `trim`, the server also gives glibc's free pages back after it."""
        number, self.count = self.count, self.count + 1
        os.kill(self.pid, signal.SIGUSR2 if trim else signal.SIGUSR1)
        path = self.folder / f"dump-{number}.json"
        deadline = time.monotonic() + DUMP_TIMEOUT
        while not path.exists():
            if time.monotonic() > deadline:
                return {"dump": number, "label": label, "error": "no dump"}
            await asyncio.sleep(0.2)
        record: dict[str, Any] = json.loads(path.read_text())
        record["label"] = label
        path.write_text(json.dumps(record, indent=1))
        return record


class Sampler:
    """VmRSS of the server every `interval` seconds, stamped from the run's start."""

    def __init__(self, pid: int, interval: float, out: Path) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[dict[str, Any]] = []
        self.phase = "start"
        self.started = time.monotonic()
        self.csv = out.open("w")
        self.csv.write("seconds,phase,rss_mb,threads,fds\n")

    def sample(self) -> dict[str, Any]:
        status = vm_status(self.pid)
        row = {
            "t": round(time.monotonic() - self.started, 1),
            "phase": self.phase,
            "rss_mb": round(status["VmRSS"] / 1024, 2),
            "threads": status["Threads"],
            "fds": status["fds"],
        }
        self.samples.append(row)
        self.csv.write(f"{row['t']},{row['phase']},{row['rss_mb']},{row['threads']},{row['fds']}\n")
        self.csv.flush()
        return row

    async def forever(self) -> None:
        while True:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                self.sample()
            await asyncio.sleep(self.interval)

    def of(self, phase: str) -> list[dict[str, Any]]:
        return [row for row in self.samples if row["phase"] == phase]


def idle_unload_seconds() -> float:
    value = os.environ.get("RCMS_COLLAB_IDLE_UNLOAD_SECONDS")
    default = Settings.model_fields["collab_idle_unload_seconds"].default
    return float(value) if value else float(default)


def launch_server(args: argparse.Namespace, workdir: Path, dumps: Path) -> Server:
    port = free_port()
    launch = SERVERS["ours-collab"].launch(port, workdir, args.mode)
    # `realtime-cms serve ...` becomes `python bench/soak/server.py serve ...`.
    launch.argv = [str(PRODUCT_BIN / "python"), str(SOAK / "server.py"), *launch.argv[1:]]
    launch.env["SOAK_DUMP_DIR"] = str(dumps)
    if args.tracemalloc:
        launch.env["RCMS_TRACEMALLOC"] = str(args.tracemalloc)
    if args.patch:
        launch.env["SOAK_PATCH"] = args.patch
    if "RCMS_COLLAB_IDLE_UNLOAD_SECONDS" in os.environ:
        launch.env["RCMS_COLLAB_IDLE_UNLOAD_SECONDS"] = os.environ[
            "RCMS_COLLAB_IDLE_UNLOAD_SECONDS"
        ]
    server = Server(launch, workdir, port)
    server.log = workdir / "server.log"
    return server


async def soak(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    workdir = out
    server = launch_server(args, workdir, out)
    try:
        process = server.start()
    except BaseException:
        server.stop()
        raise
    pid = process.pid
    sampler = Sampler(pid, args.sample_seconds, out / "samples.csv")
    dumps = Dumps(out, pid)
    sampling = asyncio.create_task(sampler.forever())
    record: dict[str, Any] = {"args": vars(args), "server_pid": pid, "dumps": []}
    load = Load(args, f"http://127.0.0.1:{server.port}", server.launch.token)
    seconds = args.minutes * 60
    try:
        sampler.phase = "joining"
        await load.open_all()
        sampler.phase = "load"
        started = time.monotonic()
        first = sampler.sample()
        await load.run(seconds / 2)
        record["dumps"].append(await dumps.take("half time"))
        sampler.phase = "measured"
        half_row = sampler.sample()
        load.stop.clear()
        await measure_second_half(load, dumps, record, seconds / 2, args.dump_every)
        last = sampler.sample()
        record["load_seconds"] = round(time.monotonic() - started, 1)
        record["document_bytes"] = load.document_bytes()
        record["dumps"].append(await dumps.take("end of load"))
        sampler.phase = "quiet"
        await asyncio.sleep(args.quiet_seconds)
        quiet = sampler.sample()
        record["dumps"].append(await dumps.take("quiet"))
        sampler.phase = "leaving"
        await load.close_all()
        sampler.phase = "unloading"
        rooms_gone = await wait_for_unload(dumps, record)
        sampler.phase = "unloaded"
        unloaded = [sampler.sample()]
        for _ in range(4):
            await asyncio.sleep(args.sample_seconds)
            unloaded.append(sampler.sample())
        record["dumps"].append(await dumps.take("after unload", trim=True))
    finally:
        sampling.cancel()
        server.stop()
        sampler.csv.close()
    window = [(row["t"], row["rss_mb"]) for row in sampler.of("measured")]
    record.update(
        ok=process.returncode in (0, -signal.SIGTERM, None) and not load.counters.errors,
        rss_start_mb=first["rss_mb"],
        rss_half_mb=half_row["rss_mb"],
        rss_end_mb=last["rss_mb"],
        rss_quiet_mb=quiet["rss_mb"],
        slope_mb_per_min=slope_mb_per_min(window),
        slope_all_mb_per_min=slope_mb_per_min(
            [
                (row["t"], row["rss_mb"])
                for row in sampler.samples
                if row["phase"] in ("load", "measured")
            ]
        ),
        rss_after_unload_mb=statistics.median(row["rss_mb"] for row in unloaded),
        rooms_unloaded=rooms_gone,
        rss_after_unload_trimmed_mb=record["dumps"][-1].get("rss_trimmed_mb"),
        threads=[first["threads"], last["threads"]],
        fds=[first["fds"], last["fds"]],
        counters=vars(load.counters),
    )
    return record


async def measure_second_half(
    load: Load, dumps: Dumps, record: dict[str, Any], seconds: float, dump_every: float
) -> None:
    """The second half of the load, with a dump every `dump_every` seconds if asked."""
    run = asyncio.create_task(load.run(seconds))
    if dump_every > 0:
        deadline = time.monotonic() + seconds
        while not run.done() and time.monotonic() + dump_every < deadline:
            await asyncio.wait({run}, timeout=dump_every)
            if not run.done():
                record["dumps"].append(await dumps.take("during load"))
    await run


async def wait_for_unload(dumps: Dumps, record: dict[str, Any]) -> bool:
    """Wait past the idle unload time (and the reaper's interval), then until no room is
    loaded; False if rooms are still loaded a minute later."""
    grace = idle_unload_seconds()
    await asyncio.sleep(grace + min(max(grace / 4, 0.01), 5.0) + 3)
    deadline = time.monotonic() + 60
    while True:
        dump = await dumps.take("unload check")
        record["dumps"].append(dump)
        if dump.get("rooms") == 0:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(5)


def report(record: dict[str, Any], floor: float) -> str:
    args = record["args"]
    slope = record["slope_mb_per_min"]
    verdict = (
        "n/a"
        if slope is None
        else f"ABOVE the floor of {floor} MB/min"
        if slope > floor
        else f"within the floor of {floor} MB/min"
    )
    counters = record["counters"]
    unload = record["rss_after_unload_mb"]
    unloaded_note = "all unloaded" if record["rooms_unloaded"] else "ROOMS STILL LOADED"
    lines = [
        f"soak: {args['editors']} editors, {args['documents']} documents, churn every "
        f"{args['churn_seconds']} s, {args['minutes']} min, {args['rate']} words/s each "
        f"({args['mode']}; tracemalloc {args['tracemalloc'] or 'off'}; "
        f"patch {args['patch'] or 'none'})",
        f"  RSS MB: start {record['rss_start_mb']:.1f}, half time {record['rss_half_mb']:.1f}, "
        f"end {record['rss_end_mb']:.1f}",
        f"  slope over the second half: "
        f"{'n/a' if slope is None else f'{slope:+.3f}'} MB/min  -> {verdict}",
        f"  slope over the whole load: {record['slope_all_mb_per_min'] or 0:+.3f} MB/min",
        f"  after {args['quiet_seconds']:g} s quiet (editors seated, nobody typing): "
        f"{record['rss_quiet_mb']:.1f} MB",
        f"  after every room unloaded ({unloaded_note}): "
        f"{unload:.1f} MB ({unload - record['rss_start_mb']:+.1f} vs start)",
        f"  after unload and malloc_trim(0): {record['rss_after_unload_trimmed_mb']} MB",
        f"  threads {record['threads'][0]} -> {record['threads'][1]}, fds {record['fds'][0]} -> "
        f"{record['fds'][1]}; documents hold {record['document_bytes'] / 1024:.0f} KiB of state",
        f"  {counters['updates']} edits, {counters['awareness']} cursors, {counters['joins']} "
        f"joins, {counters['leaves']} leaves, {counters['reconnects']} reconnects, "
        f"{len(counters['errors'])} errors",
    ]
    for dump in record["dumps"]:
        if dump.get("label") in ("half time", "end of load", "quiet", "after unload"):
            grown = list(dump.get("grown_types", {}).items())[:6]
            lines.append(
                f"  dump {dump['dump']} ({dump['label']}): rooms {dump.get('rooms')} "
                f"(shadows {dump.get('shadows')}), tasks "
                f"{dump.get('tasks')}, malloc in use {dump.get('malloc_in_use_mb')} MB "
                f"(free {dump.get('malloc_free_mb')}), sqlite {dump.get('sqlite_memory_mb')} MB, "
                f"traced {dump.get('traced_mb', '-')} MB, gc objects {dump.get('gc_objects')}; "
                "grown since dump 0: " + ", ".join(f"{name} {count:+d}" for name, count in grown)
            )
    lines.extend(f"  error: {error}" for error in counters["errors"][:5])
    return "\n".join(lines)


def pin_here() -> None:
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, {int(GENERATOR_CPU)})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--editors", type=int, default=50)
    parser.add_argument("--documents", type=int, default=10)
    parser.add_argument("--churn-seconds", type=float, default=2.0)
    parser.add_argument(
        "--rate", type=float, default=1.0, help="words per second per editor (0: churn only)"
    )
    parser.add_argument("--sample-seconds", type=float, default=3.0)
    parser.add_argument(
        "--quiet-seconds",
        type=float,
        default=20.0,
        help="after the load, editors stay seated this long without typing",
    )
    parser.add_argument("--floor", type=float, default=0.2, help="MB/min flagged above")
    parser.add_argument("--mode", choices=("memory", "durable"), default="memory")
    parser.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="trace allocations in the server with this many frames",
    )
    parser.add_argument(
        "--dump-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also dump every this many seconds of the second half",
    )
    parser.add_argument("--patch", default="", help="candidate fixes from patches.py")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH / "results")
    args = parser.parse_args()
    if args.editors < 2:
        parser.error("--editors: at least 2 (one reconnects while another moves)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"soak-{stamp}"
    out.mkdir(parents=True)
    args.out = str(args.out)
    raise_open_files()
    pin_here()
    record = asyncio.run(soak(args, out))
    (out / "soak.json").write_text(json.dumps(record, indent=1))
    print(report(record, args.floor))
    print(f"  results: {out}")
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
