"""docs/BENCHMARKS.md from one run's numbers: tables per round trip, the targets with their
measured ratios, where the whole graph's time goes, and a plot of time against round trip."""

from __future__ import annotations

import re
from pathlib import Path

from harness.scenarios import ONE_PAGINATOR
from harness.tools import NOTEBOOK, PROJECT

LOAD_PROJECT = PROJECT + ": pyarrow.fs.S3FileSystem"


def table(results: dict[str, float | None]) -> list[str]:
    measured = {k: v for k, v in results.items() if v is not None}
    fastest = min(measured.values())
    lines = ["| tool | seconds | × fastest |", "|---|---:|---:|"]
    for name, value in sorted(results.items(), key=lambda kv: (kv[1] is None, kv[1] or 0)):
        lines.append(f"| {name} | not installed | – |" if value is None
                     else f"| {name} | {value:.3f} | {value / fastest:.2f} |")
    return lines


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def plot(raw: dict, out: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    scenarios = list(raw["scenarios"])
    fig, axes = plt.subplots(1, len(scenarios), figsize=(4.2 * len(scenarios), 4.2), squeeze=False)
    for ax, scenario in zip(axes[0], scenarios, strict=True):
        by_rtt = raw["scenarios"][scenario]
        rtts = sorted(by_rtt, key=float)
        for tool in by_rtt[rtts[0]]:
            points = [(float(r), by_rtt[r][tool]) for r in rtts if by_rtt[r].get(tool) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=tool)
        ax.set_yscale("log")
        ax.set_xlabel("round trip (ms)")
        ax.set_ylabel("seconds (log)")
        ax.set_title(scenario, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = out / "bench_latency.png"
    fig.savefig(path, dpi=100)
    return path.name


def targets(raw: dict) -> list[str]:
    """One row per target: the measured ratio, the verdict, and the numbers behind it."""
    lines = ["| target | measured | verdict | the numbers behind it |", "|---|---|---|---|"]

    def row(target: str, measured: str, ok: bool, numbers: str) -> None:
        lines.append(f"| {target} | {measured} | {verdict(ok)} | {numbers} |")

    cpu = raw.get("loading_cpu", {})
    for name, by_rtt in raw["scenarios"].items():
        if name.startswith("loading") and "small" in name:
            files = int(re.sub(r"\D", "", name.split(" small")[0]) or 1)
            for rtt, want in (("20", 25), ("0", 4)):
                if rtt in by_rtt:
                    ours, nb = by_rtt[rtt][LOAD_PROJECT], by_rtt[rtt][NOTEBOOK + " (read_csv loop)"]
                    per_cpu = cpu.get(rtt, {}).get(LOAD_PROJECT)
                    row(f"{name} at {rtt} ms: ≥ {want} × faster than the notebook's loop", f"{nb / ours:.1f} × faster",
                        nb / ours >= want,
                        f"notebook {nb:.1f} s ({nb * 1000 / files:.0f} ms a file), this project {ours:.2f} s "
                        f"({ours * 1000 / files:.2f} ms a file"
                        + (f", {per_cpu * 1000 / files:.2f} ms of it client CPU" if per_cpu else "") + ")")
            wrangler = by_rtt.get("20", {}).get("awswrangler read_csv(use_threads)")
            if wrangler:
                ours = by_rtt["20"][LOAD_PROJECT]
                row(f"{name} at 20 ms: ≥ 2 × faster than awswrangler", f"{wrangler / ours:.1f} × faster",
                    wrangler / ours >= 2, f"awswrangler {wrangler:.2f} s, this project {ours:.2f} s")
        if name.startswith("listing"):  # the target is set at 100,000 objects
            if by_rtt.get("20", {}).get("s5cmd ls"):
                ours, s5 = by_rtt["20"][PROJECT], by_rtt["20"]["s5cmd ls"]
                row(f"{name} at 20 ms: ≥ 2 × faster than `s5cmd ls`", f"{s5 / ours:.2f} × faster", s5 / ours >= 2,
                    f"s5cmd {s5:.2f} s (process start included), this project {ours:.2f} s, one paginator "
                    f"{by_rtt['20'][ONE_PAGINATOR]:.2f} s")
            if "0" in by_rtt:
                ours, one = by_rtt["0"][PROJECT], by_rtt["0"][ONE_PAGINATOR]
                row(f"{name} at 0 ms: never slower than one paginator", f"{ours / one:.2f} × its time", ours <= one,
                    f"this project {ours:.2f} s, one paginator {one:.2f} s")
        if name.startswith("deleting") and by_rtt.get("20", {}).get("s5cmd rm"):
            ours, s5 = by_rtt["20"][PROJECT], by_rtt["20"]["s5cmd rm"]
            row(f"{name} at 20 ms: no slower than `s5cmd rm`", f"{ours / s5:.2f} × its time", ours <= s5,
                f"this project {ours:.2f} s, s5cmd rm {s5:.2f} s (process start included)")
    for step, mem in raw.get("memory", {}).items():
        extra = (mem["peak_kb"] - mem["baseline_kb"]) * 1024
        if step.startswith("loading"):
            row(f"{step}: peak grows by ≤ 2.5 × S", f"{extra / mem['bytes']:.2f} × S", extra / mem["bytes"] <= 2.5,
                f"{extra / 1e6:.0f} MB above the baseline for {mem['bytes'] / 1e6:.0f} MB, the frame itself included")
        else:
            per = extra / max(1, mem.get("objects", 1))
            row(f"{step}: < 1 KB per object at peak", f"{per:.0f} B", per < 1024, f"{extra / 1e6:.1f} MB above the baseline")
    for rtt, ticks in raw.get("sensor", {}).items():
        row(f"change sensor over {ticks['objects']:,} objects at {rtt} ms: every tick < 30 s",
            f"longest {ticks['longest_tick']:.1f} s", ticks["longest_tick"] < 30,
            f"the baseline sweep took {ticks['baseline_ticks']} tick(s), {ticks['baseline_seconds']:.1f} s in all "
            "(100 pages and 20 s a tick at most); then a tick that found no change")
    for rtt, graph in raw.get("whole_graph", {}).items():
        total, script = graph["dagster asset materialize --select '*'"], graph["plain script of the notebook's steps"]
        imports = graph["import s3_assets.definitions (python -c)"]
        row(f"whole graph on the CLI at {rtt} ms: ≤ 3 × a plain script", f"{total / script:.2f} ×", total <= 3 * script,
            f"graph {total:.1f} s: importing the code location {imports:.1f} s alone is {imports / script:.1f} × the "
            f"script's {script:.1f} s; the other {total - imports:.1f} s are Dagster's 23 steps and their S3 round trips")
    return lines


def where_the_time_goes(raw: dict) -> list[str]:
    lines = [("| round trip | whole graph (s) | plain script (s) | Python start (s) | import s3_assets.definitions (s) "
             "| the rest: Dagster per step + S3 (s) |"), "|---:|---:|---:|---:|---:|---:|"]
    for rtt, g in raw.get("whole_graph", {}).items():
        graph, script = g["dagster asset materialize --select '*'"], g["plain script of the notebook's steps"]
        start, imports = g["python -c pass"], g["import s3_assets.definitions (python -c)"]
        lines.append(f"| {rtt} ms | {graph:.2f} | {script:.2f} | {start:.2f} | {imports:.2f} | {graph - imports:.2f} |")
    if raw.get("import_profile"):
        lines += ["", ("What each import adds, in one fresh process, in this order "
                  "(`bench/harness/programs/import_steps.py`):"), "", "| import | seconds added |", "|---|---:|"]
        lines += [f"| {name} | {seconds:.2f} |" for name, seconds in raw["import_profile"]]
    return lines


def render(raw: dict, out: Path, notes: str) -> str:
    figure = plot(raw, out)
    shared = raw.get("shared_machine")
    lines = [
        "# Benchmarks", "",
        (f"Measured by `python bench/run.py {raw['argv']}` on {raw['started']}, {raw['cpus']} CPUs, one local "
        "SeaweedFS behind a latency proxy (`bench/harness/latency_proxy.py`: every chunk delayed by half the round "
        "trip in each direction, a new connection one round trip; no bandwidth limit). Every number below comes "
        f"from that one run; every tool went through the same proxy at each round trip ({', '.join(raw['rtts'])} ms). "
        f"Library calls (this project, the notebook's code, the candidates) are timed around the call, best of "
        f"{raw['repeat']} at 0 ms and of 1 above; command-line tools (aws, s5cmd) as whole processes, start-up "
        "included, as a user runs them; awswrangler inside its own process around the call."),
        "",
    ]
    if shared:
        lines += [(f"**The machine was shared** with other work during this run (load average {shared}), so "
                  "absolute times are noisy; ratios within one table were taken minutes apart at most."), ""]
    if raw.get("reduced"):
        lines += [f"**Sizes reduced** for time: {raw['reduced']}.", ""]
    if figure:
        lines += [f"![time against round trip]({figure})", ""]
    lines += ["## Targets", "", *targets(raw), ""]
    for name, by_rtt in raw["scenarios"].items():
        lines += [f"## {name[0].upper()}{name[1:]}", ""]
        for rtt, results in by_rtt.items():
            lines += [f"### {rtt} ms round trip", "", *table(results), ""]
    if raw.get("loading_cpu"):
        files = next((n for n in raw["scenarios"] if "small" in n), "")
        count = int(re.sub(r"\D", "", files.split(" small")[0]) or 1)
        tools_seen = sorted({t for by_tool in raw["loading_cpu"].values() for t in by_tool})
        lines += [f"## Client CPU per file, {files}", "",
                  "CPU time of the benchmark process in the timed call (all its threads), per file, in ms: what "
                  "a load costs the machine that runs it, apart from the server's and the proxy's work "
                  "(which share these CPUs here, but not on AWS).", "",
                  "| tool | " + " | ".join(f"{r} ms" for r in raw["loading_cpu"]) + " |",
                  "|---|" + "---:|" * len(raw["loading_cpu"])]
        for tool in tools_seen:
            cells = [f"{by_tool[tool] * 1000 / count:.2f}" if tool in by_tool else "–"
                     for by_tool in raw["loading_cpu"].values()]
            lines.append(f"| {tool} | " + " | ".join(cells) + " |")
        lines.append("")
    if raw.get("memory"):
        lines += ["## Peak memory of this project's steps (fresh process, RSS sampled every 2 ms)", "",
                  "| step | input (MB) | peak above baseline (MB) | × input |", "|---|---:|---:|---:|"]
        for step, mem in raw["memory"].items():
            extra = (mem["peak_kb"] - mem["baseline_kb"]) / 1024
            lines.append(f"| {step} | {mem['bytes'] / 1e6:.1f} | {extra:.1f} | "
                         f"{extra * 1024 * 1024 / max(1, mem['bytes']):.2f} |")
        lines.append("")
    if raw.get("whole_graph"):
        lines += ["## The whole graph on the CLI: where the time goes", "", *where_the_time_goes(raw), ""]
        for rtt, graph in raw["whole_graph"].items():
            lines += [f"### {rtt} ms round trip", "", *table(graph), ""]
    lines += [notes]
    return "\n".join(lines) + "\n"
