"""What keeps the credential away from job code: the metadata block, and no secret in logs, files, argv, env."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from doubles.github import GitHubDouble
from test_agent_harness import RUNNER_USER, Vm, vm_factory_fixture  # noqa: F401 - fixture

from bootstrap.agent import firewall
from bootstrap.agent.log import redact

LABELS = ["self-hosted", "e2e"]
METADATA = "169.254.169.254"
METADATA6 = ("fd00:ec2::254", "fd20:ce::254")  # AWS IMDS, GCE metadata server over IPv6
IPTABLES = shutil.which("iptables", path="/usr/sbin:/sbin") or "iptables"  # the real one, not the harness's fake
IP6TABLES = shutil.which("ip6tables", path="/usr/sbin:/sbin") or "ip6tables"
LISTENER = f"""
import selectors, socket
sel = selectors.DefaultSelector()
for family, address in [(socket.AF_INET, "{METADATA}"), *((socket.AF_INET6, a) for a in {METADATA6!r})]:
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((address, 80))
    s.listen(8)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        key.fileobj.accept()[0].close()
"""
PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 80), timeout=5).close()
except OSError as error:
    sys.exit(type(error).__name__)
print("connected")
"""


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace whose loopback carries the metadata address, with a TCP listener on it (as root)."""
    name = f"ghr-{uuid.uuid4().hex[:8]}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    listener = None
    try:
        assert _ip("-n", name, "link", "set", "lo", "up").returncode == 0
        assert _ip("-n", name, "addr", "add", f"{METADATA}/32", "dev", "lo").returncode == 0
        for address in METADATA6:
            assert _ip("-n", name, "addr", "add", f"{address}/128", "dev", "lo", "nodad").returncode == 0
        listener = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", LISTENER],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield name
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
        _ip("netns", "del", name)


def probe(ns: str, uid: int | None = None, address: str = METADATA) -> str:
    """Connect to a metadata address inside `ns`, as root or as `uid`."""
    argv = ["ip", "netns", "exec", ns]
    if uid is not None:
        argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    # The system's python3, as the fake runner uses: this test's interpreter may live where only root can
    # read (a pyenv under /root), and the probe runs as the runner's uid.
    python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    done = subprocess.run([*argv, python, "-I", "-c", PROBE, address], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[-1]


@pytest.mark.netns
def test_the_runner_uid_is_cut_off_from_the_metadata_endpoint(vm_factory, github: GitHubDouble, netns: str) -> None:
    nobody = pwd.getpwnam(RUNNER_USER).pw_uid
    assert probe(netns, nobody) == "connected"  # before the agent: open
    assert all(probe(netns, nobody, address) == "connected" for address in METADATA6)
    vm: Vm = vm_factory("aws", docker=True)
    github.queue_job(LABELS, duration=0)
    agent = vm.run(GH_RUNNERS_IPTABLES=f"ip netns exec {netns} {IPTABLES} -w",
                   GH_RUNNERS_IP6TABLES=f"ip netns exec {netns} {IP6TABLES} -w")
    assert agent.proc.returncode == 0, agent.output
    rules = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-S"], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    assert f"-A OUTPUT -d {METADATA}/32 -p tcp -m tcp ! --dport 53 -m owner --uid-owner {nobody} -j REJECT " \
           "--reject-with icmp-port-unreachable" in rules
    assert "-N DOCKER-USER" in rules  # created ahead of Docker, which keeps it
    # TCP except DNS: on GCE the metadata address is also the resolver containers use.
    assert f"-A DOCKER-USER -d {METADATA}/32 -p tcp -m tcp ! --dport 53 -j REJECT " \
           "--reject-with icmp-port-unreachable" in rules
    assert probe(netns, nobody) == "ConnectionRefusedError"  # the runner user: refused
    assert probe(netns) == "connected"  # root (the agent re-reading the credential): still fine
    # IPv6, the second layer: AWS's and GCE's metadata addresses refused too, root still through.
    rules6 = subprocess.run(["ip", "netns", "exec", netns, "ip6tables", "-S"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    for address in METADATA6:
        assert f"-A OUTPUT -d {address}/128 -p tcp -m tcp ! --dport 53 -m owner --uid-owner {nobody} -j REJECT " \
               "--reject-with icmp6-port-unreachable" in rules6
        assert probe(netns, nobody, address) == "ConnectionRefusedError"
        assert probe(netns, None, address) == "connected"


@pytest.mark.netns
def test_the_metadata_block_is_idempotent(netns: str) -> None:
    cfg = SimpleNamespace(iptables=["ip", "netns", "exec", netns, "iptables", "-w"],
                          ip6tables=["ip", "netns", "exec", netns, "ip6tables", "-w"], docker=True)
    for _ in range(2):  # an agent restart must not stack rules
        firewall.block_metadata(cfg, 4242)  # type: ignore[arg-type]
    rules = subprocess.run(["ip", "netns", "exec", netns, "iptables", "-S"], capture_output=True, text=True,
                           check=True).stdout
    assert rules.count("--uid-owner 4242") == 1 and rules.count("-A DOCKER-USER") == 1
    rules6 = subprocess.run(["ip", "netns", "exec", netns, "ip6tables", "-S"], capture_output=True, text=True,
                            check=True).stdout
    assert rules6.count("--uid-owner 4242") == 2


@pytest.mark.parametrize("cloud", ["aws", "gcp"])
def test_the_credential_reaches_no_log_file_argv_or_environment(vm_factory, github: GitHubDouble,
                                                                cloud: str) -> None:
    vm: Vm = vm_factory(cloud, "organization", kind="app")
    hold = vm.root / "hold"
    os.mkfifo(hold)
    hold.chmod(0o666)
    github.queue_job(LABELS, duration=0, command=f"env; read -r _ < {hold}")
    agent = vm.start()
    with open(hold, "w") as release:  # opens once the job is reading: the job is running now
        vm.assert_no_leaks_in_processes(agent)  # the agent, run.sh, the listener, the job: no credential
        release.write("done\n")
    assert agent.wait() == 0, agent.output
    assert github.installation_tokens, "the App path was not taken"
    vm.assert_no_leaks()  # logs, every file under the VM root, the runner's record (incl. the job's output), argv
    argv = "\n".join(vm.argv())
    assert "openssl dgst -sha256 -sign /dev/fd/" in argv  # the App key went through a pipe
    if cloud == "aws":
        assert " -K - " in argv  # the instance-role keys went to curl on stdin
    job_env = vm.records("command")[0]["stdout"]
    assert "ACTIONS_RUNNER_INPUT" not in job_env and "GH_RUNNERS" not in job_env


def test_a_failing_setup_script_stops_the_boot_with_one_clear_line(vm_factory, tmp_path: Path) -> None:
    vm: Vm = vm_factory("gcp", setup_script="echo preparing\nexit 3\n")
    script = vm.root / "setup.sh"
    script.write_text("#!/bin/sh\necho preparing\nexit 3\n")
    script.chmod(0o700)
    agent = vm.run(GH_RUNNERS_SETUP_SCRIPT=str(script))
    assert agent.proc.returncode == 1
    errors = [line for line in agent.output.splitlines() if line.startswith("ERROR")]
    assert errors == [f"ERROR the pool's setup script {script} failed with exit code 3"]
    assert "preparing" in agent.output  # the script's own output goes to the journal too


def test_redaction_catches_secret_shapes_and_leaves_facts_readable() -> None:
    secrets = [
        "ghp_" + "A1b2" * 9,
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
        "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiI0MiJ9.c2lnbmF0dXJl",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "ya29.a0AfB_byC-example-token",
        "eyJydW5uZXIiOiB7ImlkIjogMTB9LCAiZW5jb2RlZF9qaXRfY29uZmlnIjogIk1ZVE9LRU4ifQ==",
    ]
    for secret in secrets:
        assert secret not in redact(f"oops: {secret} leaked")
    facts = [
        "GitHub POST /orgs/acme/actions/runners/generate-jitconfig: HTTP 503 Server Error",
        "sha256 2e4232647127dc9b4ac70d77b76e101cd490f7cca24ceba4843cb1f9a6605c22 verified",
        "runner pool-i-0123456789abcdef0 started (pid 42)",
        "download actions-runner-linux-x64-2.330.0.tar.gz: HTTP 404",
    ]
    for fact in facts:
        assert redact(fact) == fact


def test_the_log_filter_redacts_formatted_arguments_and_tracebacks() -> None:
    code = (
        "from bootstrap.agent.log import setup\n"
        "log = setup()\n"
        "log.info('token %s', 'ghp_' + 'x' * 36)\n"
        "try:\n    raise ValueError('ghs_' + 'y' * 36)\nexcept ValueError:\n    log.exception('failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[2], env={**os.environ, "PYTHONPATH": "."})
    # The tokens themselves, not their prefixes: Python 3.13 prints the -c source line in the traceback.
    assert "ghp_" + "x" * 36 not in done.stdout and "ghs_" + "y" * 36 not in done.stdout
    assert done.stdout.count("[REDACTED]") == 2
