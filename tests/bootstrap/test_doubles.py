"""The doubles must themselves hold to the contracts they enforce on the agent."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from doubles.aws import AwsEnv
from doubles.gcp import GcpDoubles, crc32c
from doubles.github import GitHubDouble, app_keypair, sign_app_jwt
from doubles.imds import ImdsDouble
from doubles.runner_tarball import RunnerRelease, read_records
from doubles.schema import GITHUB_SUBSET


def call(url: str, method: str = "GET", body: Any = None, headers: dict[str, str] | None = None,
         raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request; returns (status, JSON-or-text body, lower-cased headers)."""
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    headers = {"User-Agent": "doubles-test", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, payload, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as err:
        status, payload, hdrs = err.code, err.read(), err.headers
    try:
        parsed: Any = json.loads(payload) if payload else None
    except ValueError:
        parsed = payload.decode(errors="replace")
    return status, parsed, {k.lower(): v for k, v in hdrs.items()}


def gh(github: GitHubDouble, path: str, method: str = "GET", body: Any = None, token: str | None = None,
       scheme: str = "Bearer") -> tuple[int, Any, dict[str, str]]:
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if token:
        headers["Authorization"] = f"{scheme} {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    return call(github.api_url + path, method, body, headers)


JIT = {"name": "pool-i-0abc", "runner_group_id": 1, "labels": ["self-hosted", "linux", "x64", "pool"]}


def test_the_committed_subset_is_a_valid_openapi_document_with_every_operation() -> None:
    subset = json.loads(GITHUB_SUBSET.read_text())
    assert subset["info"]["x-source"]["package"] == "@octokit/openapi"
    for scope in ("/repos/{owner}/{repo}", "/orgs/{org}", "/enterprises/{enterprise}"):
        runners = subset["paths"][f"{scope}/actions/runners/{{runner_id}}"]
        assert {"get", "delete"} <= runners.keys()
        assert "post" in subset["paths"][f"{scope}/actions/runners/generate-jitconfig"]
    assert "post" in subset["paths"]["/app/installations/{installation_id}/access_tokens"]
    validator = pytest.importorskip("openapi_spec_validator")  # ships with moto[server]
    validator.validate(subset)


# -- GitHub -----------------------------------------------------------------------


def test_served_responses_validate_and_are_logged(github: GitHubDouble) -> None:
    github.org("acme")
    pat = github.add_pat()
    status, body, _ = gh(github, "/orgs/acme/actions/runners/generate-jitconfig", "POST", JIT, pat)
    assert status == 201 and body["runner"]["name"] == JIT["name"] and body["encoded_jit_config"]
    assert gh(github, "/orgs/acme/actions/runner-groups", token=pat)[1]["runner_groups"][0]["name"] == "Default"
    assert gh(github, f"/orgs/acme/actions/runners?name={JIT['name']}", token=pat)[1]["total_count"] == 1
    assert [r.operation for r in github.requests()] == [
        "actions/generate-runner-jitconfig-for-org", "actions/list-self-hosted-runner-groups-for-org",
        "actions/list-self-hosted-runners-for-org"]
    assert github.violations == []


def test_invalid_and_misspelt_request_bodies_are_violations(github: GitHubDouble) -> None:
    github.org("acme")
    pat = github.add_pat()
    with github.expect_violations() as seen:
        status, _, _ = gh(github, "/orgs/acme/actions/runners/generate-jitconfig", "POST", {**JIT, "labels": []}, pat)
        assert status == 422
        typo = {"name": "x", "runner_group": 1, "labels": ["a"]}
        assert gh(github, "/orgs/acme/actions/runners/generate-jitconfig", "POST", typo, pat)[0] == 422
    assert any("labels" in v and "non-empty" in v for v in seen)
    assert any("runner_group_id" in v for v in seen) and any("'runner_group' was unexpected" in v for v in seen)


def test_an_invalid_served_response_is_a_violation(github: GitHubDouble) -> None:
    org = github.org("acme")
    runner = org.add_runner("ghost")
    runner.busy = "yes"  # type: ignore[assignment]  # corrupt state: the double must notice
    with github.expect_violations() as seen:
        gh(github, f"/orgs/acme/actions/runners/{runner.id}", token=github.add_pat())
    assert any("busy" in v and "is not of type 'boolean'" in v for v in seen)


def test_conflict_delete_and_busy_runner(github: GitHubDouble) -> None:
    org = github.org("acme")
    pat = github.add_pat()
    busy = org.add_runner(JIT["name"], busy=True)
    status, body, _ = gh(github, "/orgs/acme/actions/runners/generate-jitconfig", "POST", JIT, pat)
    assert status == 409 and "already exists" in body["message"]
    assert gh(github, f"/orgs/acme/actions/runners/{busy.id}", "DELETE", token=pat)[0] == 422
    org.set_runner(JIT["name"], busy=False, status="offline")
    assert gh(github, f"/orgs/acme/actions/runners/{busy.id}", "DELETE", token=pat)[0] == 204
    assert org.runners == {}


def test_auth_pat_schemes_and_app_installation_flow(github: GitHubDouble) -> None:
    github.org("acme")
    github.repo("acme/app")
    pat = github.add_pat()
    assert gh(github, "/orgs/acme/actions/runners")[0] == 401
    assert gh(github, "/orgs/acme/actions/runners", token="nope")[0] == 401
    assert gh(github, "/orgs/acme/actions/runners", token=pat, scheme="token")[0] == 200

    private, _ = app_keypair()
    github.add_app(42).install(7, "acme")
    too_long = sign_app_jwt(private, 42, exp=int(time.time()) + 3600)
    assert gh(github, "/app/installations/7/access_tokens", "POST", token=too_long)[0] == 401
    other_private = sign_app_jwt(_other_key(), 42)
    assert gh(github, "/app/installations/7/access_tokens", "POST", token=other_private)[0] == 401
    assert github.auth_failures[-2:] == ["'Expiration time' claim ('exp') is too far in the future",
                                    "A JSON web token could not be decoded"]
    status, body, _ = gh(github, "/app/installations/7/access_tokens", "POST",
                         {"permissions": {"organization_self_hosted_runners": "write"}}, sign_app_jwt(private, 42))
    assert status == 201 and body["token"].startswith("ghs_")
    assert gh(github, "/orgs/acme/actions/runners/registration-token", "POST", token=body["token"])[0] == 201
    # Narrowed to org runners: repository administration was not requested.
    assert gh(github, "/repos/acme/app/actions/runners", token=body["token"])[0] == 403
    github.expire_installation_tokens()
    assert gh(github, "/orgs/acme/actions/runners", token=body["token"])[0] == 401


def _other_key() -> str:
    return subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
                          capture_output=True, text=True, check=True).stdout


