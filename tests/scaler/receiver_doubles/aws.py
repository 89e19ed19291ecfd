"""Auto Scaling for the receiver: moto behind the agent tests' SigV4-checking front, plus the
two capacity rules real Auto Scaling enforces and moto does not.

* ExecutePolicy never takes the desired capacity past MaxSize. moto adds the
  adjustment and sets whatever comes out; AWS caps it: "the desired capacity
  ... cannot be greater than the maximum"
  (https://docs.aws.amazon.com/autoscaling/ec2/userguide/asg-capacity-limits.html),
  and a scaling adjustment that would cross a limit stops at it
  (https://docs.aws.amazon.com/autoscaling/ec2/userguide/as-scaling-simple-step.html).
  The front applies a ChangeInCapacity policy itself, atomically under its
  lock (Auto Scaling serialises changes to one group), and sets the result in
  moto.
* TerminateInstanceInAutoScalingGroup with ShouldDecrementDesiredCapacity
  refuses to go below MinSize. moto decrements anyway; AWS answers a
  ValidationError ("... Terminating instance without replacement will violate
  group's min size constraint", the message AWS returns; the API reference
  lists ValidationError for it:
  https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_TerminateInstanceInAutoScalingGroup.html).

Scaling policies live in the front, by (group, name): moto keys them by name
alone (moto/autoscaling/models.py, `put_scaling_policy`: `self.policies[name]`,
and `execute_policy` looks the name up without the group), while AWS scopes a
policy name to its group -- the stack gives every group's +1 policy the same
name, so under moto the last group would own it.

`contend(n)` makes the next n ExecutePolicy calls answer
ScalingActivityInProgress, an error the API reference lists for ExecutePolicy
(https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_ExecutePolicy.html).
`desired_history` records every desired capacity a group had, so a test can
prove it never left [MinSize, MaxSize].
"""

from __future__ import annotations

from typing import Any

from doubles._http import Request, Response
from doubles.aws import SEED_CREDENTIALS, AwsFront, MotoServer, _query_error, _query_ok
from doubles.imds import ImdsDouble


class ScalingFront(AwsFront):
    name = "aws-scaling"

    def __init__(self, moto: MotoServer) -> None:
        super().__init__(moto, ImdsDouble())  # IMDS is the agent's: the receiver has none

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self.contended = 0
            self.desired_history: dict[str, list[int]] = {}
            self.policies: dict[tuple[str, str], tuple[str, int]] = {}

    def put_policy(self, group: str, name: str, adjustment: int, adjustment_type: str = "ChangeInCapacity") -> None:
        """A simple scaling policy of `group` (the stack's PutScalingPolicy)."""
        with self._cond:
            self.policies[(group, name)] = (adjustment_type, adjustment)

    def contend(self, times: int) -> None:
        with self._cond:
            self.contended += times

    def seed(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.moto.url, region_name=self.region, **SEED_CREDENTIALS)

    def _forward(self, req: Request) -> Response:
        service, action, params = self._decode(req, _service_of(req))
        if service == "autoscaling" and action == "ExecutePolicy":
            return self._execute_policy(params)
        if service == "autoscaling" and action == "TerminateInstanceInAutoScalingGroup":
            return self._terminate(req, params)
        return super()._forward(req)

    def _group(self, name: str) -> dict[str, Any] | None:
        found = self.seed("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return found["AutoScalingGroups"][0] if found["AutoScalingGroups"] else None

    def _execute_policy(self, params: dict[str, Any]) -> Response:
        with self._cond:
            if self.contended > 0:
                self.contended -= 1
                return _query_error(400, "ScalingActivityInProgress",
                                    "Scaling activity is in progress and blocks this action")
            name, policy_name = params.get("AutoScalingGroupName", ""), params.get("PolicyName", "")
            policy = self.policies.get((name, policy_name))
            group = self._group(name)
            if group is None or policy is None:
                return _query_error(400, "ValidationError", f"No such policy {policy_name} for group {name}")
            adjustment_type, adjustment = policy
            if adjustment_type != "ChangeInCapacity":
                return _query_error(400, "ValidationError", "the double models ChangeInCapacity policies only")
            autoscaling = self.seed("autoscaling")
            wanted = group["DesiredCapacity"] + adjustment
            desired = max(group["MinSize"], min(group["MaxSize"], wanted))
            if desired != group["DesiredCapacity"]:
                autoscaling.set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired,
                                                 HonorCooldown=False)
            self.desired_history.setdefault(name, []).append(desired)
            self.changed()
            return _query_ok("ExecutePolicy")

    def _terminate(self, req: Request, params: dict[str, Any]) -> Response:
        with self._cond:
            instance = params.get("InstanceId", "")
            autoscaling = self.seed("autoscaling")
            found = autoscaling.describe_auto_scaling_instances(InstanceIds=[instance])["AutoScalingInstances"]
            if found and params.get("ShouldDecrementDesiredCapacity") == "true":
                group = self._group(found[0]["AutoScalingGroupName"])
                if group is not None and group["DesiredCapacity"] - 1 < group["MinSize"]:
                    return _query_error(
                        400, "ValidationError",
                        f"Currently, desiredSize equals minSize ({group['MinSize']}). Terminating instance "
                        "without replacement will violate group's min size constraint. Either set "
                        "shouldDecrementDesiredCapacity flag to false or lower group's min size.")
            resp = super()._forward(req)
            if found and resp.status == 200:
                group = self._group(found[0]["AutoScalingGroupName"])
                if group is not None:
                    self.desired_history.setdefault(group["AutoScalingGroupName"], []).append(
                        group["DesiredCapacity"])
            self.changed()
            return resp


def _service_of(req: Request) -> str:
    auth = req.header("authorization") or ""
    parts = auth.split("Credential=", 1)[-1].split("/")
    return parts[3] if len(parts) > 3 else ""
