"""`python -m bench` runs every measurement and writes bench/results.md; `--smoke` checks the harness quickly."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from bench import agent, evaluation, imports, receiver, simulation, update, validation
from bench.common import ROOT, load_average
from bench.machine import describe
from bench.report import Section

RESULTS = ROOT / "bench" / "results.md"
# Problems these benchmarks found that have been fixed since: the record of what they were worth.
FIXED = [
    "`bootstrap/cloud_config.py` rebuilt the agent bundle (minify + xz preset 9e, whose encoder needs ~674 MiB) "
    "for every pool: ≈ 100 ms per pool, 20 % of a profiled run. Before the fix 1,000 pools took 222.8 s "
    "(5.5× the floor), 100 pools 22.0 s (11.8 s with the bundle memoized in the bench child). Fixed in 18ee74e "
    "(`functools.cache` on `agent_file`).",
    "Every run imported `pulumi_github` (≈ 0.2 s) although only organization/enterprise targets with managed "
    "runner groups use it. Fixed in b437c32 (`stack.runner_groups` imported only when needed).",
    "The user data YAML was written by PyYAML's pure-Python emitter (≈ 9.4 ms per pool); libyaml's emitter "
    "gives the same bytes in ≈ 0.6 ms (a test compares them).",
    "The agent bundle was xz-compressed with a 64 MiB dictionary (≈ 674 MiB encoder memory, 65 MiB to unpack "
    "on the VM); a 1 MiB dictionary gives the same size at 13 ms instead of 65 ms and 1 MiB on the VM.",
]
SECTIONS = ("update", "validation", "imports", "agent", "receiver", "simulation", "evaluation")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true",
                        help="one repetition at tiny sizes; no results file unless --out is given")
    parser.add_argument("--out", type=Path, help=f"where to write the results (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these sections (repeatable)")
    parser.add_argument("--deadline", type=float, default=480.0,
                        help="seconds the whole run aims for; extra repetitions of the largest evaluation size "
                             "are dropped beyond it (every size runs at least once; default 480)")
    args = parser.parse_args(argv)
    chosen = set(args.only or SECTIONS)
    out: Path | None = args.out if args.out else (None if args.smoke else RESULTS)
    started = time.perf_counter()
    load_before = load_average()

    with tempfile.TemporaryDirectory(prefix="gh-runners-bench-") as tmp:
        dirs = {name: Path(tmp) / name for name in SECTIONS}
        for directory in dirs.values():
            directory.mkdir()
        steps: dict[str, Callable[[], Section]] = {
            "update": lambda: update.measure(dirs["update"], generated_pools=0 if args.smoke else 10),
            "validation": lambda: validation.measure(5 if args.smoke else 1000, 1 if args.smoke else 5,
                                                     dirs["validation"]),
            "imports": lambda: imports.measure(2, 1 if args.smoke else 3, dirs["imports"],
                                              smoke=args.smoke),
            "agent": lambda: agent.measure(1 if args.smoke else 5, dirs["agent"],
                                           ("aws:pat", "gcp:pat") if args.smoke else agent.CASES),
            "receiver": lambda: receiver.measure(1 if args.smoke else 200, dirs["receiver"]),
            "simulation": lambda: simulation.measure(1 if args.smoke else 3, dirs["simulation"]),
            "evaluation": lambda: evaluation.measure(
                evaluation.EvalPlan(
                    sizes=[1, 2] if args.smoke else [1, 10, 100, 1000],
                    reps=1 if args.smoke else 3,
                    budget=max(args.deadline - (time.perf_counter() - started), 0.0),
                    profile_size=1 if args.smoke else 40,
                    memo_size=0 if args.smoke else 100,
                    warm_up=not args.smoke,
                    render_size=2 if args.smoke else 40,
                ),
                dirs["evaluation"],
            ),
        }
        names = [name for name in SECTIONS if name in chosen]
        if args.smoke:
            # Timings mean nothing in a smoke run: use both cores to keep it short.
            with ThreadPoolExecutor(max_workers=2) as pool:
                sections = list(pool.map(lambda name: steps[name](), names))
            for name, section in zip(names, sections, strict=True):
                print(f"bench: {name} took {section.seconds:.0f} s", file=sys.stderr, flush=True)
        else:
            sections = []
            for name in names:
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                section = steps[name]()
                print(f"bench: {name} done in {section.seconds:.0f} s", file=sys.stderr, flush=True)
                sections.append(section)

    total = time.perf_counter() - started
    text = render(sections, total, load_before, smoke=args.smoke)
    if out:
        out.write_text(text)
        print(f"bench: wrote {out} in {total:.0f} s", file=sys.stderr)
    else:
        print(text)
    return 0


def render(sections: list[Section], total: float, load_before: str, *, smoke: bool) -> str:
    ordered = sorted(sections, key=lambda s: s.title)
    problems = [p for s in ordered for p in s.problems]
    lines = [
        "# gh-runners benchmarks",
        "",
        "Generated by `make bench` (`python -m bench`); do not edit by hand. "
        + ("**Smoke run: tiny sizes, one repetition; these numbers mean nothing.** " if smoke else "")
        + f"Measured {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; the whole run took "
        f"{total / 60:.1f} min. Times are median (min–max, n = repetitions); every measurement is a fresh "
        "subprocess.",
        "",
        "## Machine",
        "",
        *describe(),
        f"Load average (1/5/15 min) at the start: {load_before}. The machine was shared with other jobs while "
        "this ran, which the ranges show.",
        "",
        "## Summary",
        "",
        *summary(ordered),
        "",
        "## Interpretation",
        "",
        *interpretation(ordered),
        "",
        "## Problems found",
        "",
        *([f"- {p}" for p in problems] or ["None."]),
        "",
        "Found by earlier runs and fixed since:",
        "",
        *[f"- {fixed}" for fixed in FIXED],
        "",
    ]
    return "\n".join(lines) + "\n" + "\n".join(s.markdown() for s in ordered)


def summary(sections: list[Section]) -> list[str]:
    by = {s.title.split(".")[0]: s for s in sections}
    lines: list[str] = []
    if "1" in by and "medians" in by["1"].data:
        medians = by["1"].data["medians"]
        top = max(medians)
        m = medians[top]
        line = (f"- **Evaluation**: {top} pools ({m['resources']} resources) evaluate in {m['real']:.1f} s, "
                f"{m['ratio']:.1f}× the floor program's {m['floor']:.1f} s; peak memory {m['rss_real']:.0f} MB "
                f"(floor {m['rss_floor']:.0f} MB).")
        if "per_pool_ms" in by["1"].data:
            line += (f" Growth {by['1'].data['per_pool_ms']:.0f} ms per pool, "
                     + ("linear." if by["1"].data.get("linear") else "**not linear**."))
        if "memo" in by["1"].data:
            memo = by["1"].data["memo"]
            line += (f" With the agent bundle built once (suggested fix) {memo['pools']} pools take "
                     f"{memo['memo']:.1f} s instead of {memo['real']:.1f} s.")
        lines.append(line)
    if "2" in by and "ratios" in by["2"].data:
        ratios = by["2"].data["ratios"]
        lines.append("- **Validation**: `python -m schema validate` / check-jsonschema wall time = "
                     + "; ".join(f"{ratio:.2f}× on {label}" for label, ratio in ratios.items())
                     + ("; no pulumi module imported." if not by["2"].data.get("pulumi_modules") else "."))
    if "3" in by and "costs" in by["3"].data:
        costs = by["3"].data["costs"]
        lines.append("- **Imports**: " + ", ".join(f"`{sdk}` {seconds * 1000:.0f} ms"
                                                   for sdk, seconds in costs.items() if sdk != "pulumi")
                     + " (import plus the subpackages the program uses, after pulumi itself "
                     f"{costs.get('pulumi', 0) * 1000:.0f} ms).")
    if "4" in by and by["4"].data.get("headline"):
        lines.append("- **VM agent**: " + by["4"].data["headline"])
    if "5" in by and "worst" in by["5"].data:
        lines.append(f"- **Update safety**: minimum healthy capacity during an update {by['5'].data['worst']:.0f} % "
                     "on every pool.")
    if "6" in by and by["6"].data.get("headline"):
        lines.append("- **Webhook receiver**: " + by["6"].data["headline"] + " on loopback doubles.")
    if "7" in by and by["7"].data.get("headline"):
        lines.append("- **End to end on loopback**: " + by["7"].data["headline"] + " (the real agent as VMs).")
    return lines


def interpretation(sections: list[Section]) -> list[str]:
    by = {s.title.split(".")[0]: s for s in sections}
    lines: list[str] = []
    one = by.get("1")
    if one and "medians" in one.data:
        medians = one.data["medians"]
        top = max(medians)
        m = medians[top]
        text = (f"- At {top} pools the program registers {m['resources']} resources in {m['real']:.0f} s; Pulumi's "
                f"own per-resource work under the same engine (the floor) is {m['floor']:.0f} s of that. ")
        share = one.data.get("agent_file_share")
        if share:
            text += (f"Most of the rest is one avoidable cost: the agent bundle (minify + xz) is rebuilt for every "
                     f"pool, {share:.0%} of the profiled run. ")
        fit, render_data = one.data.get("fit"), one.data.get("render")
        if fit and render_data:
            extra_ms = (fit["real"][1] - fit["floor"][1]) * 1000
            text += (f"Per pool the program adds ≈ {extra_ms:.0f} ms to the floor's {fit['floor'][1] * 1000:.0f} ms "
                     "(validation, backends, typed SDK arguments, outputs); rendering the user data is "
                     f"{render_data['memo'] * 1000:.1f} ms of that")
            text += (f", {render_data['c_emitter'] * 1000:.1f} ms with libyaml's emitter. "
                     if "c_emitter" in render_data else ". ")
        memo = one.data.get("memo")
        if memo:
            text += (f"Built once, {memo['pools']} pools drop from {memo['real']:.1f} s to {memo['memo']:.1f} s "
                     f"(floor {memo['floor']:.1f} s). ")
        low = min(medians)
        per_pool_mb = (m["rss_real"] - medians[low]["rss_real"]) / max(top - low, 1)
        text += (f"Memory grows ≈ {per_pool_mb:.2f} MB per pool (the recording engine keeps every input, "
                 "user data included), "
                 f"{m['rss_real'] / 1024:.1f} GB at {top} pools.")
        lines.append(text)
        if "linear" in one.data:
            lines.append("- Evaluation is " + ("linear in the number of pools: no per-pool data-source call "
                                              "(the quadratic trap) is left." if one.data["linear"] else
                                              "**not** linear in the number of pools: see section 1."))
    two = by.get("2")
    if two and "ratios" in two.data:
        lines.append("- Pre-commit validation costs about half a second per file and is dominated by interpreter "
                     "and pydantic start-up, not by the file; it never imports Pulumi. check-jsonschema is in the "
                     "same range but cannot check cron, time zones, arch/type, zones or duplicates.")
    three = by.get("3")
    if three and "costs" in three.data:
        costs = three.data["costs"]
        lines.append(f"- The provider SDKs are the program's fixed cost: `pulumi_gcp.compute` alone is the bulk of "
                     f"`pulumi_gcp` ({costs.get('pulumi_gcp', 0):.1f} s), `pulumi_aws.ec2` of `pulumi_aws` "
                     f"({costs.get('pulumi_aws', 0):.1f} s). The lazy registry keeps a single-cloud file from "
                     "paying for the other cloud.")
    four = by.get("4")
    if four and four.data.get("headline"):
        lines.append("- A VM's own boot work is a fraction of a second and a handful of sequential round trips "
                     "once the runner is on the image; a cold start is dominated by the cloud's VM boot "
                     "(≈ 25–40 s) and by whatever cloud-init installs, which a prebaked image removes.")
    five = by.get("5")
    if five and "worst" in five.data:
        lines.append(f"- Updates never drop healthy capacity below {five.data['worst']:.0f} % on either cloud.")
    return lines


if __name__ == "__main__":
    sys.exit(main())