def test_fault_injection_and_rate_limits(github: GitHubDouble) -> None:
    github.enterprise("ent")
    pat = github.add_pat()
    github.inject(r"/actions/runners$", status=502, times=2)
    github.rate_limit(r"/runner-groups$", kind="secondary", retry_after=3, status=429)
    github.rate_limit(r"/registration-token$", kind="primary", retry_after=60)
    statuses = [gh(github, "/enterprises/ent/actions/runners", token=pat)[0] for _ in range(3)]
    assert statuses == [502, 502, 200]
    status, _, headers = gh(github, "/enterprises/ent/actions/runner-groups", token=pat)
    assert status == 429 and headers["retry-after"] == "3"
    status, _, headers = gh(github, "/enterprises/ent/actions/runners/registration-token", "POST", token=pat)
    assert status == 403 and headers["x-ratelimit-remaining"] == "0" and int(headers["x-ratelimit-reset"]) > time.time()
    github.inject(r"/runners$", kind="reset")
    with pytest.raises((ConnectionError, urllib.error.URLError)):
        gh(github, "/enterprises/ent/actions/runners", token=pat)


def test_pagination_and_ghes_prefix(github: GitHubDouble) -> None:
    github.api_prefix = "/api/v3"
    repo = github.repo("acme/app")
    pat = github.add_pat()
    for i in range(35):
        repo.add_runner(f"r{i}")
    status, body, headers = gh(github, "/repos/acme/app/actions/runners?per_page=30", token=pat)
    assert status == 200 and len(body["runners"]) == 30 and body["total_count"] == 35
    assert 'rel="next"' in headers["link"] and "/api/v3/repos/acme/app/actions/runners?" in headers["link"]
    assert len(gh(github, "/repos/acme/app/actions/runners?per_page=30&page=2", token=pat)[1]["runners"]) == 5
    with github.expect_violations() as seen:
        assert call(github.url + "/repos/acme/app/actions/runners")[0] == 404
    assert seen and "outside the API prefix" in seen[0]


def test_release_metadata_and_verified_download(github: GitHubDouble, runner_release: RunnerRelease) -> None:
    status, rel, _ = gh(github, f"/repos/actions/runner/releases/tags/v{runner_release.version}")
    assert status == 200  # and the response validated against the release schema
    asset = next(a for a in rel["assets"] if a["name"] == runner_release.tarball.name)
    assert asset["digest"] == f"sha256:{runner_release.sha256}"
    assert (f"<!-- BEGIN SHA linux-x64 -->{runner_release.sha256}<!-- END SHA linux-x64 -->") in rel["body"]
    with urllib.request.urlopen(asset["browser_download_url"], timeout=10) as resp:  # follows the 302
        assert hashlib.sha256(resp.read()).hexdigest() == runner_release.sha256
    assert github.requests(path="/_objects/")  # it was a redirect

    github.add_runner_release("2.331.0", {"linux-x64": runner_release.tarball}, digest_in="body", corrupt=True)
    rel = gh(github, "/repos/actions/runner/releases/tags/v2.331.0")[1]
    assert rel["assets"][0]["digest"] is None
    with urllib.request.urlopen(rel["assets"][0]["browser_download_url"], timeout=10) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() != runner_release.sha256


