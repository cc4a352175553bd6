"""Turn the runs of bench/run.py into results.md (median [min-max] over valid runs) and PNGs.

bench/run.py calls `write_report` after its runs. To report several invocations together
(each scenario at its own scale and repetitions), merge their raw.jsonl files:

    bench/.venv/bin/python bench/report.py OUT_DIR RUN_DIR/raw.jsonl [RUN_DIR/raw.jsonl ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

Record = dict[str, Any]
P99_LIMIT_MS = 100


def spread(values: Iterable[float | None]) -> tuple[float, float, float] | None:
    """(median, min, max) of the values that exist."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return statistics.median(present), min(present), max(present)


def cell(values: Iterable[float | None], digits: int = 1) -> str:
    got = spread(values)
    if got is None:
        return "–"
    median, low, high = got
    if low == high:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} [{low:,.{digits}f}–{high:,.{digits}f}]"


def s2_capacity(record: Record) -> Record | None:
    """The last S2 step that held: p99 within the limit, no drop, generator not saturated."""
    held = None
    for step in record["steps"]:
        if not step["valid"] or step["drops"] or (step["latency_ms"]["p99"] or 0) > P99_LIMIT_MS:
            break
        held = step
    return held


def s4_sustained(record: Record) -> Record | None:
    held = None
    for step in record["steps"]:
        if not step.get("sustained"):
            break
        held = step
    return held


def groups(records: list[Record], scenario: str) -> dict[tuple[str, str], list[Record]]:
    out: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        if record["scenario"] == scenario:
            out[(record["server"], record["mode"])].append(record)
    return out


def status(runs: list[Record]) -> str:
    if all("unavailable" in r for r in runs):
        return "unavailable"
    good = [r for r in runs if r.get("ok") and r.get("valid")]
    return f"{len(good)}/{len(runs)}"


def valid_runs(runs: list[Record]) -> list[Record]:
    return [r for r in runs if r.get("ok") and r.get("valid")]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def step_values(runs: list[Record], pick: Callable[[Record], float | None]) -> list[float | None]:
    return [pick(r["steps"][0]) for r in runs]


def s1_table(records: list[Record]) -> str:
    rows = []
    for (server, mode), runs in groups(records, "s1").items():
        good = valid_runs(runs)
        rows.append([
            server, mode, status(runs),
            cell(step_values(good, lambda s: s["latency_ms"]["p50"]), 2),
            cell(step_values(good, lambda s: s["latency_ms"]["p99"]), 2),
            cell(step_values(good, lambda s: s["latency_ms"]["p999"]), 2),
            cell(step_values(good, lambda s: (s["ack_latency_ms"] or {}).get("p99")), 2),
            cell(step_values(good, lambda s: s["server_cpu_us_per_delivery"]), 1),
            cell(step_values(good, lambda s: s["server_rss_mib"]), 1),
            cell(step_values(good, lambda s: s["deliveries_per_s"]), 0),
            cell(step_values(good, lambda s: s["drops"]), 0),
            cell(step_values(good, lambda s: s.get("lost")), 0),
        ])
    return table(["server", "mode", "valid runs", "p50 ms", "p99 ms", "p99.9 ms", "ack p99 ms",
                  "server CPU µs/delivery", "RSS MiB", "deliveries/s", "late > 2 s", "lost"],
                 rows)


def s2_table(records: list[Record]) -> str:
    rows = []
    for (server, mode), runs in groups(records, "s2").items():
        held = [s2_capacity(r) for r in valid_or_ok(runs)]
        rows.append([
            server, mode, status(runs),
            cell([h["editors"] if h else 0 for h in held], 0),
            cell([h["deliveries_per_s"] if h else 0 for h in held], 0),
            cell([h["server_cpu"] * 100 if h else None for h in held], 0),
            "; ".join(sorted({stop_reason(r) for r in valid_or_ok(runs)})),
        ])
    return table(["server", "mode", "runs", "editors sustained", "deliveries/s sustained",
                  "server CPU % at that step", "stopped by"], rows)


def valid_or_ok(runs: list[Record]) -> list[Record]:
    # Knee searches end on an invalid step by design; the steps before it still count.
    return [r for r in runs if r.get("ok")]


