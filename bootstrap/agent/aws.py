"""AWS from inside the instance: IMDSv2, SSM, Auto Scaling (leaving the group, lifecycle), EC2.

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
from collections.abc import Callable

from .config import Config, endpoint
from .http import NetworkError, Response, Retry, expect, fetch, transient
from .log import log

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
# A runner whose instance is in one of these states is not a ghost (a stopped one may boot again).
ALIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


def _quote(value: str) -> str:
    """A double-quoted value in curl's config syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def signed(url: str, service: str, region: str, keys: dict[str, str], headers: dict[str, str], body: str) -> Response:
    """POST `body` to `url`, SigV4-signed by curl. Keys and body go through stdin."""
    config = (f"user = {_quote(keys['AccessKeyId'] + ':' + keys['SecretAccessKey'])}\n"
              f"header = {_quote('X-Amz-Security-Token: ' + keys['Token'])}\n"
              f"data-binary = {_quote(body)}\n")
    argv = ["curl", "-sS", "--proto", "=http,https", "--max-time", "30", "--aws-sigv4", f"aws:amz:{region}:{service}",
            "-K", "-", "-w", "\n%{http_code}", url]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    try:
        done = subprocess.run(argv, input=config.encode(), capture_output=True, timeout=40, check=False)
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
        self._session = ""

    # --- IMDSv2 -------------------------------------------------------------

    def _imds(self, path: str, once: bool = False) -> Response:
        url = f"{self.imds}/latest/meta-data/{path}"

        def attempt() -> Response:
            for _ in range(2):  # a second round with a new session token if it expired
                if not self._session:
                    answer = fetch("PUT", f"{self.imds}/latest/api/token", direct=True, timeout=5,
                                   headers={"X-aws-ec2-metadata-token-ttl-seconds": "21600"})
                    if answer.status != 200:
                        return answer
                    self._session = answer.body.decode().strip()
                answer = fetch("GET", url, headers={"X-aws-ec2-metadata-token": self._session}, direct=True,
                               timeout=5)
                if answer.status != 401:
                    break
                self._session = ""
            return answer

        return attempt() if once else expect(self.retry(f"IMDS {path}", attempt), f"IMDS {path}")

    def instance_id(self) -> str:
        return self._imds("instance-id").body.decode().strip()

    def _api(self, service: str, body: str, headers: dict[str, str], what: str,
             again: Callable[[Response], bool] = transient, retry: Retry | None = None) -> Response:
        """A signed call with the instance role's keys, read from IMDS for this call only."""
        role = self._imds("iam/security-credentials/").body.decode().split()[0]
        keys = json.loads(self._imds(f"iam/security-credentials/{role}").body)
        url = endpoint(service.upper(), f"https://{service}.{self.cfg.region}.amazonaws.com") + "/"
        call = functools.partial(signed, url, service, self.cfg.region, keys, headers, body)
        answer = (retry or self.retry)(what, call, again)
        del keys, call
        return answer

    def _query(self, service: str, params: dict[str, str], again: Callable[[Response], bool] = transient,
               retry: Retry | None = None) -> Response:
        """The Query API of EC2 and Auto Scaling (form POST, XML answer)."""
        return self._api(service, urllib.parse.urlencode(params), FORM, f"{service} {params['Action']}", again, retry)

    def _autoscaling(self, action: str, again: Callable[[Response], bool] = transient, retry: Retry | None = None,
                     **params: str) -> Response:
        return self._query("autoscaling", {"Action": action, "Version": "2011-01-01", **params}, again, retry)

    # --- the credential -----------------------------------------------------

    def read_secret(self) -> str:
        what = f"SSM GetParameter {self.cfg.secret}"
        body = json.dumps({"Name": self.cfg.secret, "WithDecryption": True})
        headers = {"X-Amz-Target": "AmazonSSM.GetParameter", "Content-Type": "application/x-amz-json-1.1"}
        value: str = expect(self._api("ssm", body, headers, what), what).json()["Parameter"]["Value"]
        return value

    # --- termination --------------------------------------------------------

    def lifecycle_state(self) -> str:
        """The group's target lifecycle state for us (InService, Terminated, Warmed:*), "" outside a group."""
        answer = self._imds("autoscaling/target-lifecycle-state", once=True)
        return answer.body.decode().strip() if answer.status == 200 else ""

    def termination_notice(self) -> str | None:
        """'spot' on a spot interruption notice, 'lifecycle' when the ASG is terminating us."""
        try:
            # Spot first: its two minutes are shorter than any hook, and cut a drain short.
            if self._imds("spot/instance-action", once=True).status == 200:
                return "spot"
            if self.lifecycle_state() == "Terminated":
                return "lifecycle"
        except NetworkError:
            pass  # the next poll asks again
        return None

    def above_floor(self) -> bool:
        """DesiredCapacity above MinSize, the floor (schedules move MinSize: providers/aws/group.py)."""
        answer = self._autoscaling("DescribeAutoScalingGroups", transient, None,
                                   **{"AutoScalingGroupNames.member.1": self.cfg.group})
        # The first `member` is the group's (AutoScalingGroups/member); MinSize also names a warm pool's.
        group = ET.fromstring(expect(answer, "DescribeAutoScalingGroups").body).find(".//{*}member")  # noqa: S314
        return int(group.findtext("{*}DesiredCapacity")) > int(group.findtext("{*}MinSize"))  # type: ignore

    def leave_group(self, instance_id: str, replace: bool, shrink_only: bool = False) -> bool:
        """Leave through the group: TerminateInstanceInAutoScalingGroup, lowering the desired capacity
        unless `replace` or unless that would go below MinSize, which AWS refuses with a ValidationError
        ("... will violate group's min size constraint"): then the group replaces us, or with
        `shrink_only` we stay (False)."""
        for decrement in (False,) if replace else (True,) if shrink_only else (True, False):
            answer = self._autoscaling("TerminateInstanceInAutoScalingGroup", InstanceId=instance_id,
                                       ShouldDecrementDesiredCapacity=str(decrement).lower())
            if answer.status == 400 and b"min size constraint" in answer.body:
                log.info("the group is at its minimum size: it replaces this VM")
                continue
            expect(answer, "autoscaling TerminateInstanceInAutoScalingGroup")
            log.info("left group %s (%s)", self.cfg.group, "desired capacity lowered" if decrement else "replaced")
            return True
        return False

    def complete_termination(self, instance_id: str, wait: float = 0) -> None:
        """Let the ASG's termination lifecycle hook continue: we drained. `wait`: how long the action may
        take to appear (right after our own TerminateInstanceInAutoScalingGroup it is not there yet)."""
        hook = self.cfg.lifecycle_hook
        if not hook:
            return
        pending = b"No active Lifecycle Action"
        answer = self._autoscaling(
            "CompleteLifecycleAction", lambda r: transient(r) or bool(wait and r.status == 400 and pending in r.body),
            Retry(wait, self.retry.base) if wait else None, AutoScalingGroupName=self.cfg.group,
            LifecycleHookName=hook, InstanceId=instance_id, LifecycleActionResult="CONTINUE")
        if answer.status == 400 and pending in answer.body:
            log.info("no termination lifecycle action is pending for %s", instance_id)
            return
        expect(answer, "autoscaling CompleteLifecycleAction")
        log.info("completed lifecycle action %s for %s: CONTINUE", hook, instance_id)

    # --- ghost sweep --------------------------------------------------------

    def alive_instances(self) -> set[str]:
        """Ids of this ASG's instances that still exist."""
        params = {"Action": "DescribeInstances", "Version": "2016-11-15", "MaxResults": "1000",
                  "Filter.1.Name": "tag:aws:autoscaling:groupName", "Filter.1.Value.1": self.cfg.group,
                  "Filter.2.Name": "instance-state-name"}
        params.update({f"Filter.2.Value.{i}": state for i, state in enumerate(ALIVE_STATES, 1)})
        alive: set[str] = set()
        while True:
            root = ET.fromstring(expect(self._query("ec2", params), "EC2 DescribeInstances").body)  # noqa: S314
            alive.update((e.text or "").strip() for e in root.iter() if e.tag.endswith("}instanceId"))
            token = next((e.text or "" for e in root if e.tag.endswith("}nextToken")), "")
            if not token:
                return alive - {""}
            params["NextToken"] = token