# -- fake runner ------------------------------------------------------------------


def _install(runner_release: RunnerRelease, dest: Path) -> Path:
    with tarfile.open(fileobj=io.BytesIO(runner_release.tarball.read_bytes()), mode="r:gz") as tar:
        # Our own tarball; the "data" filter where this Python has extraction filters (not 3.11.2).
        tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))  # noqa: S202
    return dest


def _env(**extra: str) -> dict[str, str]:
    # The tests run as root in CI containers; the real scripts refuse root without this.
    return {"PATH": os.environ["PATH"], "HOME": "/tmp", "RUNNER_ALLOW_RUNASROOT": "1", **extra}


def test_fake_runner_jit_config_from_env_runs_one_job(github: GitHubDouble, runner_release: RunnerRelease,
                                                      tmp_path: Path) -> None:
    github.org("acme")
    body = gh(github, "/orgs/acme/actions/runners/generate-jitconfig", "POST", JIT, github.add_pat())[1]
    job = github.queue_job(["self-hosted", "pool"], duration=0.05)
    root = _install(runner_release, tmp_path / "runner")
    done = subprocess.run([str(root / "run.sh")], env=_env(ACTIONS_RUNNER_INPUT_JITCONFIG=body["encoded_jit_config"]),
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Job build completed with result: Succeeded" in done.stdout
    assert job.state == "completed" and github.find_runner(JIT["name"]) is None  # ephemeral: removed after its job
    invoke = runner_release.records("invoke")[0]
    assert invoke["argv"] == ["run"] and invoke["inputs"] == {"jitconfig": "env"}
    assert "ACTIONS_RUNNER_INPUT_JITCONFIG" not in invoke["env_names"]  # scrubbed, like the real runner
    assert [r["event"] for r in runner_release.records()] == ["invoke", "connected", "job_started",
                                                                "job_completed", "exit"]


def test_fake_runner_leaves_when_its_job_ends_before_it_asks(github: GitHubDouble, runner_release: RunnerRelease,
                                                            tmp_path: Path) -> None:
    github.org("acme")
    body = gh(github, "/orgs/acme/actions/runners/generate-jitconfig", "POST", JIT, github.add_pat())[1]
    hold = tmp_path / "hold"
    os.mkfifo(hold)
    job = github.queue_job(["self-hosted", "pool"], duration=None, command=f"read -r _ < {hold}")
    root = _install(runner_release, tmp_path / "runner")
    proc = subprocess.Popen([str(root / "run.sh")], env=_env(ACTIONS_RUNNER_INPUT_JITCONFIG=body["encoded_jit_config"]),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        with open(hold, "w") as release:  # opens once the job's command is reading: the job is running
            job.finish()  # GitHub completes it and removes the ephemeral runner before the runner polls the job
            release.write("done\n")
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:  # a runner that did not leave: end its process group (run.sh, listener, job)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, out  # the listener's TerminatedError, which run-helper.sh maps to 0
    assert "Runner registration has been deleted from the server" in out
    assert [r["event"] for r in runner_release.records()] == ["invoke", "connected", "job_started", "command",
                                                                "error", "exit"]
    assert runner_release.records("exit")[0]["code"] == 1


def test_fake_runner_persistent_config_signal_and_remove(github: GitHubDouble, runner_release: RunnerRelease,
                                                         tmp_path: Path) -> None:
    org = github.org("acme")
    org.add_group("linux-pool")
    pat = github.add_pat()
    token = gh(github, "/orgs/acme/actions/runners/registration-token", "POST", token=pat)[1]["token"]
    root = _install(runner_release, tmp_path / "runner")
    config = [str(root / "config.sh"), "--unattended", "--url", f"https://github.com/{org.path}", "--name", "p-1",
              "--labels", "pool,gpu", "--runnergroup", "linux-pool", "--bogus"]
    refused = subprocess.run(config, env=_env(ACTIONS_RUNNER_INPUT_TOKEN=token), capture_output=True, text=True)
    assert "Unrecognized command-line input arguments: 'bogus'" in refused.stdout
    done = subprocess.run(config[:-1], env=_env(ACTIONS_RUNNER_INPUT_TOKEN=token), capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
    assert (root / ".runner").read_bytes().startswith(b"\xef\xbb\xbf")  # BOM, like the real file
    runner = org.runner("p-1")
    assert runner is not None and runner.labels == ["self-hosted", "Linux", "X64", "pool", "gpu"]

    job = github.queue_job(["pool", "gpu"], duration=None)  # held until finished or interrupted
    proc = subprocess.Popen([str(root / "run.sh")], env=_env(RUNNER_MANUALLY_TRAP_SIG="1"), stdout=subprocess.PIPE,
                            text=True)
    job.wait_started()
    assert runner.busy and runner.status == "online"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert job.result == "cancelled" and runner.status == "offline" and not runner.busy
    assert runner_release.records("signal")[0]["busy"] is True

    remove_token = gh(github, "/orgs/acme/actions/runners/remove-token", "POST", token=pat)[1]["token"]
    done = subprocess.run([str(root / "config.sh"), "remove", "--token", remove_token], env=_env(),
                          capture_output=True, text=True)
    assert done.returncode == 0 and org.runners == {} and not (root / ".runner").exists()
    assert read_records(runner_release.record)[-1]["event"] == "exit"


@pytest.mark.skipif(os.geteuid() != 0, reason="root check only observable as root")
def test_fake_runner_refuses_root_like_the_real_one(runner_release: RunnerRelease, tmp_path: Path) -> None:
    root = _install(runner_release, tmp_path / "runner")
    done = subprocess.run([str(root / "config.sh"), "--unattended"], env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Must not run with sudo" in done.stdout


# -- GCP ----------------------------------------------------------------------------


def md(gcp: GcpDoubles, path: str, **headers: str) -> tuple[int, Any, dict[str, str]]:
    return call(f"{gcp.metadata.url}/computeMetadata/v1/{path}", headers=headers)


def test_metadata_requires_flavor_header_and_issues_tokens(gcp: GcpDoubles) -> None:
    assert md(gcp, "instance/id")[0] == 403
    assert md(gcp, "instance/id", **{"Metadata-Flavor": "Google", "X-Forwarded-For": "1.2.3.4"})[0] == 403
    status, body, headers = md(gcp, "instance/zone", **{"Metadata-Flavor": "Google"})
    assert status == 200 and body == f"projects/{gcp.state.project_number}/zones/us-central1-a"
    assert headers["metadata-flavor"] == "Google"
    token = md(gcp, "instance/service-accounts/default/token", **{"Metadata-Flavor": "Google"})[1]
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0


def test_metadata_wait_for_change_wakes_on_preemption(gcp: GcpDoubles) -> None:
    status, body, headers = md(gcp, "instance/preempted", **{"Metadata-Flavor": "Google"})
    assert (status, body) == (200, "FALSE")

    def preempt_while_waiting() -> None:  # the long-poll is open (logged, not answered): now preempt
        gcp.metadata.wait_for(lambda: any("wait_for_change" in str(r.query) and r.status is None
                                          for r in gcp.metadata.log), 5, "the wait_for_change request")
        gcp.metadata.preempt()

    waker = threading.Thread(target=preempt_while_waiting)
    waker.start()
    status, body, _ = md(gcp, f"instance/preempted?wait_for_change=true&last_etag={headers['etag']}&timeout_sec=5",
                         **{"Metadata-Flavor": "Google"})
    waker.join()
    assert (status, body) == (200, "TRUE")  # a timeout would have answered the unchanged FALSE


def test_secret_manager_requires_the_metadata_token(gcp: GcpDoubles) -> None:
    gcp.add_secret("gh-token", "ghp_secret")
    url = f"{gcp.secretmanager.url}/v1/projects/{gcp.state.project_id}/secrets/gh-token/versions/latest:access"
    assert call(url)[0] == 401
    assert call(url, headers={"Authorization": "Bearer ya29.forged"})[0] == 401
    token = md(gcp, "instance/service-accounts/default/token", **{"Metadata-Flavor": "Google"})[1]["access_token"]
    status, body, _ = call(url, headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and body["payload"]["dataCrc32c"] == str(crc32c(b"ghp_secret"))
    assert body["name"] == f"projects/{gcp.state.project_number}/secrets/gh-token/versions/1"
    gcp.add_secret("other", "x", accessors={"someone@else.iam.gserviceaccount.com"})
    assert call(url.replace("gh-token", "other"), headers={"Authorization": f"Bearer {token}"})[0] == 403
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_compute_listing_validates_and_flags_unknown_query(gcp: GcpDoubles) -> None:
    mig = gcp.add_mig("pool-x64")
    mig.add_instance("pool-x64-abcd")
    mig.add_instance("pool-x64-efgh", status="STOPPING", action="DELETING")
    token = md(gcp, "instance/service-accounts/default/token", **{"Metadata-Flavor": "Google"})[1]["access_token"]
    url = (f"{gcp.compute.url}/compute/v1/projects/{gcp.state.project_id}/regions/us-central1/"
           f"instanceGroupManagers/pool-x64/listManagedInstances")
    status, body, _ = call(url, "POST", headers={"Authorization": f"Bearer {token}"}, raw=b"")
    assert status == 200 and [m["instanceStatus"] for m in body["managedInstances"]] == ["RUNNING", "STOPPING"]
    assert body["managedInstances"][0]["instance"].endswith("/zones/us-central1-a/instances/pool-x64-abcd")
    with gcp.compute.expect_violations() as seen:
        call(url + "?max_results=1", "POST", headers={"Authorization": f"Bearer {token}"}, raw=b"")
    assert len(seen) == 1 and "unknown query parameter 'max_results'" in seen[0]
    gcp.compute.inject("listManagedInstances", status=503)
    assert call(url, "POST", headers={"Authorization": f"Bearer {token}"}, raw=b"")[0] == 503


# -- AWS ----------------------------------------------------------------------------


def imds_get(imds: ImdsDouble, path: str, token: str | None = None) -> tuple[int, Any, dict[str, str]]:
    return call(f"{imds.url}/latest/{path}", headers={"X-aws-ec2-metadata-token": token} if token else {})


def imds_token(imds: ImdsDouble, ttl: str = "60", **headers: str) -> tuple[int, Any, dict[str, str]]:
    return call(f"{imds.url}/latest/api/token", "PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": ttl,
                                                                **headers}, raw=b"")


def test_imdsv2_refuses_requests_without_a_token(imds: ImdsDouble) -> None:
    assert imds_get(imds, "meta-data/instance-id")[0] == 401
    assert imds_get(imds, "meta-data/instance-id", "forged")[0] == 401
    assert call(f"{imds.url}/latest/api/token", "PUT", raw=b"")[0] == 400  # no TTL header
    assert imds_token(imds, "0")[0] == 400
    assert imds_token(imds, **{"X-Forwarded-For": "10.0.0.1"})[0] == 403
    token = imds_token(imds)[1]
    assert imds_get(imds, "meta-data/instance-id", token)[1] == imds.instance.instance_id
    assert imds_get(imds, "meta-data/autoscaling/target-lifecycle-state", token)[1] == "InService"
    assert imds_get(imds, "meta-data/spot/instance-action", token)[0] == 404
    imds.interrupt_spot()
    assert imds_get(imds, "meta-data/spot/instance-action", token)[1]["action"] == "terminate"


QUERY_CALLS = [  # (service, operation, params): lists, nested and flattened structures, maps, scalars
    ("ec2", "DescribeInstances", {"Filters": [{"Name": "tag:aws:autoscaling:groupName", "Values": ["pool-asg"]},
                                              {"Name": "instance-state-name", "Values": ["pending", "running"]}],
                                  "MaxResults": 1000, "InstanceIds": ["i-1"], "DryRun": False}),
    ("ec2", "CreateLaunchTemplate", {"LaunchTemplateName": "lt", "LaunchTemplateData": {
        "ImageId": "ami-1", "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": [{"Key": "k", "Value": "v"}]}]}}),
    ("autoscaling", "DescribeAutoScalingGroups", {"AutoScalingGroupNames": ["a", "b"], "MaxRecords": 5,
                                                  "Filters": [{"Name": "tag:pool", "Values": ["x"]}]}),
    ("autoscaling", "DescribeAutoScalingGroups", {"AutoScalingGroupNames": []}),
    ("autoscaling", "CompleteLifecycleAction", {"AutoScalingGroupName": "a", "LifecycleHookName": "drain",
                                                "InstanceId": "i-1", "LifecycleActionResult": "CONTINUE"}),
    ("sns", "Publish", {"Message": "m", "MessageAttributes": {"k": {"DataType": "Binary", "BinaryValue": b"xy"}}}),
    ("sdb", "PutAttributes", {"DomainName": "d", "ItemName": "i", "Expected": {"Name": "a", "Exists": False},
                              "Attributes": [{"Name": "a", "Value": "1", "Replace": True}]}),  # flattened list
]


@pytest.mark.parametrize(("service", "operation", "params"), QUERY_CALLS,
                         ids=[f"{s}-{o}" for s, o, _ in QUERY_CALLS])
def test_query_parameters_are_read_back_as_botocore_serialized_them(service: str, operation: str,
                                                                    params: dict[str, Any]) -> None:
    import botocore.session
    from botocore.serialize import create_serializer
    from doubles.aws import _query_params

    model = botocore.session.get_session().get_service_model(service)
    op = model.operation_model(operation)
    body = create_serializer(model.metadata["protocol"]).serialize_to_request(params, op)["body"]
    flat = {k: str(v) for k, v in body.items() if k not in ("Action", "Version")}
    assert _query_params(op.input_shape, flat, model.metadata["protocol"]) == params


def test_aws_front_validates_ec2_filters_by_their_wire_names(aws: AwsEnv) -> None:
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    aws.front.trust("AKIAFRONTTESTFRONTTE", "front-secret")
    ec2 = boto3.client("ec2", endpoint_url=aws.endpoint_url, region_name=aws.region,
                       aws_access_key_id="AKIAFRONTTESTFRONTTE", aws_secret_access_key="front-secret")
    ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}],
                           MaxResults=1000)
    assert aws.front.violations == []  # Filter.1.Name / Filter.1.Value.N are how EC2 spells Filters
    assert aws.front.calls[-1].params["Filter.1.Value.2"] == "running"
    # A misspelt filter and a non-integer, signed like botocore would sign any request.
    typo = AWSRequest("POST", aws.endpoint_url + "/", data="Action=DescribeInstances&Version=2016-11-15&"
                      "Filter.1.Nmae=instance-state-name&Filter.1.Value.1=running&MaxResults=lots",
                      headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials("AKIAFRONTTESTFRONTTE", "front-secret"), "ec2", aws.region).add_auth(typo)
    with aws.front.expect_violations() as seen:
        call(typo.url, "POST", headers=dict(typo.headers.items()), raw=typo.body)
    assert len(seen) == 1 and 'Unknown parameter in input: "Filter.1.Nmae"' in seen[0]
    assert "Invalid type for parameter MaxResults" in seen[0]


