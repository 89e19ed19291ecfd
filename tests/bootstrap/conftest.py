"""Fixtures for testing the VM agent against loopback doubles, as real processes.

Servers start once per session; each test gets them reset (state, request log,
faults) and fails if a double recorded a contract violation. Fixtures:

``github``          GitHubDouble — REST API + runner release + runner service
``runner_release``  fake runner tarball published on ``github`` (+ its record file)
``gcp``             GcpDoubles — metadata server, Secret Manager, Compute
``imds``            ImdsDouble — EC2 IMDSv2
``aws``             AwsEnv — moto_server + SigV4-checking front + ``imds`` wired to moto STS
``refused_url``     a loopback URL nothing listens on (connection refused)
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Import the doubles as a top-level package whatever pytest's import mode or
# whichever __init__.py files exist above this directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from doubles.aws import AwsEnv, AwsFront, MotoServer  # noqa: E402
from doubles.gcp import GcpDoubles  # noqa: E402
from doubles.github import GitHubDouble  # noqa: E402
from doubles.imds import ImdsDouble  # noqa: E402
from doubles.runner_tarball import DEFAULT_VERSION, build_runner_tarball, read_records  # noqa: E402


def _no_violations(name: str, violations: list[str]) -> None:
    if violations:
        pytest.fail(f"{name} double recorded contract violations:\n  " + "\n  ".join(violations), pytrace=False)


# -- session servers ----------------------------------------------------------------


@pytest.fixture(scope="session")
def github_server() -> Iterator[GitHubDouble]:
    server = GitHubDouble().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gcp_servers() -> Iterator[GcpDoubles]:
    servers = GcpDoubles().start()
    yield servers
    servers.stop()


@pytest.fixture(scope="session")
def imds_server() -> Iterator[ImdsDouble]:
    server = ImdsDouble().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def aws_session(imds_server: ImdsDouble) -> Iterator[AwsEnv]:
    moto = MotoServer().start()
    front = AwsFront(moto, imds_server).start()
    env = AwsEnv(moto, front, imds_server)
    yield env
    front.stop()
    moto.stop()


# -- per-test views -----------------------------------------------------------------


@pytest.fixture
def github(github_server: GitHubDouble) -> Iterator[GitHubDouble]:
    """Reset GitHub double. Configure: ``github.org("acme")`` / ``repo("o/r")`` /
    ``enterprise("e")``, ``add_pat()``, ``add_app(id).install(inst_id, "acme")``,
    ``api_prefix = "/api/v3"`` for GHES; faults: ``inject(...)``, ``rate_limit(...)``."""
    github_server.reset()
    yield github_server
    _no_violations("github", list(github_server.violations))


@dataclass
class RunnerRelease:
    """The fake runner tarball as published on the GitHub double."""

    version: str
    tarball: Path
    sha256: str
    record: Path  # JSON lines written by the fake runner's scripts

    def records(self, event: str | None = None) -> list[dict[str, Any]]:
        return [r for r in read_records(self.record) if event is None or r["event"] == event]


@pytest.fixture
def runner_release(github: GitHubDouble, tmp_path: Path) -> RunnerRelease:
    """Release ``v2.330.0`` of a fake runner (linux-x64 and linux-arm64) on ``github``.

    The tarball's scripts talk to ``github``'s runner service and append their
    records to ``runner_release.record``. Re-publish with other options via
    ``github.add_runner_release(...)`` (digest location, corruption).
    """
    record = tmp_path / "runner-calls.jsonl"
    dist = tmp_path / "dist"
    dist.mkdir()
    x64 = build_runner_tarball(dist, DEFAULT_VERSION, "x64", control_url=github.url, record=record)
    arm = build_runner_tarball(dist, DEFAULT_VERSION, "arm64", control_url=github.url, record=record)
    published = github.add_runner_release(DEFAULT_VERSION, {"linux-x64": x64, "linux-arm64": arm})
    return RunnerRelease(DEFAULT_VERSION, x64, published[x64.name], record)


@pytest.fixture
def gcp(gcp_servers: GcpDoubles) -> Iterator[GcpDoubles]:
    """Reset GCP doubles. Configure ``gcp.state`` (instance, SA, attributes),
    ``add_secret(name, value)``, ``add_mig(name).add_instance(...)``,
    ``metadata.preempt()``; faults per server: ``gcp.metadata.inject(...)``."""
    gcp_servers.reset()
    yield gcp_servers
    _no_violations("gcp", gcp_servers.violations)


@pytest.fixture
def imds(imds_server: ImdsDouble) -> Iterator[ImdsDouble]:
    """Reset IMDSv2 double (static fake credentials unless ``aws`` is also used)."""
    imds_server.reset()
    yield imds_server
    _no_violations("imds", list(imds_server.violations))


@pytest.fixture
def aws(aws_session: AwsEnv, imds: ImdsDouble) -> Iterator[AwsEnv]:
    """Reset moto + AWS front; IMDS role credentials now come from moto STS.

    Seed with ``put_secure_parameter``, ``create_role``, ``create_asg``, then
    ``become(instance_id)``; drive termination with ``begin_termination``.
    """
    aws_session.moto.reset()
    aws_session.front.reset()
    imds.credentials_provider = aws_session.role_credentials
    yield aws_session
    imds.credentials_provider = None
    _no_violations("aws", list(aws_session.front.violations))


@pytest.fixture
def refused_url() -> str:
    """``http://127.0.0.1:<port>`` with nothing listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