def stop_reason(record: Record) -> str:
    last = record["steps"][-1]
    if not last["valid"]:
        return "generator saturated"
    if last["drops"]:
        return "drops"
    if (last["latency_ms"]["p99"] or 0) > P99_LIMIT_MS:
        return "p99 > 100 ms"
    return "largest step"


def s3_table(records: list[Record]) -> str:
    sizes = sorted({s["editors"] for r in records if r["scenario"] == "s3" and r.get("ok")
                    for s in r["steps"]})
    rows = []
    for (server, mode), runs in groups(records, "s3").items():
        good = valid_or_ok(runs)
        row = [server, mode, status(runs)]
        for size in sizes:
            at = [s for r in good for s in r["steps"] if s["editors"] == size]
            if not at:
                row.append("–")
                continue
            # A room past the limit ends the run (S3 stops as S2 does); its step is marked.
            mark = " (overloaded)" if any(s.get("overloaded") for s in at) else ""
            if not mark and not all(s["valid"] for s in at):
                mark = " (generator > 80%)"
            p99 = cell([s["latency_ms"]["p99"] for s in at], 1) + mark
            cpu = cell([s["server_cpu_us_per_recipient"] for s in at], 0)
            row.append(f"{p99} / {cpu}")
        reasons = {r["steps"][-1].get("overloaded") for r in good if r["steps"]}
        row.append("; ".join(sorted(str(x) for x in reasons if x)) or "largest size")
        rows.append(row)
    return table(["server", "mode", "valid runs", *[f"{n} editors: p99 ms / CPU µs per recipient"
                                                   for n in sizes], "stopped by"], rows)


def s4_table(records: list[Record]) -> str:
    rows = []
    for (server, mode), runs in groups(records, "s4").items():
        held = [s4_sustained(r) for r in valid_or_ok(runs)]
        rows.append([
            server, mode, status(runs),
            cell([h["rate"] if h else 0 for h in held], 0),
            cell([h["latency_ms"]["p99"] if h else None for h in held], 1),
            cell([(h["ack_latency_ms"] or {}).get("p99") if h else None for h in held], 1),
            cell([h["server_cpu_us_per_delivery"] if h else None for h in held], 0),
            "yes" if all(s.get("exact") for r in valid_or_ok(runs) for s in r["steps"]) else "NO",
        ])
    return table(["server", "mode", "valid runs", "max sustained updates/s", "p99 ms there",
                  "ack p99 ms there", "server CPU µs/update", "exact text every step"], rows)


def s5_parts(record: Record) -> tuple[Record | None, Record | None]:
    """The cold-join step and the idle-connections step of an S5 run (None if missing)."""
    steps = record.get("steps") or []
    join = next((s for s in steps if s.get("part") == "join"), None)
    idle = next((s for s in steps if s.get("part") == "idle"), None)
    return join, idle


def s5_valid(runs: list[Record], part: int) -> list[Record]:
    """The runs' valid steps of one part (0: join, 1: idle): a part stands on its own."""
    steps = [s5_parts(r)[part] for r in runs if r.get("ok")]
    return [s for s in steps if s is not None and s.get("valid") and "na" not in s]


def s5_join_table(records: list[Record]) -> str:
    rows = []
    for (server, mode), runs in groups(records, "s5").items():
        good = s5_valid(runs, 0)
        joins = [s5_parts(r)[0] for r in runs if r.get("ok")]
        if joins and all(j is not None and "na" in j for j in joins):
            rows.append([server, mode, "n/a", "–", *["–"] * 7])
            continue
        rows.append([
            server, mode, f"{len(good)}/{len(runs)}" if not status(runs) == "unavailable"
            else "unavailable",
            "from storage (restarted)" if mode == "durable" else "in memory (writer connected)",
            cell([s["time_to_synced_ms"]["p50"] for s in good], 1),
            cell([s["time_to_synced_ms"]["p99"] for s in good], 1)
            + (" (generator > 80%)" if any(s.get("generator_bound") for s in good) else ""),
            cell([s["time_to_synced_ms"]["max"] for s in good], 1),
            cell([s["server_cpu_seconds"] * 1000 for s in good], 0),
            cell([s["reply_bytes"] / 1024 for s in good], 0),
            cell([s["rss_before_mib"] for s in good], 1),
            cell([s["rss_after_mib"] for s in good], 1),
        ])
    return table(["server", "mode", "valid runs", "document", "time-to-synced p50 ms", "p99 ms",
                  "max ms", "server CPU ms (all joins)", "reply KiB", "RSS before MiB",
                  "RSS after MiB"], rows)