def test_aws_front_checks_sigv4_and_emulates_lifecycle_actions(aws: AwsEnv) -> None:
    import boto3
    from botocore.exceptions import ClientError

    aws.create_role("gh-runners-pool")
    aws.put_secure_parameter("/gh-runners/pool/token", "ghp_secret")
    ids = aws.create_asg("pool-asg", desired=2)
    aws.become(ids[0])
    token = imds_token(aws.imds)[1]
    creds = imds_get(aws.imds, "meta-data/iam/security-credentials/gh-runners-pool", token)[1]
    assert creds["Code"] == "Success" and creds["AccessKeyId"].startswith("ASIA")

    def client(service: str, secret: str = creds["SecretAccessKey"]) -> Any:
        return boto3.client(service, endpoint_url=aws.endpoint_url, region_name=aws.region,
                            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=secret,
                            aws_session_token=creds["Token"])

    param = client("ssm").get_parameter(Name="/gh-runners/pool/token", WithDecryption=True)["Parameter"]
    assert param["Value"] == "ghp_secret"
    with aws.front.expect_violations() as seen, pytest.raises(ClientError, match="InvalidSignatureException"):
        client("ssm", secret="wrong").get_parameter(Name="/gh-runners/pool/token", WithDecryption=True)
    assert seen and "signature mismatch" in seen[0]

    action = aws.begin_termination(ids[0], "pool-asg", "drain")
    assert imds_get(aws.imds, "meta-data/autoscaling/target-lifecycle-state", token)[1] == "Terminated"
    asg = client("autoscaling")
    asg.record_lifecycle_action_heartbeat(AutoScalingGroupName="pool-asg", LifecycleHookName="drain",
                                          InstanceId=ids[0])
    asg.complete_lifecycle_action(AutoScalingGroupName="pool-asg", LifecycleHookName="drain", InstanceId=ids[0],
                                  LifecycleActionResult="CONTINUE")
    assert action.wait_completed().result == "CONTINUE" and action.heartbeats == 1
    assert list(aws.instances("pool-asg")) == ids[1:]
    with pytest.raises(ClientError, match="No active Lifecycle Action"):
        asg.complete_lifecycle_action(AutoScalingGroupName="pool-asg", LifecycleHookName="drain",
                                      InstanceId=ids[0], LifecycleActionResult="CONTINUE")
    assert [c.action for c in aws.front.calls] == ["GetParameter", "RecordLifecycleActionHeartbeat",
                                                   "CompleteLifecycleAction", "CompleteLifecycleAction"]


