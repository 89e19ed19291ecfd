"""The runner tarball: verified against the release's published sha256 before anything is extracted."""

from __future__ import annotations

import pytest
from doubles.github import GitHubDouble
from doubles.runner_tarball import DEFAULT_VERSION, RunnerRelease
from test_agent_harness import RUNNER_USER, Vm, vm_factory_fixture  # noqa: F401 - fixture

LABELS = ["self-hosted", "e2e"]


def test_checksum_mismatch_is_refused_before_extraction(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("aws")
    vm.republish_runner(corrupt=True)
    agent = vm.run()
    assert agent.proc.returncode == 1
    errors = [line for line in agent.output.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and "does not match the published" in errors[0] and "refusing" in errors[0]
    assert not (vm.runner_dir / "run.sh").exists()  # nothing was extracted
    assert github.find_runner(vm.runner_name) is None  # nor registered
    assert [p.name for p in vm.root.glob(".runner-*")] == []  # the download was not left behind


@pytest.mark.parametrize("digest_in", ["asset", "body"])
def test_either_published_digest_is_accepted(vm_factory, github: GitHubDouble, digest_in: str) -> None:
    vm: Vm = vm_factory("gcp")
    release = vm.republish_runner(digest_in=digest_in)
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert f"sha256 {release.sha256} verified" in agent.output


def test_a_release_without_a_digest_is_refused(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("gcp")
    vm.republish_runner(digest_in="none")
    agent = vm.run()
    assert agent.proc.returncode == 1 and "publishes no sha256" in agent.output
    assert not (vm.runner_dir / "run.sh").exists()


def test_a_prebaked_runner_of_the_pinned_version_skips_lookup_and_download(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("aws", runner_version=DEFAULT_VERSION)
    vm.prebake_runner()  # a lookup or download attempt would now fail
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert "already installed" in agent.output
    assert not github.requests(path=r"/releases/")


def test_latest_is_looked_up_and_a_prebaked_latest_is_not_downloaded_again(vm_factory, github: GitHubDouble,
                                                                          runner_release: RunnerRelease) -> None:
    vm: Vm = vm_factory("gcp")  # runner_version defaults to "latest"
    assert vm.config["runner"] == {"version": "latest", "arch": "x64"}
    github.queue_job(LABELS, duration=0)
    first = vm.run()
    assert first.proc.returncode == 0, first.output
    assert [r.path for r in github.requests(path=r"^/repos/")] == ["/repos/actions/runner/releases/latest"]
    assert len(github.requests(path=r"/releases/download/")) == 1
    assert f"installed runner {runner_release.version}" in first.output
    # The same VM boots again (a persistent pool would): the release is asked for, not downloaded.
    github.log.clear()
    github.queue_job(LABELS, duration=0)
    second = vm.run()
    assert second.proc.returncode == 0, second.output
    assert "already installed" in second.output
    assert not github.requests(path=r"/releases/download/")
