"""Fixtures for testing the VM agent against loopback doubles, as real processes.

Servers start once per session; each test gets them reset (state, request log,
faults) and fails if a double recorded a contract violation. Fixtures:

``github``          GitHubDouble — REST API + runner release + runner service
``runner_release``  fake runner tarball published on ``github`` (+ its record file)
``shared_tmp``      session directory under /tmp that the runner user can write
``gcp``             GcpDoubles — metadata server, Secret Manager, Compute
``imds``            ImdsDouble — EC2 IMDSv2
``aws``             AwsEnv — moto_server + SigV4-checking front + ``imds`` wired to moto STS
``refused_url``     a loopback URL nothing listens on (connection refused)
"""

from __future__ import annotations

import shutil
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

# Import the doubles as a top-level package whatever pytest's import mode or
# whichever __init__.py files exist above this directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from doubles.aws import AwsEnv, AwsFront, MotoServer
from doubles.gcp import GcpDoubles
from doubles.github import GitHubDouble
from doubles.imds import ImdsDouble
from doubles.runner_tarball import DEFAULT_VERSION, RunnerRelease, build_runner_tarball


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


class _MotoBoot:
    """moto_server started and warmed in the background as soon as collection shows
    a test wants ``aws``: its lazy backend loading then overlaps other tests."""

    def __init__(self) -> None:
        self.server: MotoServer | None = None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def begin(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="moto-boot", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        try:
            self.server = MotoServer().start()
            self.server.warm()
        except BaseException as exc:  # reported by the fixture, in the test that needs it
            self.error = exc

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.join(60)
        if self.server is not None:
            self.server.stop()

    def get(self) -> MotoServer:
        self.begin()
        assert self.thread is not None
        self.thread.join(60)
        if self.error is not None or self.server is None:
            raise RuntimeError("moto_server failed to start") from self.error
        return self.server


_moto_boot = _MotoBoot()


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Also when no test ended up using it (-x, interrupted runs): no orphan moto_server.
    _moto_boot.stop()


def pytest_collection_finish(session: pytest.Session) -> None:
    # After -k/-m deselection: only boot moto if a selected test needs it.
    if any("aws" in getattr(item, "fixturenames", ()) for item in session.items):
        _moto_boot.begin()


@pytest.fixture(scope="session")
def aws_session(imds_server: ImdsDouble) -> Iterator[AwsEnv]:
    moto = _moto_boot.get()
    front = AwsFront(moto, imds_server).start()
    env = AwsEnv(moto, front, imds_server)
    yield env
    front.stop()  # moto itself is stopped by pytest_sessionfinish


# -- per-test views -----------------------------------------------------------------


@pytest.fixture
def github(github_server: GitHubDouble) -> Iterator[GitHubDouble]:
    """Reset GitHub double. Configure: ``github.org("acme")`` / ``repo("o/r")`` /
    ``enterprise("e")``, ``add_pat()``, ``add_app(id).install(inst_id, "acme")``,
    ``api_prefix = "/api/v3"`` for GHES; faults: ``inject(...)``, ``rate_limit(...)``."""
    github_server.reset()
    yield github_server
    _no_violations("github", list(github_server.violations))


@pytest.fixture(scope="session")
def shared_tmp() -> Iterator[Path]:
    """A session directory under /tmp that any user may create files in (mode 1777).

    pytest's ``tmp_path`` lives below directories only root may enter, so the fake
    runner, which the agent starts as the unprivileged runner user, could not
    record there.
    """
    root = Path(tempfile.mkdtemp(prefix="ghr-tests-", dir="/tmp"))
    root.chmod(0o1777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def runner_release(github: GitHubDouble, shared_tmp: Path, tmp_path: Path) -> RunnerRelease:
    """Release ``v2.330.0`` of a fake runner (linux-x64 and linux-arm64) on ``github``.

    The tarball's scripts talk to ``github``'s runner service and append their
    records to ``runner_release.record``, a file in a fresh world-writable
    directory (the runner may run as any user). Re-publish with other options via
    ``github.add_runner_release(...)`` (digest location, corruption).
    """
    records = Path(tempfile.mkdtemp(prefix="record-", dir=shared_tmp))
    records.chmod(0o1777)
    record = records / "runner-calls.jsonl"
    ldcache = records / "ld.so.cache.txt"
    dist = tmp_path / "dist"
    dist.mkdir()
    x64 = build_runner_tarball(dist, DEFAULT_VERSION, "x64", control_url=github.url, record=record, ldcache=ldcache)
    arm = build_runner_tarball(dist, DEFAULT_VERSION, "arm64", control_url=github.url, record=record, ldcache=ldcache)
    published = github.add_runner_release(DEFAULT_VERSION, {"linux-x64": x64, "linux-arm64": arm})
    return RunnerRelease(DEFAULT_VERSION, x64, published[x64.name], record, ldcache)


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