# -- the stricter rules (issue 11: each one first here, then against the agent) ----------------


def test_aws_front_refuses_a_decrementing_terminate_below_min_size(aws: AwsEnv) -> None:
    """moto alone lets it through (its desired capacity falls below MinSize); AWS answers ValidationError."""
    import boto3
    from botocore.exceptions import ClientError

    aws.create_role("gh-runners-pool")
    ids = aws.create_asg("pool-asg", desired=2, min_size=2)
    aws.become(ids[0])
    token = imds_token(aws.imds)[1]
    creds = imds_get(aws.imds, "meta-data/iam/security-credentials/gh-runners-pool", token)[1]
    asg = boto3.client("autoscaling", endpoint_url=aws.endpoint_url, region_name=aws.region,
                       aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                       aws_session_token=creds["Token"])
    with pytest.raises(ClientError, match="will violate group's min size constraint"):
        asg.terminate_instance_in_auto_scaling_group(InstanceId=ids[0], ShouldDecrementDesiredCapacity=True)
    # Replacing is fine; the termination hook holds the instance until its action is completed.
    asg.terminate_instance_in_auto_scaling_group(InstanceId=ids[0], ShouldDecrementDesiredCapacity=False)
    assert imds_get(aws.imds, "meta-data/autoscaling/target-lifecycle-state", token)[1] == "Terminated"
    assert ids[0] in aws.instances("pool-asg")
    asg.complete_lifecycle_action(AutoScalingGroupName="pool-asg", LifecycleHookName="drain", InstanceId=ids[0],
                                  LifecycleActionResult="CONTINUE")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["pool-asg"])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 2 and ids[0] not in aws.instances("pool-asg")
    assert aws.front.terminations == [(ids[0], False)]