def s5_idle_table(records: list[Record]) -> str:
    rows = []
    for (server, mode), runs in groups(records, "s5").items():
        good = s5_valid(runs, 1)
        held = [f"{s['open']:,}" for s in good]
        shape = (f"{' / '.join(sorted(set(held)))} of {good[0]['connections']:,} / "
                 f"{good[0]['docs']:,}" if good else "–")
        notes = sorted({s["shortfall"] for s in good if s.get("shortfall")})
        rows.append([
            server, mode, f"{len(good)}/{len(runs)}" if not status(runs) == "unavailable"
            else "unavailable", shape,
            cell([s["rss_base_mib"] for s in good], 1),
            cell([s["rss_docs_mib"] for s in good], 1),
            cell([s["rss_connections_mib"] for s in good], 1),
            cell([s["kib_per_connection"] for s in good], 1),
            cell([s["kib_per_doc"] for s in good], 1),
            cell([s["server_cpu_idle"] * 100 for s in good], 0),
            cell([s["connects_per_s_more"] or s["connects_per_s_docs"] for s in good], 0),
            "; ".join(notes) or "–",
        ])
    return table(["server", "mode", "valid runs", "connections held / docs", "RSS empty MiB",
                  "RSS with docs MiB", "RSS with connections MiB", "KiB per idle connection",
                  "KiB per open doc", "server CPU % while idle", "connects/s", "shortfall"],
                 rows)


def s5_tables(records: list[Record]) -> str:
    return "\n".join([
        "Cold join: the document holds the trace; every joiner connects at once. Time-to-synced",
        "= from opening the connection to receiving the document (its text checked after).",
        "",
        s5_join_table(records),
        "",
        "Idle connections (a fresh server): RSS medians over each hold; per connection = ΔRSS",
        "/ connections added to open docs, per doc = ΔRSS / docs opened − per connection.",
        "",
        s5_idle_table(records),
    ])


def problems(records: list[Record]) -> list[str]:
    lines = []
    for r in records:
        where = f"{r['scenario']} {r['server']} ({r['mode']}, rep {r['rep']})"
        if "unavailable" in r:
            lines.append(f"- {where}: unavailable — {r['unavailable']}")
        elif not r.get("ok"):
            lines.append(f"- {where}: failed — {str(r.get('error'))[:300]}")
        elif not r.get("valid"):
            lines.append(f"- {where}: invalid — {'; '.join(r['invalid'])[:300]}")
    return sorted(set(lines))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    load = Path("/proc/loadavg").read_text().split()[:3]
    return (f"{cpu}, {len(Path('/proc/cpuinfo').read_text().split('processor')) - 1} CPUs; "
            f"Python {platform.python_version()}, Node {node}; load average at the end "
            f"{' '.join(load)}")


def write_report(out: Path, records: list[Record], meta: dict[str, Any]) -> None:
    scenarios = sorted({r["scenario"] for r in records})
    parts = [
        f"# Benchmark results ({meta['profile']}, {meta['stamp']})",
        "",
        f"{machine()}. {meta['reps']} repetition(s), scale {meta['scale']}, "
        f"{meta['seconds']} s in all. Cells: median [min–max] over valid runs.",
    ]
    makers = {"s1": ("S1 steady fan-out", s1_table), "s2": ("S2 capacity knee", s2_table),
              "s3": ("S3 hot document", s3_table), "s4": ("S4 trace replay", s4_table),
              "s5": ("S5 cold join and memory", s5_tables)}
    for scenario in scenarios:
        title, maker = makers[scenario]
        parts += ["", f"## {title}", "", maker(records)]
    issues = problems(records)
    if issues:
        parts += ["", "## Unavailable, failed and invalid runs", "", *issues]
    (out / "results.md").write_text("\n".join(parts) + "\n")
    charts(out, records)


