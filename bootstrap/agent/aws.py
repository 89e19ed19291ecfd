"""AWS from inside the instance: IMDSv2, SSM, Auto Scaling lifecycle, EC2.

Requests to AWS APIs are signed by curl (`--aws-sigv4`) rather than by
hand-written crypto. The instance-role keys reach curl as a config file on
stdin (`-K -`), so they never appear in /proc/<pid>/cmdline.
"""

from __future__ import annotations

import functools
import json
import subprocess
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .config import Config, endpoint
from .http import AgentError, NetworkError, Response, Retry, fetch
from .log import log

IMDS_SESSION_TTL = "21600"


@dataclass(frozen=True)
class Keys:
    access_key: str
    secret_key: str
    token: str


def _quote(value: str) -> str:
    """A double-quoted value in curl's config syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signed(url: str, service: str, region: str, keys: Keys, headers: dict[str, str], body: str,
           timeout: float = 30) -> Response:
    """POST `body` to `url`, SigV4-signed by curl. Keys and body go through stdin."""
    config = "\n".join(
        [
            f"user = {_quote(f'{keys.access_key}:{keys.secret_key}')}",
            f"header = {_quote('X-Amz-Security-Token: ' + keys.token)}",
            f"data-binary = {_quote(body)}",
            "",
        ]
    )
    argv = ["curl", "--silent", "--show-error", "--proto", "=http,https", "--max-time", str(int(timeout)),
            "--aws-sigv4", f"aws:amz:{region}:{service}", "--config", "-", "--write-out", "\n%{http_code}"]
    for name, value in headers.items():
        argv += ["--header", f"{name}: {value}"]
    argv.append(url)
    try:
        done = subprocess.run(argv, input=config.encode(), capture_output=True, timeout=timeout + 5, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NetworkError(f"POST {url}: {type(error).__name__}") from None
    del config
    if done.returncode != 0:
        raise NetworkError(f"POST {url}: curl exit {done.returncode}: {done.stderr.decode(errors='replace').strip()}")
    body_out, _, code = done.stdout.rpartition(b"\n")
    return Response(int(code or 0), body_out)


class AwsCloud:
    def __init__(self, cfg: Config, retry: Retry) -> None:
        self.cfg, self.retry = cfg, retry
        self.imds = endpoint("IMDS", "http://169.254.169.254")
        self.ssm = endpoint("SSM", f"https://ssm.{cfg.region}.amazonaws.com")
        self.autoscaling = endpoint("AUTOSCALING", f"https://autoscaling.{cfg.region}.amazonaws.com")
        self.ec2 = endpoint("EC2", f"https://ec2.{cfg.region}.amazonaws.com")
        self._imds_token = ""

    # --- IMDSv2 -------------------------------------------------------------

    def _token(self, fresh: bool = False) -> str:
        if fresh or not self._imds_token:
            answer = self.retry("IMDS session token", lambda: fetch(
                "PUT", f"{self.imds}/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": IMDS_SESSION_TTL}, direct=True, timeout=5))
            _expect(answer, "IMDS session token")
            self._imds_token = answer.body.decode().strip()
        return self._imds_token

    def _meta(self, path: str, once: bool = False) -> Response:
        url = f"{self.imds}/latest/meta-data/{path}"

        def attempt() -> Response:
            answer = fetch("GET", url, headers={"X-aws-ec2-metadata-token": self._token()}, direct=True, timeout=5)
            if answer.status == 401:  # the session token expired: take a new one
                answer = fetch("GET", url, headers={"X-aws-ec2-metadata-token": self._token(fresh=True)},
                               direct=True, timeout=5)
            return answer

        return attempt() if once else self.retry(f"IMDS {path}", attempt)

    def instance_id(self) -> str:
        answer = self._meta("instance-id")
        _expect(answer, "IMDS instance-id")
        return answer.body.decode().strip()

    def _keys(self) -> Keys:
        roles = self._meta("iam/security-credentials/")
        _expect(roles, "IMDS iam/security-credentials (does the instance have a profile?)")
        role = roles.body.decode().split()[0]
        answer = self._meta(f"iam/security-credentials/{role}")
        _expect(answer, "IMDS instance role credentials")
        doc = answer.json()
        return Keys(doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"])

    # --- the credential -----------------------------------------------------

    def read_secret(self) -> str:
        keys = self._keys()
        body = json.dumps({"Name": self.cfg.secret, "WithDecryption": True})
        headers = {"X-Amz-Target": "AmazonSSM.GetParameter", "Content-Type": "application/x-amz-json-1.1"}
        what = f"SSM GetParameter {self.cfg.secret}"
        call = functools.partial(signed, self.ssm + "/", "ssm", self.cfg.region, keys, headers, body)
        answer = self.retry(what, call)
        del keys
        _expect(answer, what)
        value: str = answer.json()["Parameter"]["Value"]
        return value

    # --- termination --------------------------------------------------------

    def termination_notice(self) -> str | None:
        """'lifecycle' when the ASG is terminating us, 'spot' on a spot interruption notice."""
        try:
            state = self._meta("autoscaling/target-lifecycle-state", once=True)
            if state.status == 200 and state.body.decode().strip() == "Terminated":
                return "lifecycle"
            spot = self._meta("spot/instance-action", once=True)
            if spot.status == 200:
                return "spot"
        except (NetworkError, AgentError):
            pass  # polling again soon is the right answer to a missed poll
        return None

    def complete_termination(self, instance_id: str) -> None:
        """Let the ASG's termination lifecycle hook continue (we drained)."""
        if not self.cfg.lifecycle_hook:
            return
        form = urllib.parse.urlencode({
            "Action": "CompleteLifecycleAction",
            "Version": "2011-01-01",
            "AutoScalingGroupName": self.cfg.group,
            "LifecycleHookName": self.cfg.lifecycle_hook,
            "InstanceId": instance_id,
            "LifecycleActionResult": "CONTINUE",
        })
        keys = self._keys()
        what = "autoscaling CompleteLifecycleAction"
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        call = functools.partial(signed, self.autoscaling + "/", "autoscaling", self.cfg.region, keys, headers, form)
        answer = self.retry(what, call)
        del keys
        if answer.status == 400 and b"No active Lifecycle Action" in answer.body:
            log.info("no termination lifecycle action is pending for %s", instance_id)
            return
        _expect(answer, what)
        log.info("completed lifecycle action %s for %s: CONTINUE", self.cfg.lifecycle_hook, instance_id)

    # --- ghost sweep --------------------------------------------------------

    def alive_instances(self) -> set[str]:
        """Ids of this ASG's instances that still exist (a stopped one may boot again)."""
        keys = self._keys()
        alive: set[str] = set()
        token = ""
        while True:
            params = {
                "Action": "DescribeInstances",
                "Version": "2016-11-15",
                "Filter.1.Name": "tag:aws:autoscaling:groupName",
                "Filter.1.Value.1": self.cfg.group,
                "Filter.2.Name": "instance-state-name",
                "Filter.2.Value.1": "pending",
                "Filter.2.Value.2": "running",
                "Filter.2.Value.3": "stopping",
                "Filter.2.Value.4": "shutting-down",
                "Filter.2.Value.5": "stopped",
                "MaxResults": "1000",
            }
            if token:
                params["NextToken"] = token
            form = urllib.parse.urlencode(params)
            headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
            call = functools.partial(signed, self.ec2 + "/", "ec2", self.cfg.region, keys, headers, form)
            answer = self.retry("EC2 DescribeInstances", call)
            _expect(answer, "EC2 DescribeInstances")
            root = ET.fromstring(answer.body)  # noqa: S314 - a signed answer from EC2
            for element in root.iter():
                if element.tag.endswith("instanceId") and element.text:
                    alive.add(element.text.strip())
            token = next((e.text or "" for e in root if e.tag.endswith("nextToken")), "")
            if not token:
                return alive


def _expect(answer: Response, what: str) -> None:
    if not 200 <= answer.status < 300:
        raise AgentError(f"{what}: HTTP {answer.status} {answer.message()}".strip())