def test_compute_delete_lowers_the_target_size_and_recreate_keeps_it(gcp: GcpDoubles) -> None:
    mig = gcp.add_mig("pool-x64")
    for name in ("pool-x64-a", "pool-x64-b"):
        mig.add_instance(name)
    token = md(gcp, "instance/service-accounts/default/token", **{"Metadata-Flavor": "Google"})[1]["access_token"]
    base = (f"{gcp.compute.url}/compute/v1/projects/{gcp.state.project_id}/regions/us-central1/"
            "instanceGroupManagers/pool-x64")
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    assert call(base, headers=auth)[1]["targetSize"] == 2
    first = {"instances": ["zones/us-central1-a/instances/pool-x64-a"]}
    status, op, _ = call(f"{base}/recreateInstances", "POST", first, headers=auth)
    assert status == 200 and op["operationType"] == "compute.instanceGroupManagers.recreateInstances"
    assert mig.target_size == 2 and mig.instances[0].action == "RECREATING"
    full = (f"https://www.googleapis.com/compute/v1/projects/{gcp.state.project_id}/zones/us-central1-a/instances/"
            "pool-x64-b")
    assert call(f"{base}/deleteInstances", "POST", {"instances": [full]}, headers=auth)[0] == 200
    # Listed as DELETING while it shuts down, as a real MIG does; the group no longer counts it.
    assert mig.target_size == 1 and [i.name for i in mig.live] == ["pool-x64-a"]
    assert mig.instances[1].action == "DELETING"
    # Not a member: refused, unless told to skip it.
    gone = {"instances": ["zones/us-central1-a/instances/nope"]}
    assert call(f"{base}/deleteInstances", "POST", gone, headers=auth)[0] == 400
    assert call(f"{base}/deleteInstances", "POST", {**gone, "skipInstancesOnValidationError": True},
                headers=auth)[0] == 200 and mig.target_size == 1
    with gcp.compute.expect_violations() as seen:  # the discovery schema: unknown fields are refused
        assert call(f"{base}/deleteInstances", "POST", {"instance": ["x"]}, headers=auth)[0] == 400
    assert seen and "instance" in seen[0]
    mig.updaters.clear()
    assert call(f"{base}/recreateInstances", "POST", {"instances": ["zones/us-central1-a/instances/pool-x64-a"]},
                headers=auth)[0] == 403


