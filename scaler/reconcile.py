"""The periodic repair: queued jobs against capacity, and every group at least at its floor.

Webhooks get lost (GitHub does not redeliver a failed delivery by itself:
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries)
and a scale-up can fail. Every `interval_seconds` the same function runs this:

    target(pool) = min(max, max(floor, busy + queued))
    add(pool)    = target - size, when positive

`size` is the group's desired/target size, `floor` the group's current floor
(the adapter knows where it lives), `busy` the pool's runners GitHub reports
busy, `queued` the queued jobs the pool-choice rule gives the pool. A VM that
is booting or idle counts in `size` and not in `busy`, so it is already
waiting for one of the queued jobs. The reconcile only adds: VMs above the
target leave by themselves after `idle_timeout`.

Where the queued jobs come from, within `request_budget` GitHub requests per
run (operations of GitHub's OpenAPI description, npm @octokit/openapi,
generated/api.github.com.json):

* `GET /{scope}/actions/runners` (actions/list-self-hosted-runners-for-repo,
  -for-org, and for enterprises in ghec.json) -> busy runners per pool,
  matched by name prefix `<pool>-` and the pool's exact label set;
* repository target: `GET /repos/{owner}/{repo}/actions/runs?status=queued`
  and `?status=in_progress` (actions/list-workflow-runs-for-repo; a run whose
  first job finished is in_progress while its next job waits), then
  `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest`
  (actions/list-jobs-for-workflow-run) for each such run, newest first;
* organization target: the same per repository, for a rotating window of the
  organization's repositories (`GET /orgs/{org}/repos`, repos/list-for-org,
  sorted by name so the window is stable): window = run number modulo the
  number of windows, so every repository is looked at once every
  ceil(repositories / window size) runs;
* enterprise target: GitHub has no REST listing of an enterprise's queued
  jobs; the reconcile only keeps floors there.

How long a job can wait after a lost webhook: a repository target, one
interval (5 minutes by default) plus a VM's boot; an organization target, up
to ceil(repositories / window size) intervals plus a boot (the window size is
logged on every run); an enterprise target, until another job of its pool
queues or a VM of the pool frees up.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from scaler.config import Pool, ScalerConfig
from scaler.decision import Groups, ScaleError, choose_pool
from scaler.github import BudgetExhausted, GitHub, GitHubError

log = logging.getLogger("scaler")
# Requests one repository costs in the org window: two run listings and about one job listing.
REQUESTS_PER_REPOSITORY = 3


@dataclass(frozen=True)
class GroupState:
    size: int  # desired capacity / target size: VMs running, booting, or about to be created
    floor: int


class ReconcileGroups(Groups, Protocol):
    def state(self, pool: Pool, now: datetime) -> GroupState:
        """The group's size and its floor right now."""
        ...

    def add(self, pool: Pool, count: int, run: int) -> int:
        """Add up to `count` VMs (bounded by max); `run` numbers this reconcile (idempotency key). Returns added."""
        ...


@dataclass
class Demand:
    """What GitHub says: busy runners and queued jobs per pool name; `complete` if nothing was cut short."""

    busy: Counter[str] = field(default_factory=Counter)
    queued: Counter[str] = field(default_factory=Counter)
    known: bool = False  # runners were listed: busy counts are real
    complete: bool = True
    repositories: int = 0
    window: str = ""


@dataclass(frozen=True)
class PoolPlan:
    pool: str
    size: int
    floor: int
    busy: int
    queued: int
    target: int
    added: int = 0
    error: str = ""


def run_number(config: ScalerConfig, now: datetime) -> int:
    """Which reconcile this is: the count of intervals since the epoch (same for a retried run)."""
    return int(now.timestamp()) // config.reconcile.interval_seconds


def reconcile(config: ScalerConfig, github: GitHub | None, groups: ReconcileGroups, now: datetime) -> list[PoolPlan]:
    pools = [pool for pool in config.own_pools if pool.scales_on_demand]
    if not pools:
        return []
    run = run_number(config, now)
    demand = Demand()
    if github is not None:
        demand = find_demand(config, github, run)
    plans = []
    for pool in pools:
        plans.append(_plan_pool(pool, groups, demand, now, run))
    summary = {
        "reconcile": run,
        "requests": github.spent if github else 0,
        "complete": demand.complete,
        "repositories": demand.repositories,
        "window": demand.window,
        "pools": [plan.__dict__ for plan in plans],
    }
    log.info(json.dumps(summary, separators=(",", ":")))
    return plans


