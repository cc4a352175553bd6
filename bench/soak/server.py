"""`realtime-cms serve` with the soak's debug hooks; the product itself has none.

    python bench/soak/server.py serve --host 127.0.0.1 --port 8080

Environment (all optional):

- `SOAK_DUMP_DIR`: on SIGUSR1, collect garbage and write `dump-<n>.json` there: loaded
  rooms, `/collab` peers, Engine.IO sockets, asyncio tasks, the live objects the cycle
  collector tracks, by type (and their growth since the first dump), RSS, glibc's heap in
  use and free, and SQLite's own memory. The file appears complete (written, then
  renamed). SIGUSR2 does the same, then `malloc_trim(0)`, and adds RSS after the trim.
- `RCMS_TRACEMALLOC=<frames>` (e.g. `25`): trace allocations once the app starts; each dump
  also writes `snapshot-<n>.tracemalloc` and `diff-<n>.txt`, the growth since the first
  dump grouped by traceback and by line. Tracing slows the server and its own bookkeeping
  inflates RSS: slopes measured with it are not comparable to plain ones.
- `SOAK_PATCH=<name>[,<name>]`: apply a candidate fix from `patches.py` before the app is
  built (to measure a fix in a file this harness must not edit).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import ctypes.util
import gc
import json
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from aiohttp import web

HERE = Path(__file__).resolve().parent
_state: dict[str, Any] = {"dumps": 0, "types": None, "baseline": None}


def _apply_patches() -> list[str]:
    names = [name for name in os.environ.get("SOAK_PATCH", "").split(",") if name]
    if names:
        sys.path.insert(0, str(HERE))
        import patches

        for name in names:
            patches.apply(name)
    return names


def _keep_app() -> None:
    """Remember the app `create_app` builds (and its loop once it starts), for the dumps."""
    from handlers import app as app_module

    create_app = app_module.create_app

    def keeping(settings: Any) -> web.Application:
        app = create_app(settings)

        async def remember_loop(_app: web.Application) -> None:
            _state["loop"] = asyncio.get_running_loop()
            # From here, not from the start: migrations under tracing take minutes.
            frames = int(os.environ.get("RCMS_TRACEMALLOC", "0") or 0)
            if frames:
                tracemalloc.start(frames)

        app.on_startup.append(remember_loop)
        _state["app"] = app
        return app

    app_module.create_app = keeping  # type: ignore[assignment]


def _counts() -> dict[str, Any]:
    from handlers import keys

    app: web.Application | None = _state.get("app")
    loop = _state.get("loop")
    out: dict[str, Any] = {}
    if app is None:
        return out
    rooms = app.get(keys.ROOMS)
    out["rooms"] = len(rooms.rooms) if rooms is not None else None
    if rooms is not None:
        out["shadows"] = sum(room.holds_shadow for room in rooms.rooms.values())
    for name, key in (("sio", keys.SIO), ("sio_msgpack", keys.SIO_MSGPACK)):
        sio = app.get(key)
        if sio is None:
            continue
        handler = sio.namespace_handlers.get("/collab")
        out[name] = {
            "eio_sockets": len(sio.eio.sockets),
            "collab_peers": len(getattr(handler, "peers", {})),
        }
    if loop is not None:
        out["tasks"] = len(asyncio.all_tasks(loop))
    return out


def _type_counts() -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        counts[f"{kind.__module__}.{kind.__qualname__}"] += 1
    return counts


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def malloc_info() -> tuple[int, int] | None:
    """glibc's heap in use and free, in bytes (every arena); None elsewhere."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd, info.fordblks


def _native() -> dict[str, Any]:
    """What C code holds: glibc's heap in use and free (all arenas), SQLite's own count."""
    out: dict[str, Any] = {}
    heap = malloc_info()
    if heap is not None:
        out["malloc_in_use_mb"] = round(heap[0] / 1e6, 2)
        out["malloc_free_mb"] = round(heap[1] / 1e6, 2)
    name = ctypes.util.find_library("sqlite3")
    if name:
        sqlite = ctypes.CDLL(name)
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        out["sqlite_memory_mb"] = round(sqlite.sqlite3_memory_used() / 1e6, 2)
    return out


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 2)
    return 0.0


_IGNORED = (
    tracemalloc.Filter(False, tracemalloc.__file__),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
    tracemalloc.Filter(False, "<unknown>"),
)


def _write_diff(path: Path, snapshot: tracemalloc.Snapshot, base: tracemalloc.Snapshot) -> None:
    lines: list[str] = []
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    lines.append(f"traced now {total / 1e6:.2f} MB")
    lines.append("== growth since the first dump, by traceback (top 25) ==")
    for stat in snapshot.compare_to(base, "traceback")[:25]:
        lines.append(
            f"\n{stat.size_diff / 1024:+.1f} KiB, {stat.count_diff:+d} blocks "
            f"(now {stat.size / 1024:.1f} KiB in {stat.count} blocks)"
        )
        frames = stat.traceback.format(limit=18, most_recent_first=True)
        lines.extend("    " + line for line in frames)
    lines.append("\n== growth since the first dump, by line (top 40) ==")
    for stat in snapshot.compare_to(base, "lineno")[:40]:
        lines.append(str(stat))
    path.write_text("\n".join(lines) + "\n")


def _dump(signum: int, _frame: Any) -> None:
    folder = Path(os.environ["SOAK_DUMP_DIR"])
    number = _state["dumps"]
    _state["dumps"] += 1
    gc.collect()
    types = _type_counts()
    first = _state["types"]
    if first is None:
        _state["types"] = first = types
    grown = {name: count - first.get(name, 0) for name, count in types.items()}
    record: dict[str, Any] = {
        "dump": number,
        **_counts(),
        "gc_objects": sum(types.values()),
        "rss_mb": _rss_mb(),
        **_native(),
        "grown_types": dict(
            sorted(((n, c) for n, c in grown.items() if c), key=lambda item: -item[1])[:40]
        ),
    }
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot().filter_traces(_IGNORED)
        snapshot.dump(str(folder / f"snapshot-{number}.tracemalloc"))
        base = _state["baseline"]
        if base is None:
            _state["baseline"] = base = snapshot
        _write_diff(folder / f"diff-{number}.txt", snapshot, base)
        record["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 1e6, 2)
    if signum == signal.SIGUSR2:
        # What RSS would be if glibc gave back every free page it keeps for reuse.
        ctypes.CDLL(None).malloc_trim(0)
        record["rss_trimmed_mb"] = _rss_mb()
    partial = folder / f".dump-{number}.json"
    partial.write_text(json.dumps(record, indent=1))
    partial.rename(folder / f"dump-{number}.json")


def main() -> None:
    patched = _apply_patches()
    if patched:
        print(f"soak: patched {', '.join(patched)}", file=sys.stderr, flush=True)
    _keep_app()
    if os.environ.get("SOAK_DUMP_DIR"):
        signal.signal(signal.SIGUSR1, _dump)
        signal.signal(signal.SIGUSR2, _dump)
    from handlers.cli import main as cli_main

    cli_main(sys.argv[1:])


if __name__ == "__main__":
    main()
