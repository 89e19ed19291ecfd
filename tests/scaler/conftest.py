"""Fixtures for the webhook receiver as a real process on loopback.

Doubles start once per session and are reset for each test; a test fails if
one of them recorded a contract violation. Fixtures:

``aws_front``   ScalingFront -- moto_server behind the SigV4 front, with AWS's capacity rules
``gcp``         Gcp -- metadata server, Secret Manager and the MIG double, one shared GcpState
``github_api``  ActionsDouble -- the REST operations of the reconcile
``start_receiver``  factory: ``python -m scaler serve`` for a configuration document
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for path in (HERE.parent / "bootstrap", HERE):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from doubles.aws import MotoServer  # noqa: E402
from doubles.gcp import GcpState, MetadataDouble, Secret, SecretManagerDouble  # noqa: E402
from doubles.schema import load_gcp  # noqa: E402
from receiver_doubles.aws import ScalingFront  # noqa: E402
from receiver_doubles.gcp import GroupsDouble  # noqa: E402
from receiver_doubles.github import ActionsDouble  # noqa: E402
from receiver_doubles.stack import PAT, RECEIVER_KEY  # noqa: E402


def _no_violations(name: str, violations: list[str]) -> None:
    if violations:
        pytest.fail(f"{name} double recorded contract violations:\n  " + "\n  ".join(violations), pytrace=False)


@dataclass
class Gcp:
    state: GcpState
    metadata: MetadataDouble
    secrets: SecretManagerDouble
    compute: GroupsDouble

    @property
    def servers(self) -> tuple[Any, ...]:
        return (self.metadata, self.secrets, self.compute)

    def reset(self) -> None:
        for server in self.servers:
            server.reset()
        self.state.__dict__.update(GcpState().__dict__)

    def add_secret(self, name: str, value: bytes) -> str:
        self.state.secrets[(self.state.project_id, name)] = Secret([value], {self.state.service_account})
        return f"projects/{self.state.project_id}/secrets/{name}/versions/latest"

    @property
    def violations(self) -> list[str]:
        return [v for server in self.servers for v in server.violations]


@pytest.fixture(scope="session")
def _moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    server.warm()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _aws_front(_moto: MotoServer) -> Iterator[ScalingFront]:
    front = ScalingFront(_moto)
    front.start()
    yield front
    front.stop()


@pytest.fixture
def aws_front(_aws_front: ScalingFront, _moto: MotoServer) -> Iterator[ScalingFront]:
    _moto.reset()
    _aws_front.reset()
    _aws_front.trust(*RECEIVER_KEY)
    yield _aws_front
    _no_violations("aws", _aws_front.violations)


@pytest.fixture(scope="session")
def _gcp() -> Iterator[Gcp]:
    state = GcpState()
    gcp = Gcp(state, MetadataDouble(state), SecretManagerDouble(state, load_gcp()["secretmanager.v1"]),
              GroupsDouble(state))
    for server in gcp.servers:
        server.start()
    yield gcp
    for server in gcp.servers:
        server.stop()


@pytest.fixture
def gcp(_gcp: Gcp) -> Iterator[Gcp]:
    _gcp.reset()
    yield _gcp
    _no_violations("gcp", _gcp.violations)


@pytest.fixture(scope="session")
def _github_api() -> Iterator[ActionsDouble]:
    server = ActionsDouble()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def github_api(_github_api: ActionsDouble) -> Iterator[ActionsDouble]:
    _github_api.reset()
    _github_api.tokens.add(PAT)
    yield _github_api
    _no_violations("github", _github_api.violations)


# --- the receiver process ----------------------------------------------------------------


class ReceiverProcess:
    """`python -m scaler serve`, started at once; `url` waits until it listens."""

    def __init__(self, proc: subprocess.Popen[str], config_path: Path, log_path: Path) -> None:
        self.proc, self.config_path, self.log_path = proc, config_path, log_path
        self._url = ""

    @property
    def url(self) -> str:
        if not self._url:
            assert self.proc.stdout is not None
            line = self.proc.stdout.readline()  # blocks until it listens (or exits)
            match = re.search(r"serving on (http://127\.0\.0\.1:\d+)", line)
            if match is None:
                self.stop()
                pytest.fail(f"receiver did not start: {line!r} {self.log_path.read_text()}")
            self._url = match.group(1)
        return self._url

    def log(self) -> list[dict[str, Any]]:
        """What it logged so far: one JSON object per line."""
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def receiver_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "GOOGLE_", "GH_"))}
    env.update({
        "AWS_ACCESS_KEY_ID": RECEIVER_KEY[0], "AWS_SECRET_ACCESS_KEY": RECEIVER_KEY[1],
        "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
    })
    return env


@pytest.fixture
def start_receiver(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], ReceiverProcess]]:
    started: list[ReceiverProcess] = []

    def start(document: dict[str, Any]) -> ReceiverProcess:
        path = tmp_path / f"scaler-{len(started)}.json"
        log_path = tmp_path / f"scaler-{len(started)}.log"
        path.write_text(json.dumps(document))
        with log_path.open("w") as log:  # a file, not a pipe: a long burst must never block on it
            proc = subprocess.Popen([sys.executable, "-m", "scaler", "serve", "--port", "0", "--config", str(path)],
                                    cwd=ROOT, env=receiver_env(), stdout=subprocess.PIPE, stderr=log, text=True)
        process = ReceiverProcess(proc, path, log_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
