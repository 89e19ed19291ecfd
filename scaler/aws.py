"""AWS adapter: Auto Scaling groups grown by a +1 simple scaling policy; the Lambda entry point.

Scale-up is `ExecutePolicy` on the pool's ChangeInCapacity +1 policy with
HonorCooldown=False: the service adds one to the group's desired capacity
itself, so concurrent deliveries never read-modify-write the size, and it
never goes past MaxSize ("the desired capacity ... cannot be greater than the
maximum": https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-capacity-limits.html;
a scaling adjustment that would cross a limit is capped there:
https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-simple-step.html).
ExecutePolicy may answer ScalingActivityInProgress or ResourceContention
(API reference, "Errors": https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_ExecutePolicy.html)
while another change to the group is applied; those are retried with jitter
inside the webhook's time budget, then the delivery answers 503 and the
reconcile adds what is missing.

The floor on AWS is the group's MinSize (moved by the stack's scheduled
actions): AWS itself never lets the desired capacity below it.

boto3 is what the Lambda Python runtime ships
(https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html), so the
function's code is this package and nothing else.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from datetime import datetime, timezone
from typing import Any

from scaler.config import Pool, ScalerConfig, SecretRef, load_deployed
from scaler.decision import Grown, Receiver, ScaleError
from scaler.function import Function
from scaler.reconcile import GroupState

log = logging.getLogger("scaler")
log.setLevel(logging.INFO)  # the Lambda runtime's root logger passes WARNING and up only

RETRYABLE = {"ScalingActivityInProgress", "ResourceContention", "Throttling", "ThrottlingException"}
# Retries of one scale-up stop after this long: GitHub gives a delivery 10 s in all.
GROW_DEADLINE_SECONDS = 6.0


def _client_config() -> Any:
    from botocore.config import Config

    # Short timeouts: every call happens while GitHub waits for the answer.
    return Config(connect_timeout=2, read_timeout=4, retries={"mode": "standard", "max_attempts": 2})


class AwsGroups:
    """The Groups verbs for a receiver's AWS pools (one boto3 client per region, made lazily)."""

    def __init__(self, config: ScalerConfig, sleep: Any = time.sleep) -> None:
        self.config = config
        self.sleep = sleep
        self._clients: dict[tuple[str, str], Any] = {}

    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            import boto3

            endpoint = self.config.endpoints.get("aws")
            self._clients[key] = boto3.client(
                service, region_name=region, endpoint_url=endpoint, config=_client_config()
            )
        return self._clients[key]

    def _target(self, pool: Pool) -> Any:
        if pool.aws is None:
            raise ScaleError(f"pool {pool.name} has no AWS group in the configuration")
        return pool.aws

    def _execute(self, pool: Pool, deadline: float) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        target = self._target(pool)
        autoscaling = self.client("autoscaling", target.region)
        attempt = 0
        while True:
            try:
                autoscaling.execute_policy(
                    AutoScalingGroupName=target.group, PolicyName=target.scale_up_policy, HonorCooldown=False
                )
                return
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code not in RETRYABLE or time.monotonic() >= deadline:
                    raise ScaleError(f"ExecutePolicy on {target.group}: {code or exc}") from None
            except BotoCoreError as exc:
                raise ScaleError(f"ExecutePolicy on {target.group}: {type(exc).__name__}") from None
            attempt += 1
            # Full jitter: concurrent deliveries spread out instead of colliding again.
            self.sleep(min(deadline - time.monotonic(), random.uniform(0, 0.1 * 2**attempt)))  # noqa: S311

    def grow(self, pool: Pool, job_id: int) -> Grown:
        self._execute(pool, time.monotonic() + GROW_DEADLINE_SECONDS)
        return Grown(True, "ExecutePolicy +1 (capped at MaxSize by Auto Scaling)")

    def state(self, pool: Pool, now: datetime) -> GroupState:
        from botocore.exceptions import BotoCoreError, ClientError

        target = self._target(pool)
        try:
            found = self.client("autoscaling", target.region).describe_auto_scaling_groups(
                AutoScalingGroupNames=[target.group]
            )["AutoScalingGroups"]
        except (ClientError, BotoCoreError) as exc:
            raise ScaleError(f"DescribeAutoScalingGroups {target.group}: {exc}") from None
        if not found:
            raise ScaleError(f"Auto Scaling group {target.group} not found")
        return GroupState(size=int(found[0]["DesiredCapacity"]), floor=int(found[0]["MinSize"]))

    def add(self, pool: Pool, count: int, run: int) -> int:
        # One +1 per missing VM: the same capped, atomic verb as the webhook's.
        deadline = time.monotonic() + 60
        for done in range(count):
            try:
                self._execute(pool, deadline)
            except ScaleError:
                if done == 0:
                    raise
                return done
        return count

    def read_secret(self, ref: SecretRef) -> str:
        """A SecureString parameter (the webhook secret, the GitHub credential)."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = ref.location
        try:
            answer = self.client("ssm", ref.region or "").get_parameter(Name=name, WithDecryption=True)
        except (ClientError, BotoCoreError) as exc:
            code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
            raise ScaleError(f"SSM GetParameter {name}: {code or type(exc).__name__}") from None
        return str(answer["Parameter"]["Value"])


# --- the Lambda entry point -------------------------------------------------------------


_function: Function | None = None


def _warm() -> Function:
    """What a warm Lambda keeps between invocations."""
    global _function
    if _function is None:
        _function = Function(config := load_deployed(), AwsGroups(config))
    return _function


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: a function URL request (payload format 2.0) or the scheduled reconcile.

    Function URL events: https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html
    (lower-case `headers`, `body` base64 when `isBase64Encoded`); EventBridge
    scheduled events carry `source: aws.events` and `detail-type: Scheduled Event`.
    """
    function = _warm()
    if event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event":
        return {"reconciled": [plan.__dict__ for plan in function.reconcile(datetime.now(timezone.utc))]}
    if "requestContext" not in event:
        log.warning(json.dumps({"ignored": "unknown event shape"}))
        return {"statusCode": 400, "body": '{"decision":"unknown-event"}'}
    return url_response(function.receiver, event)


def url_response(receiver: Receiver, event: dict[str, Any]) -> dict[str, Any]:
    """One function URL request through the receiver."""
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode("utf-8")
    except ValueError:
        body = b""  # not base64 after all: nothing GitHub signed, so the signature check refuses it
    reply = receiver.handle(event.get("headers") or {}, body)
    return {"statusCode": reply.status, "headers": {"content-type": "application/json"}, "body": reply.body}