def test_secondary_rate_limits_come_with_or_without_retry_after(github: GitHubDouble) -> None:
    github.org("acme")
    pat = github.add_pat()
    github.rate_limit(r"/runners$", status=429, retry_after=None)
    github.rate_limit(r"/runners$", status=403, retry_after=7)
    status, body, headers = gh(github, "/orgs/acme/actions/runners", token=pat)
    assert status == 429 and "retry-after" not in headers and "secondary rate limit" in body["message"]
    status, body, headers = gh(github, "/orgs/acme/actions/runners", token=pat)
    assert status == 403 and headers["retry-after"] == "7"


def test_a_runner_stays_busy_for_a_moment_after_its_job_was_cancelled(github: GitHubDouble) -> None:
    org = github.org("acme")
    pat = github.add_pat()
    runner = org.add_runner("p-1", labels=["self-hosted", "e2e"], busy=False)
    job = github.queue_job(["e2e"], duration=None)
    job.state, job.runner_id = "in_progress", runner.id
    github.busy_after_cancel = 30
    job.finish("cancelled")
    assert gh(github, f"/orgs/acme/actions/runners/{runner.id}", token=pat)[1]["busy"] is True
    assert gh(github, f"/orgs/acme/actions/runners/{runner.id}", "DELETE", token=pat)[0] == 422
    runner.busy_until = 0
    assert gh(github, f"/orgs/acme/actions/runners/{runner.id}", "DELETE", token=pat)[0] == 204


def test_the_latest_release_is_the_highest_version(github: GitHubDouble, runner_release: RunnerRelease) -> None:
    github.add_runner_release("2.331.0", {"linux-x64": runner_release.tarball})
    github.add_runner_release("2.99.0", {"linux-x64": runner_release.tarball})
    assert github.latest_runner == "2.331.0"
    status, body, _ = gh(github, "/repos/actions/runner/releases/latest")
    assert status == 200 and body["tag_name"] == "v2.331.0"
    github.anonymous_budget = 1  # unauthenticated: 60 an hour per address; the last of them
    assert gh(github, "/repos/actions/runner/releases/latest")[0] == 200
    status, _, headers = gh(github, "/repos/actions/runner/releases/latest")
    assert status == 403 and headers["x-ratelimit-remaining"] == "0"
    assert gh(github, "/repos/actions/runner/releases/latest", token=github.add_pat())[0] == 200


