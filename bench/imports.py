"""3. Import cost: which provider SDK modules an AWS-only, a GCP-only and a mixed file load, and their cost."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import Stat, run_child
from bench.pools import Mix, write_runners
from bench.report import Section, table
from bench.validation import parse_importtime

SDKS = ("pulumi_aws", "pulumi_gcp", "pulumi_github")
GROUPS = ("pulumi_aws", "pulumi_gcp", "pulumi_github", "pulumi", "grpc", "google", "pydantic", "yaml")


def measure(pools: int, reps: int, workdir: Path, *, smoke: bool = False) -> Section:
    """`smoke`: the mixed file only, its one run traced with -X importtime (no separate timing runs)."""
    section = Section("3. Import cost of the provider SDKs")
    started = time.perf_counter()
    mixes: list[Mix] = ["mixed"] if smoke else ["aws", "gcp", "mixed"]
    rows, import_rows = [], []
    used: dict[str, set[str]] = {sdk: set() for sdk in SDKS}
    loaded_by_mix: dict[str, dict[str, Any]] = {}
    for mix in mixes:
        file = write_runners(workdir, pools, mix)
        traced = run_child(["real", str(file)], extra_python=["-X", "importtime"])
        runs = [traced] if smoke else [run_child(["real", str(file)]) for _ in range(reps)]
        sdks: dict[str, Any] = runs[0].result["sdks"]
        loaded_by_mix[mix] = sdks
        for sdk, info in sdks.items():
            used[sdk].update(info["subpackages"])
        first = Stat.of([r.result["first_resource"] for r in runs])
        evaluation = Stat.of([r.result["evaluation"] for r in runs])
        wall = Stat.of([r.wall for r in runs])
        loaded = "; ".join(
            f"`{sdk}`: {info['loaded']} modules run ({', '.join(info['subpackages']) or 'top level only'}), "
            f"{info['lazy']} lazy stub(s) untouched"
            for sdk, info in sdks.items()
        )
        rows.append([f"{mix} ({pools} pools)", loaded, first.show(), evaluation.show(), wall.show()])
        by_group = {group: 0 for group in GROUPS}
        for name, self_us, _cum, _depth in parse_importtime(traced.stderr):
            root = name.split(".")[0]
            key = root if root in by_group else ("google" if root.startswith("google") else None)
            if key:
                by_group[key] += self_us
        import_rows.append([mix, *[f"{by_group[g] / 1000:.0f} ms" if by_group[g] else "–" for g in GROUPS]])

    section.add(
        f"Real program on small generated files ({pools} pools each, repository target), fresh process per run, "
        f"{reps} repetition(s). *First resource* is the time from the child's start (before any import) to the "
        "first resource the engine sees: the first pool's backend, and so its SDK, is imported before it.",
        "",
    )
    section.add(*table(["file", "SDK modules executed", "time to first resource", "evaluation",
                        "process wall"], rows))
    problems = []
    if "pulumi_gcp" in loaded_by_mix.get("aws", {}):
        problems.append("An AWS-only file loads pulumi_gcp: the backend registry is not lazy.")
    if "pulumi_aws" in loaded_by_mix.get("gcp", {}):
        problems.append("A GCP-only file loads pulumi_aws: the backend registry is not lazy.")
    if problems:
        section.add("**" + " ".join(problems) + "**", "")
    elif "aws" in loaded_by_mix and "gcp" in loaded_by_mix:
        section.add("An AWS-only file never executes pulumi_gcp and a GCP-only file never executes pulumi_aws "
                    "(the lazy backend registry works).", "")
    section.problems += problems

    section.add(
        "`-X importtime` self times summed by package, one traced run each: a breakdown, not a measurement "
        "(tracing adds its own overhead, and the SDKs' lazily loaded subpackages run outside the import "
        "statement, so `-X importtime` sees only the modules they import); the direct timings below are the "
        "cost.",
        "",
    )
    section.add(*table(["file", *GROUPS], import_rows))

    # Direct: a fresh process per SDK (smoke: one for all), pulumi first, then the SDK, then each
    # subpackage the program used.
    specs = [f"{sdk}:{','.join(sorted(used[sdk]))}" for sdk in SDKS]
    groups = [specs] if smoke else [[spec] for spec in specs]
    timings: list[dict[str, float]] = []  # per repetition, every key
    for _ in range(reps):
        merged: dict[str, float] = {}
        for group in groups:
            merged.update(run_child(["import-cost", *group]).result["timings"])
        timings.append(merged)
    cost_rows = []
    costs: dict[str, float] = {"pulumi": Stat.of([t["pulumi"] for t in timings]).median}
    for sdk in SDKS:
        keys = [key for key in timings[0] if key == sdk or key.startswith(sdk + ".")]
        total = Stat.of([sum(t[key] for key in keys) for t in timings])
        costs[sdk] = total.median
        parts = ", ".join(f"`{key}` {Stat.of([t[key] for t in timings]).median * 1000:.0f} ms" for key in keys)
        cost_rows.append([f"`{sdk}`", parts, total.show()])
    section.add(
        f"Direct cost in a fresh process (after `import pulumi`, itself {costs['pulumi'] * 1000:.0f} ms), "
        f"{reps} repetition(s), median; subpackages are the ones the program used:",
        "",
    )
    section.add(*table(["SDK", "import, then first use of each subpackage", "total"], cost_rows))
    section.data["costs"] = costs
    github_cost = costs.get("pulumi_github", 0.0)
    if any("pulumi_github" in sdks for sdks in loaded_by_mix.values()):
        section.problems.append(
            f"A repository-target file loads `pulumi_github` ({github_cost * 1000:.0f} ms here) although only "
            "organization/enterprise targets with managed runner groups create GitHub resources: import "
            "`stack.runner_groups` (and so `pulumi_github`) only when `runners.managed_groups` is non-empty and "
            "the target is not a repository."
        )
    else:
        section.add(f"No file here (all repository targets) loads `pulumi_github`; an organization or enterprise "
                    f"target with managed runner groups pays its {github_cost * 1000:.0f} ms.", "")
    section.seconds = time.perf_counter() - started
    return section

