"""5. Update safety as numbers: the minimum healthy capacity an update allows, from the recorded plan."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, run_child
from bench.pools import write_runners
from bench.report import Section, table

ASG = "aws:autoscaling/group:Group"
MIG = "gcp:compute/regionInstanceGroupManager:RegionInstanceGroupManager"
AUTOSCALER = "gcp:compute/regionAutoscaler:RegionAutoscaler"
POOL = "ghrunners:index:RunnerPool"
MOCK_REGION_ZONES = 3  # the recording engine's getZones / getAvailabilityZones answer


def _pool_of(record: dict[str, Any], by_urn: dict[str, dict[str, Any]]) -> str:
    parent = by_urn.get(record["parent"])
    while parent is not None and parent["type"] != POOL:
        parent = by_urn.get(parent["parent"])
    return parent["name"] if parent else "?"


def _aws_row(pool: str, asg: dict[str, Any]) -> tuple[list[Any], float]:
    refresh = asg.get("instanceRefresh", {}).get("preferences", {})
    maintenance = asg.get("instanceMaintenancePolicy", {})
    low = min(refresh.get("minHealthyPercentage", 90), maintenance.get("minHealthyPercentage", 90))
    high = min(refresh.get("maxHealthyPercentage", 100), maintenance.get("maxHealthyPercentage", 100))
    sizes = f"{asg.get('minSize')}/{asg.get('maxSize')}/{asg.get('desiredCapacity', '–')}"
    policy = (f"instance refresh {asg.get('instanceRefresh', {}).get('strategy', '?')}: min healthy "
              f"{refresh.get('minHealthyPercentage')} %, max healthy {refresh.get('maxHealthyPercentage')} %; "
              f"maintenance policy {maintenance.get('minHealthyPercentage')}–"
              f"{maintenance.get('maxHealthyPercentage')} %")
    return [pool, "aws", sizes, policy, f"{low:.0f} %", f"up to {high:.0f} % (launch before terminate)"], low


def _gcp_row(pool: str, mig: dict[str, Any], autoscaler: dict[str, Any] | None) -> tuple[list[Any], float]:
    update = mig.get("updatePolicy", {})
    unavailable = int(update.get("maxUnavailableFixed", update.get("maxUnavailablePercent", 0)) or 0)
    surge = int(update.get("maxSurgeFixed", 0) or 0)
    zones = len(mig.get("distributionPolicyZones") or []) or MOCK_REGION_ZONES
    policy_bounds = (autoscaler or {}).get("autoscalingPolicy", {})
    top = int(policy_bounds.get("maxReplicas") or mig.get("targetSize") or 1)
    targets = range(1, max(top, 1) + 1)
    # With max_unavailable VMs allowed down, a group of `target` VMs keeps (target − max_unavailable).
    low = min(max(t - unavailable, 0) / t for t in targets) * 100
    sizes = (f"target {mig.get('targetSize')}" if autoscaler is None
             else f"autoscaler {policy_bounds.get('minReplicas')}–{policy_bounds.get('maxReplicas')}")
    policy = (f"{update.get('type')} / {update.get('minimalAction')} / {update.get('replacementMethod')}; "
              f"max unavailable {unavailable}, max surge {surge} ({zones} zones)")
    surge_note = f"+{surge} VMs" + ("" if surge >= zones else f" — **below the {zones} zones GCP requires**")
    bounds = f"any size 1–{top}" if autoscaler is not None else f"target {top}"
    return [pool, "gcp", sizes, policy, f"{low:.0f} % ({bounds})", surge_note], low


def measure(workdir: Path, generated_pools: int) -> Section:
    """The example runners.yaml, plus a generated file of `generated_pools` pools (0: none)."""
    section = Section("5. Update safety as numbers")
    started = time.perf_counter()
    files = {"runners.yaml": ROOT / "runners.yaml"}
    if generated_pools:
        files[f"generated {generated_pools}-pool file"] = write_runners(workdir, generated_pools)
    lows: list[float] = []
    for label, path in files.items():
        dump = workdir / f"update-{path.stem}.json"
        run_child(["real", str(path), str(dump)])
        records: list[dict[str, Any]] = json.loads(dump.read_text())["resources"]
        dump.unlink()
        by_urn = {r["urn"]: r for r in records}
        autoscalers = {_pool_of(r, by_urn): r["inputs"] for r in records if r["type"] == AUTOSCALER}
        rows = []
        for record in records:
            pool = _pool_of(record, by_urn)
            if record["type"] == ASG:
                row, low = _aws_row(pool, record["inputs"])
            elif record["type"] == MIG:
                row, low = _gcp_row(pool, record["inputs"], autoscalers.get(pool))
            else:
                continue
            rows.append(row)
            lows.append(low)
        rows.sort(key=lambda row: row[0])
        section.add(f"**{label}** ({len(rows)} pools):", "")
        section.add(*table(["pool", "cloud", "size (min/max/desired)", "update policy in the plan",
                            "min healthy during an update", "extra capacity"], rows))
    worst = min(lows) if lows else math.nan
    section.data["worst"] = worst
    section.add(
        "GCP zone counts come from the recording engine's zone lookup (3 per region) unless the pool names its "
        "zones; the program sizes the surge from the same lookup, so it follows the real region's count. ",
        "",
    )
    section.add(
        "AWS: an instance refresh keeps at least min-healthy % of desired capacity in service and may go up "
        "to max-healthy %, so 100/200 replaces launch-before-terminate; the instance maintenance policy applies "
        "the same bounds to health and rebalancing replacements. GCP: a proactive regional MIG update with "
        "`max_unavailable = 0` keeps every VM of any target size until its substitute runs; the surge must be "
        "at least the number of zones. "
        + (f"**Minimum healthy capacity over every pool: {worst:.0f} %.**" if worst >= 100 else
           f"**Minimum healthy capacity drops to {worst:.0f} %: an update can take runners away.**"),
        "",
    )
    if worst < 100:
        section.problems.append(f"An update policy lets healthy capacity drop to {worst:.0f} %.")
    section.seconds = time.perf_counter() - started
    return section
