"""The scheduled reconcile: lost webhooks repaired, floors kept, the GitHub budget respected."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from receiver_doubles.stack import PAT, WEBHOOK_SECRET, Stack, build_stack
from receiver_doubles.webhooks import Sender, job_payload
from receiver_doubles.world import PoolSpec, aws_desired

from scaler.config import Pool, ScalerConfig, load
from scaler.decision import Grown
from scaler.github import GitHub
from scaler.reconcile import GroupState, find_demand, reconcile, run_number

CODEX = ["self-hosted", "linux", "x64", "codex"]
GENERAL = ["self-hosted", "linux", "x64", "general"]
NOW = datetime(2025, 6, 2, 12, 0, tzinfo=timezone.utc)


def config(github_url: str, *, scope: str = "repository", target: str = "octo-org/octo-repo",
           budget: int = 100, pools: list[dict[str, Any]] | None = None) -> ScalerConfig:
    pools = pools or [
        {"name": "codex", "cloud": "aws", "order": 0, "labels": CODEX, "max": 6, "min": 0,
         "aws": {"region": "us-east-1", "group": "g-codex", "scale_up_policy": "up"}},
        {"name": "general", "cloud": "gcp", "order": 1, "labels": GENERAL, "max": 2, "min": 1},
    ]
    ref = {"location": "/x", "region": "us-east-1"}
    return load(json.dumps({
        "version": 1, "cloud": "aws", "github": {"scope": scope, "target": target, "api_url": github_url},
        "webhook_secret": ref, "github_credential": ref, "pools": pools,
        "reconcile": {"interval_seconds": 300, "request_budget": budget}}))


@dataclass
class FakeGroups:
    sizes: dict[str, int]
    floors: dict[str, int] = field(default_factory=dict)
    added: list[tuple[str, int, int]] = field(default_factory=list)

    def grow(self, pool: Pool, job_id: int) -> Grown:
        raise AssertionError("the reconcile adds, it does not grow per job")

    def state(self, pool: Pool, now: datetime) -> GroupState:
        return GroupState(self.sizes[pool.name], self.floors.get(pool.name, pool.min))

    def add(self, pool: Pool, count: int, run: int) -> int:
        room = min(count, pool.max - self.sizes[pool.name])
        self.sizes[pool.name] += room
        self.added.append((pool.name, count, run))
        return room


def client(github_api: Any, budget: int = 100) -> GitHub:
    return GitHub(github_api.url, lambda: json.dumps({"kind": "pat", "token": PAT}), budget)


def test_queued_jobs_without_capacity_are_added(github_api: Any) -> None:
    for job_id in (1, 2, 3):
        github_api.queue(job_id, "octo-org/octo-repo", CODEX)
    github_api.queue(4, "octo-org/octo-repo", ["ubuntu-latest"])  # not ours
    github_api.queue(5, "octo-org/octo-repo", GENERAL)  # the GCP receiver's
    groups = FakeGroups({"codex": 1})  # one VM already booting for one of them
    (plan,) = reconcile(config(github_api.url), client(github_api), groups, NOW)
    assert (plan.queued, plan.busy, plan.size, plan.target, plan.added) == (3, 0, 1, 3, 2)
    assert groups.added == [("codex", 2, run_number(config(github_api.url), NOW))]


def test_busy_runners_keep_their_vms(github_api: Any) -> None:
    github_api.queue(1, "octo-org/octo-repo", CODEX)
    github_api.add_runner("codex-i-0a1", CODEX, busy=True)
    github_api.add_runner("codex-i-0a2", CODEX, busy=True)
    github_api.add_runner("codex-i-0a3", CODEX, busy=False)  # idle: counts as capacity, not as busy
    github_api.add_runner("codex-lookalike", ["self-hosted", "gpu"], busy=True)  # other labels: not the pool's
    groups = FakeGroups({"codex": 3})
    (plan,) = reconcile(config(github_api.url), client(github_api), groups, NOW)
    assert (plan.busy, plan.queued, plan.target, plan.added) == (2, 1, 3, 0)


def test_target_is_capped_at_max_and_raised_to_the_floor(github_api: Any) -> None:
    for job_id in range(1, 11):
        github_api.queue(job_id, "octo-org/octo-repo", CODEX)
    groups = FakeGroups({"codex": 0})
    (plan,) = reconcile(config(github_api.url), client(github_api), groups, NOW)
    assert (plan.queued, plan.target, plan.added) == (10, 6, 6)
    github_api.reset()
    github_api.tokens.add(PAT)
    groups = FakeGroups({"codex": 0}, floors={"codex": 2})
    (plan,) = reconcile(config(github_api.url), client(github_api), groups, NOW)
    assert (plan.queued, plan.target, plan.added) == (0, 2, 2)


def test_without_github_the_floor_still_holds(github_api: Any) -> None:
    github_api.tokens.clear()  # every GitHub call now answers 401
    groups = FakeGroups({"codex": 0}, floors={"codex": 1})
    (plan,) = reconcile(config(github_api.url), client(github_api), groups, NOW)
    assert (plan.target, plan.added) == (1, 1)


def test_in_progress_runs_are_searched_for_waiting_jobs(github_api: Any) -> None:
    github_api.queue(1, "octo-org/octo-repo", CODEX, run_id=77)
    github_api.queue(2, "octo-org/octo-repo", CODEX, run_id=77)
    github_api.jobs[1].status = "in_progress"  # the run is in progress; job 2 still waits
    demand = find_demand(config(github_api.url), client(github_api), 0)
    assert demand.queued["codex"] == 1 and demand.complete


def test_the_budget_bounds_requests_and_what_was_seen_still_counts(github_api: Any) -> None:
    for job_id in range(1, 9):
        github_api.queue(job_id, "octo-org/octo-repo", CODEX)  # eight runs, one job each
    gh = client(github_api, budget=6)  # runners + 2 run listings + 3 job listings
    demand = find_demand(config(github_api.url, budget=6), gh, 0)
    assert gh.spent == 6 and not demand.complete
    assert demand.queued["codex"] == 3


def test_organization_repositories_are_covered_in_rotating_windows(github_api: Any) -> None:
    repos = [f"octo-org/repo-{i:02}" for i in range(12)]
    for i, repo in enumerate(repos):
        github_api.queue(100 + i, repo, CODEX)
    github_api.repositories.append("octo-org/old")
    github_api.archived.add("octo-org/old")
    cfg = config(github_api.url, scope="organization", target="octo-org", budget=14)
    seen: set[str] = set()
    windows = set()
    for step in range(3):
        gh = client(github_api, budget=14)
        before = len(github_api.log)
        demand = find_demand(cfg, gh, run_number(cfg, NOW + timedelta(minutes=5 * step)))
        windows.add(demand.window)
        assert gh.spent <= 14
        seen |= {r.path.split("/actions/")[0].removeprefix("/repos/") for r in github_api.log[before:]
                 if "/actions/runs" in r.path}
        assert demand.queued["codex"] == demand.repositories
    assert seen == set(repos)  # every active repository within ceil(12 / window) runs; archived ones never
    assert len(windows) == 3


# --- as the deployed function runs it: POST /reconcile on the receiver process ------------------------


POOLS = [PoolSpec("codex", "aws", ["codex"], max=3),
         PoolSpec("general", "gcp", ["general"], max=3, min=0,
                  schedules=[{"cron": "* * * * *", "desired": 1, "time_zone": "UTC"}])]


@pytest.fixture
def stack(aws_front: Any, gcp: Any, github_api: Any, start_receiver: Any) -> Stack:
    return build_stack(POOLS, aws_front=aws_front, gcp=gcp, github_api=github_api, start_receiver=start_receiver,
                       secret=WEBHOOK_SECRET, pat=PAT)


def reconcile_now(receiver: Any) -> list[dict[str, Any]]:
    sender = Sender(receiver.url, WEBHOOK_SECRET)
    status, body = sender.post(b"", {}, path="/reconcile")
    sender.close()
    assert status == 200
    return body["reconciled"]


def test_a_lost_webhook_is_repaired_on_both_clouds(stack: Stack, aws_front: Any, gcp: Any, github_api: Any) -> None:
    github_api.queue(501, "octo-org/octo-repo", CODEX)
    github_api.queue(502, "octo-org/octo-repo", CODEX)
    github_api.queue(503, "octo-org/octo-repo", GENERAL)
    (aws_plan,) = reconcile_now(stack.aws)
    assert (aws_plan["queued"], aws_plan["added"]) == (2, 2)
    assert aws_desired(aws_front, stack.pool("codex")) == 2
    (gcp_plan,) = reconcile_now(stack.gcp)
    # The schedule says the floor is 1 and one job waits: one VM serves both until it is taken.
    assert (gcp_plan["floor"], gcp_plan["queued"], gcp_plan["target"], gcp_plan["added"]) == (1, 1, 1, 1)
    group = gcp.compute.groups[("gh-runners-test", "us-central1", stack.pool("general").group)]
    (created,) = group.live
    assert created.name.startswith("ghr-test-general-r")
    # A second run (or a retried one) finds nothing missing.
    assert reconcile_now(stack.gcp)[0]["added"] == 0
    assert reconcile_now(stack.aws)[0]["added"] == 0


def test_a_webhook_then_a_reconcile_do_not_double_count(stack: Stack, aws_front: Any, github_api: Any) -> None:
    github_api.queue(601, "octo-org/octo-repo", CODEX)
    sender = Sender(stack.aws.url, WEBHOOK_SECRET)
    assert sender.deliver("workflow_job", job_payload("queued", 601, CODEX))[1]["decision"] == "grown"
    sender.close()
    (plan,) = reconcile_now(stack.aws)
    assert (plan["size"], plan["queued"], plan["added"]) == (1, 1, 0)
    assert aws_desired(aws_front, stack.pool("codex")) == 1


def test_gcp_reconcile_again_in_the_same_interval_still_adds(stack: Stack, gcp: Any, github_api: Any) -> None:
    """A VM the reconcile created left again (its job done) before the next run in the same interval:
    that run must create anew, not collide with the old name or replay the old request id."""
    github_api.queue(701, "octo-org/octo-repo", GENERAL)
    group = gcp.compute.groups[("gh-runners-test", "us-central1", stack.pool("general").group)]
    assert reconcile_now(stack.gcp)[0]["added"] == 1
    (first,) = group.live
    first.action = "DELETING"  # it left its group
    gcp.compute.finish_deletes(group)
    (plan,) = reconcile_now(stack.gcp)
    assert plan["added"] == 1
    assert len(group.live) == 1


def test_a_slow_github_cannot_outlast_the_function(github_api: Any) -> None:
    for job_id in range(1, 6):
        github_api.queue(job_id, "octo-org/octo-repo", CODEX)
    github_api.inject(r"/jobs$", kind="hang", seconds=1.0, times=10)  # each job listing hangs 1 s, then drops
    gh = client(github_api)
    gh.seconds = 1.5
    demand = find_demand(config(github_api.url), gh, 0)
    assert not demand.complete
    assert gh.spent <= 5  # stopped at the time budget, not after every run's listing


def test_a_dropped_connection_still_leaves_the_floor_kept(github_api: Any) -> None:
    github_api.inject(r"/actions/runners$", kind="reset")
    groups = FakeGroups({"codex": 0}, floors={"codex": 2})
    (plan,) = reconcile(config(github_api.url), client(github_api), groups, NOW)
    assert (plan.target, plan.added) == (2, 2)


def test_an_unreadable_credential_still_leaves_the_floor_kept(github_api: Any) -> None:
    from scaler.decision import ScaleError

    def unreadable() -> str:
        raise ScaleError("access projects/p/secrets/c/versions/latest: HTTP 403 PERMISSION_DENIED")

    groups = FakeGroups({"codex": 0}, floors={"codex": 1})
    (plan,) = reconcile(config(github_api.url), GitHub(github_api.url, unreadable, 10), groups, NOW)
    assert (plan.target, plan.added) == (1, 1)