def charts(out: Path, records: list[Record]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def bars(
        scenario: str, value: Callable[[Record], float | None], ylabel: str, name: str
    ) -> None:
        labels, medians, errs = [], [], [[], []]
        for (server, mode), runs in groups(records, scenario).items():
            got = spread(value(r) for r in valid_or_ok(runs))
            if got is None:
                continue
            labels.append(f"{server}\n{mode}")
            medians.append(got[0])
            errs[0].append(got[0] - got[1])
            errs[1].append(got[2] - got[0])
        if not labels:
            return
        fig, ax = plt.subplots(figsize=(max(6, len(labels) * 1.1), 4.5))
        ax.bar(range(len(labels)), medians, yerr=errs, capsize=3)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)

    def lines(scenario: str, x: str, y: Callable[[Record], float | None], ylabel: str,
              xlabel: str, name: str) -> None:
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        drawn = False
        for (server, mode), runs in groups(records, scenario).items():
            ok = valid_or_ok(runs)
            if not ok:
                continue
            # The first repetition's curve, without steps that measured nothing (an S3
            # room past its limit before it could be measured).
            points = [(s[x], y(s)) for s in ok[0]["steps"]]
            points = [(px, py) for px, py in points if py is not None]
            if not points:
                continue
            ax.plot([px for px, _ in points], [py for _, py in points], marker="o",
                    label=f"{server} ({mode})")
            drawn = True
        if not drawn:
            plt.close(fig)
            return
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if "p99" in ylabel:
            ax.axhline(P99_LIMIT_MS, color="grey", linewidth=0.8, linestyle="--")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)

    def p99(step: Record) -> float | None:
        return step["latency_ms"]["p99"]

    bars("s1", lambda r: r["steps"][0]["latency_ms"]["p99"] if r.get("valid") else None,
         "S1 p99 sender→peer latency (ms)", "s1_p99.png")
    bars("s1", lambda r: r["steps"][0]["server_cpu_us_per_delivery"] if r.get("valid") else None,
         "S1 server CPU µs per delivered update", "s1_cpu.png")
    bars("s2", lambda r: (s2_capacity(r) or {"editors": 0})["editors"],
         "S2 editors sustained (p99 ≤ 100 ms, no drop)", "s2_capacity.png")
    lines("s2", "editors", p99, "p99 latency (ms)", "editors (5 per doc)", "s2_latency_vs_load.png")
    lines("s3", "editors", p99, "p99 latency (ms)", "editors in one document", "s3_p99.png")
    lines("s3", "editors", lambda s: s["server_cpu_us_per_recipient"],
          "server CPU µs per recipient", "editors in one document", "s3_cpu.png")
    lines("s4", "rate", p99, "p99 latency (ms)", "replayed updates/s", "s4_p99.png")

    def s5_value(part: int, pick: Callable[[Record], float | None]) -> Callable[[Record], Any]:
        def value(record: Record) -> float | None:
            step = s5_parts(record)[part]
            if step is None or "na" in step or not step.get("valid"):
                return None
            return pick(step)
        return value

    bars("s5", s5_value(0, lambda s: s["time_to_synced_ms"]["p99"]),
         "S5 cold join: time-to-synced p99 (ms)", "s5_join.png")
    bars("s5", s5_value(1, lambda s: s["kib_per_connection"]),
         "S5 RSS per idle connection (KiB)", "s5_memory.png")


def main() -> None:
    parser = argparse.ArgumentParser(description="One report over the runs of several invocations")
    parser.add_argument("out", type=Path, help="directory for results.md, raw.jsonl, the charts")
    parser.add_argument("raw", type=Path, nargs="+", help="raw.jsonl files of bench/run.py")
    args = parser.parse_args()
    records = [json.loads(line) for path in args.raw for line in path.read_text().splitlines()
               if line.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    runs: dict[tuple[str, str, str], int] = defaultdict(int)
    for record in records:
        runs[record["scenario"], record["server"], record["mode"]] += 1
    reps: dict[str, int] = defaultdict(int)
    for (scenario, _, _), count in runs.items():
        reps[scenario] = max(reps[scenario], count)
    write_report(args.out, records, {
        "profile": "merged", "stamp": ", ".join(p.parent.name for p in args.raw),
        "reps": ", ".join(f"{k}: up to {v}" for k, v in sorted(reps.items())),
        "scale": "per invocation",
        "seconds": round(sum(r.get("wall_seconds", 0) for r in records)),
    })


if __name__ == "__main__":
    main()
