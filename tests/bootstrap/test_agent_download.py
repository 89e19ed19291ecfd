"""The runner tarball: verified against the release's published sha256 before anything is extracted."""

from __future__ import annotations

import pytest
from doubles.github import GitHubDouble
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


def test_a_prebaked_runner_of_the_right_version_skips_the_download(vm_factory, github: GitHubDouble) -> None:
    vm: Vm = vm_factory("aws")
    vm.prebake_runner()  # a download attempt would now fail
    github.queue_job(LABELS, duration=0)
    agent = vm.run()
    assert agent.proc.returncode == 0, agent.output
    assert "already installed" in agent.output
    assert not github.requests(path=r"/releases/")
