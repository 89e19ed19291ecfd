"""2. Validation for pre-commit: `python -m schema validate` vs check-jsonschema on the same files."""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

from bench.common import PYTHON, ROOT, Stat, timed_command
from bench.pools import write_runners
from bench.report import Section, table

_SEMANTIC_ERRORS = """\
version: 1
github: {repository: acme/bench}
pools:
  - name: nightly
    provider: aws
    schedules: [{cron: "61 21 * * *", desired: 0, time_zone: Mars/Olympus}]
  - name: general
    provider: gcp
    region: us-central1
    zones: [europe-west4-a]
"""
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)$")


def check_jsonschema() -> str:
    beside = Path(sys.executable).parent / "check-jsonschema"
    found = str(beside) if beside.exists() else shutil.which("check-jsonschema")
    if not found:
        raise RuntimeError("check-jsonschema is not installed (requirements-dev.txt)")
    return found


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """(module, self µs, cumulative µs, depth) for every `-X importtime` line."""
    rows = []
    for line in stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match:
            depth = (len(match.group(3)) - 1) // 2
            rows.append((match.group(4), int(match.group(1)), int(match.group(2)), depth))
    return rows


def measure(pools: int, reps: int, workdir: Path) -> Section:
    section = Section("2. Validation for pre-commit")
    started = time.perf_counter()
    files = {"runners.yaml (the example, 2 pools)": ROOT / "runners.yaml",
             f"generated, {pools} pools": write_runners(workdir, pools)}
    schema_file = ROOT / "schema" / "runners.schema.json"
    tools = {
        "python -m schema validate": [PYTHON, "-m", "schema", "validate"],
        "check-jsonschema --schemafile schema/runners.schema.json": [check_jsonschema(), "--schemafile",
                                                                     str(schema_file)],
    }
    rows = []
    ratios = {}
    for label, path in files.items():
        times: dict[str, list[float]] = {tool: [] for tool in tools}
        for _ in range(reps):
            for tool, command in tools.items():  # alternate, so load changes hit both alike
                seconds, proc = timed_command([*command, str(path)])
                if proc.returncode != 0:
                    raise RuntimeError(f"{tool} rejected {path}:\n{proc.stdout}{proc.stderr}")
                times[tool].append(seconds)
        ours, theirs = (Stat.of(times[tool]) for tool in tools)
        ratios[label] = ours.median / theirs.median
        rows.append([label, ours.show(), theirs.show(), f"{ours.median / theirs.median:.2f}×"])
    section.add(
        "Both as subprocesses, wall time, alternating, "
        f"{reps} repetition(s); both accept both files.",
        "",
    )
    section.add(*table(["file", "python -m schema validate", "check-jsonschema", "ours / check-jsonschema"], rows))
    section.data["ratios"] = ratios

    # What the validator imports: no Pulumi, and where its start-up time goes.
    big = files[f"generated, {pools} pools"]
    _, proc = timed_command([PYTHON, "-X", "importtime", "-m", "schema", "validate", str(big)])
    imports = parse_importtime(proc.stderr)
    pulumi = sorted({name for name, *_ in imports if name.split(".")[0].startswith("pulumi")})
    top: dict[str, int] = {}
    for name, self_us, _cum, _depth in imports:
        root = name.split(".")[0]
        top[root] = top.get(root, 0) + self_us
    total_ms = sum(top.values()) / 1000
    heaviest = sorted(top.items(), key=lambda item: -item[1])[:6]
    section.data["pulumi_modules"] = pulumi
    section.add(
        f"`python -X importtime -m schema validate` on the {pools}-pool file: {len(imports)} modules, "
        f"{total_ms:.0f} ms of imports in all; heaviest packages (self time summed): "
        + ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in heaviest)
        + ". "
        + ("**No pulumi module is imported.**" if not pulumi else f"**Pulumi modules imported: {pulumi}**"),
        "",
    )
    # What only the pydantic validator sees: a file the JSON Schema accepts.
    bad = workdir / "semantic-errors.yaml"
    bad.write_text(_SEMANTIC_ERRORS)
    _, ours_run = timed_command([*tools["python -m schema validate"], str(bad)])
    _, theirs_run = timed_command([*tools["check-jsonschema --schemafile schema/runners.schema.json"], str(bad)])
    located = [line for line in ours_run.stderr.splitlines() if line.startswith(str(bad))]
    section.add(
        "check-jsonschema checks the structure the JSON Schema can express; `python -m schema validate` also "
        "checks what it cannot. On a file with a cron minute of 61, an unknown time zone and a zone outside "
        f"its pool's region, check-jsonschema exits {theirs_run.returncode}"
        + (" (accepts it)" if theirs_run.returncode == 0 else "")
        + f", `python -m schema validate` exits {ours_run.returncode} with {len(located)} FILE:LINE:COL "
        "problem(s). The two are complementary (the JSON Schema serves editors), not rivals.",
        "",
    )
    if pulumi:
        section.problems.append(f"The validator imports Pulumi modules: {', '.join(pulumi)}")
    section.seconds = time.perf_counter() - started
    return section
