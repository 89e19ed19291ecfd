"""AWS credential and identity: the SSM SecureString and the one role that may read it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from providers.base import Identity, Site
from providers.naming import fitted, part
from schema.models import AwsPool


@dataclass(frozen=True)
class Account:
    """Partition and account id of a region's provider, looked up once per region."""

    partition: pulumi.Output[str]
    account_id: pulumi.Output[str]


def ssm_decrypt_statement(
    sid: str, partition: str, region: str, account_id: str, parameter_arns: str | list[str]
) -> dict[str, Any]:
    """kms:Decrypt for SecureString parameters: SecureString decryption happens inside SSM, so allow it only
    through SSM and only for these parameters (SSM puts the parameter ARN in the encryption context),
    whichever key the account uses. The VM role's and the receiver's (providers/aws/scaler.py)."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Action": ["kms:Decrypt"],
        "Resource": [f"arn:{partition}:kms:{region}:{account_id}:key/*"],
        "Condition": {
            "StringEquals": {
                "kms:ViaService": f"ssm.{region}.amazonaws.com",
                "kms:EncryptionContext:PARAMETER_ARN": parameter_arns,
            }
        },
    }


def policy_statements(
    *,
    partition: str,
    account_id: str,
    region: str,
    parameter_arn: str,
    group_name: str,
    session_manager: bool,
    on_demand: bool = False,
    agent_objects: str = "",
) -> list[dict[str, Any]]:
    """What a runner VM's role may do -- and nothing more.

    Plain values in, plain JSON out, so tests and the policy linter read the
    same document the role gets.
    """
    statements: list[dict[str, Any]] = [
        {
            "Sid": "ReadTheGitHubCredential",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": [parameter_arn],
        },
        ssm_decrypt_statement("DecryptOnlyThroughSsmForThatParameter", partition, region, account_id, parameter_arn),
        {
            # A VM that is done leaves through its own group: it terminates
            # itself there (so the group does not run the termination hook on
            # an instance that is already gone) and completes its own hook.
            # Only this group: the ARN names it, whatever its id.
            "Sid": "LeaveThroughOwnGroup",
            "Effect": "Allow",
            "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:TerminateInstanceInAutoScalingGroup"],
            "Resource": [
                f"arn:{partition}:autoscaling:{region}:{account_id}:autoScalingGroup:*:autoScalingGroupName/{group_name}"
            ],
        },
        {
            # Read-only, for the ghost sweep. DescribeInstances has no
            # resource-level permissions in IAM: "*" is the only form AWS accepts.
            "Sid": "ListInstancesForGhostSweep",
            "Effect": "Allow",
            "Action": ["ec2:DescribeInstances"],
            "Resource": ["*"],
        },
    ]
    if on_demand:
        statements.append(
            {
                # The idle check: an idle VM leaves only while its group's
                # desired capacity is above MinSize, the floor. Describe*
                # actions of Auto Scaling list no resource type in the Service
                # Authorization Reference (https://docs.aws.amazon.com/
                # service-authorization/latest/reference/list_amazonec2autoscaling.html):
                # "*" is the only form AWS accepts; read-only.
                "Sid": "ReadGroupSizeForIdleCheck",
                "Effect": "Allow",
                "Action": ["autoscaling:DescribeAutoScalingGroups"],
                "Resource": ["*"],
            }
        )
    if agent_objects:
        # The agent bundle in the stack's bucket (providers/aws/agent_store.py): read the agent
        # objects only; no listing, nothing else of the bucket.
        statements.append(
            {"Sid": "FetchTheAgent", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [agent_objects]}
        )
    if session_manager:
        # The few actions the SSM agent needs for Session Manager, instead of
        # AmazonSSMManagedInstanceCore, which would also grant ssm:GetParameter
        # on every parameter in the account.
        statements.append(
            {
                "Sid": "SessionManagerShell",
                "Effect": "Allow",
                "Action": [
                    "ssm:UpdateInstanceInformation",
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                ],
                "Resource": ["*"],
            }
        )
    return statements


POLICY_NAME_LIMIT = 128  # IAM inline policy names: 1-128 characters

ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
)


def build_identity(
    pool: AwsPool,
    site: Site,
    credential: pulumi.Output[str],
    account: Account,
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
    agent_objects: pulumi.Input[str] = "",
) -> Identity:
    name = pool.name
    parameter = aws.ssm.Parameter(
        part(name, "credential"),
        name=site.secret_name,
        type="SecureString",
        # Standard parameters hold 4 KB; a GitHub App document (PEM key in JSON)
        # can come close. Intelligent-Tiering stays standard (free) until a
        # value needs the advanced tier.
        tier="Intelligent-Tiering",
        value=credential,  # a Pulumi secret: encrypted in state, never printed
        description=f"GitHub credential for gh-runners pool {name}; read by its VMs only",
        tags=tags,
        opts=opts,
    )
    role = aws.iam.Role(
        part(name, "role"),
        assume_role_policy=ASSUME_ROLE_POLICY,
        description=f"gh-runners pool {name}: read its credential, finish its own lifecycle hook",
        tags=tags,
        opts=opts,
    )
    document = pulumi.Output.all(account.partition, account.account_id, parameter.arn, agent_objects).apply(
        lambda values: json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": policy_statements(
                    partition=values[0],
                    account_id=values[1],
                    region=site.region,
                    parameter_arn=values[2],
                    group_name=site.group_name,
                    session_manager=pool.ssm_session_manager,
                    on_demand=pool.on_demand,
                    agent_objects=values[3],
                ),
            },
            sort_keys=True,
        )
    )
    policy = aws.iam.RolePolicy(
        part(name, "policy"),
        # Named after the group, so a new group name (an upgrade, a renamed
        # project) replaces the grant instead of rewriting it: the old grant
        # is deleted only after the old group, whose draining VMs still need
        # it to read their credential and finish their hook.
        name=fitted(site.group_name, POLICY_NAME_LIMIT),
        role=role.id,
        policy=document,
        opts=opts,
    )
    profile = aws.iam.InstanceProfile(part(name, "profile"), role=role.name, tags=tags, opts=opts)
    return Identity(
        principal=role.arn,
        instance_identity=profile.name,
        secret_id=parameter.arn,
        needed_by_vms=[parameter, policy, profile],
    )