@pytest.mark.parametrize(("ephemeral", "code"), [(True, 4), (False, 3)])
def test_fake_runner_updates_itself_when_github_says_so(github: GitHubDouble, runner_release: RunnerRelease,
                                                        tmp_path: Path, ephemeral: bool, code: int) -> None:
    """An install the runner owns (what the agent used to make): SelfUpdater downloads, swaps bin/ for the new
    version and exits 3 (RunnerUpdating) or, run-once/ephemeral, 4 (RunOnceRunnerUpdating); run-helper.sh
    waits for update.finished and run.sh starts the new version, which then gets the job."""
    org = github.org("acme")
    pat = github.add_pat()
    github.add_runner_release("2.331.0", {"linux-x64": runner_release.tarball})
    root = _install(runner_release, tmp_path / "runner")
    job = github.queue_job(["self-hosted", "pool"], duration=0)
    if ephemeral:
        body = gh(github, "/orgs/acme/actions/runners/generate-jitconfig", "POST", JIT, pat)[1]
        env = _env(ACTIONS_RUNNER_INPUT_JITCONFIG=body["encoded_jit_config"])
        proc = subprocess.Popen([str(root / "run.sh")], env=env, stdout=subprocess.PIPE, text=True)
    else:
        token = gh(github, "/orgs/acme/actions/runners/registration-token", "POST", token=pat)[1]["token"]
        done = subprocess.run([str(root / "config.sh"), "--unattended", "--url", f"https://github.com/{org.path}",
                               "--name", "p-1", "--labels", "pool"], env=_env(ACTIONS_RUNNER_INPUT_TOKEN=token),
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stdout
        proc = subprocess.Popen([str(root / "run.sh")], env=_env(), stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
    job.wait_completed(20)
    if not ephemeral:
        os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert "Update finished successfully." in out, out
    exits = [r["code"] for r in runner_release.records("exit") if r["command"] == "run"]
    assert exits[0] == code
    assert [r["version"] for r in runner_release.records("connected")] == ["2.330.0", "2.331.0"]
    assert (root / "bin").is_symlink() and (root / "bin.2.330.0").is_dir()
    assert github.update_messages == [(JIT["name"] if ephemeral else "p-1", "2.331.0")]


def test_fake_runner_counts_a_migrated_registration_as_configured(github: GitHubDouble,
                                                                 runner_release: RunnerRelease,
                                                                 tmp_path: Path) -> None:
    root = _install(runner_release, tmp_path / "runner")
    (root / ".runner_migrated").write_text("{}")
    done = subprocess.run([str(root / "config.sh"), "--unattended", "--url", "https://github.com/acme"],
                          env=_env(ACTIONS_RUNNER_INPUT_TOKEN="x"), capture_output=True, text=True)
    assert done.returncode == 1 and "already configured" in done.stdout


def test_fake_runner_takes_only_each_commands_own_options(runner_release: RunnerRelease, tmp_path: Path) -> None:
    """CommandSettings.cs validOptions: `run` has no --disableupdate (only config.sh's configure does)."""
    root = _install(runner_release, tmp_path / "runner")
    done = subprocess.run([str(root / "bin" / "Runner.Listener"), "run", "--disableupdate"], env=_env(),
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Unrecognized command-line input arguments: 'disableupdate'" in done.stdout


def test_fake_runner_needs_libicu_like_the_real_one(runner_release: RunnerRelease, shared_tmp: Path) -> None:
    root = _install(runner_release, Path(tempfile.mkdtemp(prefix="runner-", dir=shared_tmp)))
    root.chmod(0o755)  # the unprivileged user below must reach the script
    runner_release.hide_libicu()
    done = subprocess.run([str(root / "config.sh"), "--unattended"], env=_env(), capture_output=True, text=True,
                          cwd=root)
    assert done.returncode == 1 and "Libicu's dependencies is missing" in done.stdout
    run = subprocess.run([str(root / "bin" / "Runner.Listener"), "run"], env=_env(), capture_output=True, text=True)
    assert run.returncode == 134 and "Couldn't find a valid ICU package" in run.stdout
    as_user = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              str(root / "bin" / "installdependencies.sh")], capture_output=True, text=True)
    assert as_user.returncode == 1 and "Need to run with sudo privilege" in as_user.stdout
    assert subprocess.run([str(root / "bin" / "installdependencies.sh")], capture_output=True).returncode == 0
    assert subprocess.run([str(root / "config.sh"), "--version"], env=_env(), capture_output=True,
                          text=True).stdout.strip() == "2.330.0"  # libicu "installed": config.sh goes on