def _plan_pool(pool: Pool, groups: ReconcileGroups, demand: Demand, now: datetime, run: int) -> PoolPlan:
    try:
        state = groups.state(pool, now)
    except ScaleError as exc:
        return PoolPlan(pool.name, -1, -1, 0, 0, -1, error=str(exc)[:200])
    busy, queued = demand.busy[pool.name], demand.queued[pool.name]
    wanted = busy + queued if demand.known else 0
    target = min(pool.max, max(state.floor, wanted))
    plan = PoolPlan(pool.name, state.size, state.floor, busy, queued, target)
    missing = target - state.size
    if missing <= 0:
        return plan
    try:
        added = groups.add(pool, missing, run)
    except ScaleError as exc:
        return PoolPlan(**{**plan.__dict__, "error": str(exc)[:200]})
    return PoolPlan(**{**plan.__dict__, "added": added})


def find_demand(config: ScalerConfig, github: GitHub, run: int) -> Demand:
    """Busy runners and queued jobs per pool, as far as the budget reaches."""
    demand = Demand()
    try:
        _count_busy(config, github, demand)
        demand.known = True
        scope = config.github.scope
        if scope == "repository":
            demand.repositories = 1
            _count_queued(config, github, config.github.target, demand)
        elif scope == "organization":
            _count_queued_org(config, github, run, demand)
    except BudgetExhausted:
        demand.complete = False
    except (GitHubError, ScaleError, OSError) as exc:
        # Partial knowledge is still knowledge: keep what was counted, and say so. (ScaleError:
        # the credential could not be read from the cloud's store.)
        demand.complete = False
        log.warning(json.dumps({"reconcile": run, "github": str(exc)[:200]}))
    return demand


def runner_pool(config: ScalerConfig, runner: dict[str, Any]) -> Pool | None:
    """The pool a listed runner belongs to: its name is `<pool>-...` and its labels are the pool's."""
    name = str(runner.get("name", ""))
    labels = frozenset(str(label.get("name", "")).lower() for label in runner.get("labels", []))
    for pool in config.pools:
        if name.startswith(f"{pool.name}-") and labels == pool.label_keys:
            return pool
    return None


def _count_busy(config: ScalerConfig, github: GitHub, demand: Demand) -> None:
    for runner in github.pages(f"/{config.github.scope_path}/actions/runners", "runners"):
        pool = runner_pool(config, runner)
        if pool is not None and runner.get("busy") and runner.get("status") == "online":
            demand.busy[pool.name] += 1


def _count_queued(config: ScalerConfig, github: GitHub, repository: str, demand: Demand) -> None:
    runs: dict[int, dict[str, Any]] = {}
    for status in ("queued", "in_progress"):
        for item in github.pages(f"/repos/{repository}/actions/runs", "workflow_runs", status=status):
            runs[int(item["id"])] = item
    # Newest first: if the budget runs out, the jobs most likely still waiting were counted.
    for run_id in sorted(runs, reverse=True):
        for job in github.pages(f"/repos/{repository}/actions/runs/{run_id}/jobs", "jobs", filter="latest"):
            if job.get("status") != "queued":
                continue
            pool = choose_pool(job.get("labels") or [], config.pools)
            if pool is not None and pool.cloud == config.cloud:
                demand.queued[pool.name] += 1


def _count_queued_org(config: ScalerConfig, github: GitHub, run: int, demand: Demand) -> None:
    org = config.github.target
    names = sorted(
        str(repo["full_name"])
        for repo in github.pages(f"/orgs/{org}/repos", "", type="all", sort="full_name")
        if not repo.get("archived") and not repo.get("disabled")
    )
    left = config.reconcile.request_budget - github.spent
    size = max(1, left // REQUESTS_PER_REPOSITORY)
    windows = max(1, math.ceil(len(names) / size))
    first = (run % windows) * size
    window = names[first : first + size]
    demand.window = f"{run % windows + 1}/{windows} ({len(window)} of {len(names)} repositories)"
    for repository in window:
        _count_queued(config, github, repository, demand)
        demand.repositories += 1
