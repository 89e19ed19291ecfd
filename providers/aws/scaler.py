"""AWS receiver: the Lambda that grows Auto Scaling groups on `workflow_job` webhooks.

One per stack that has AWS pools, in the region of the first AWS pool:

- the function (Python runtime, which ships boto3: the code is the receiver's
  package as source, no dependency download at deploy time) with its own log
  group and a role that may do exactly what the receiver does;
- a function URL with auth type NONE -- GitHub cannot sign AWS requests; the
  receiver checks the webhook's HMAC signature before it parses anything;
- an EventBridge rule that invokes the same function every few minutes for the
  reconcile that repairs lost webhooks;
- its two secrets as SSM SecureStrings: the webhook's HMAC secret and a copy of
  the GitHub credential for the reconcile.

Every AWS group gets a +1 simple scaling policy (`scale_up_policy`): the
receiver calls ExecutePolicy on it, so a scale-up is one atomic, server-side
change that AWS caps at the group's MaxSize -- no read-modify-write between
concurrent deliveries.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from providers.aws.identity import Account, ssm_decrypt_statement
from providers.naming import part
from providers.scaling import (
    RECONCILE_SECONDS,
    SCALE_UP_POLICY,
    SecretRef,
    code_archive,
    code_files,
    receiver_name,
)

RECEIVER_TYPE = "ghrunners:aws:Receiver"  # part of every URN: never rename without aliases
# The receiver's AWS entry point (scaler/aws.py) and the runtime it runs on.
# Python runtimes on Lambda include boto3
# (https://docs.aws.amazon.com/lambda/latest/dg/lambda-python.html).
HANDLER = "scaler.aws.handler"
HANDLER_FILE = "scaler/aws.py"
RUNTIME = "python3.13"
ARCHITECTURE = "arm64"  # Graviton: the same code, about 20 % cheaper per GB-second
MEMORY_MB = 256  # CPU scales with memory: a cold start (boto3 import) stays well under GitHub's 10 s
# A webhook is answered in well under a second; the reconcile may make up to
# its request budget of GitHub calls, so the function may run longer than a
# delivery waits.
TIMEOUT_SECONDS = 120
LOG_RETENTION_DAYS = 30


@dataclass(frozen=True)
class AwsReceiverNames:
    """The receiver's fixed cloud names (everything else is auto-named by Pulumi)."""

    webhook_parameter: str
    credential_parameter: str

    @classmethod
    def of(cls, project: str, stack: str) -> AwsReceiverNames:
        # SSM names are regional and `name` is ForceNew: the receiver moves
        # region only with a new provider, where the same name is free.
        root = f"/gh-runners/{receiver_name(project, stack, 'receiver', 200)}"
        return cls(webhook_parameter=f"{root}/webhook-secret", credential_parameter=f"{root}/github-credential")

    def refs(self, region: str) -> tuple[SecretRef, SecretRef]:
        """(webhook secret, GitHub credential) as the receiver's configuration names them."""
        return SecretRef(self.webhook_parameter, region), SecretRef(self.credential_parameter, region)


def group_arn(partition: str, account_id: str, region: str, group: str) -> str:
    return f"arn:{partition}:autoscaling:{region}:{account_id}:autoScalingGroup:*:autoScalingGroupName/{group}"


def policy_statements(
    *,
    partition: str,
    account_id: str,
    region: str,
    groups: Sequence[tuple[str, str]],
    parameter_arns: Sequence[str],
    log_group: str,
) -> list[dict[str, Any]]:
    """What the receiver's role may do -- and nothing more.

    `groups` are (region, name) of every AWS group of the stack: the receiver
    may grow exactly those. Plain values in, plain JSON out, so the tests and
    the policy linter read the document the role gets.
    """
    log_group_arn = f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group}"
    grow = [
        {
            # ExecutePolicy is scoped by the group ARN
            # (https://docs.aws.amazon.com/autoscaling/ec2/userguide/control-access-using-iam.html).
            "Sid": "GrowOwnGroups",
            "Effect": "Allow",
            "Action": ["autoscaling:ExecutePolicy"],
            "Resource": sorted({group_arn(partition, account_id, where, name) for where, name in groups}),
        }
    ]
    return [
        *(grow if groups else []),  # IAM refuses a statement without resources
        {
            # The reconcile compares queued jobs with each group's capacity.
            # Describe* actions of Auto Scaling take no resource-level
            # permissions: "*" is the only form AWS accepts; read-only.
            "Sid": "ReadGroupCapacity",
            "Effect": "Allow",
            "Action": ["autoscaling:DescribeAutoScalingGroups"],
            "Resource": ["*"],
        },
        {
            "Sid": "ReadOwnSecrets",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": sorted(parameter_arns),
        },
        ssm_decrypt_statement(
            "DecryptOnlyThroughSsmForThoseParameters", partition, region, account_id, sorted(parameter_arns)
        ),
        {
            # Its own log group only; the group exists before the function, so
            # no logs:CreateLogGroup. `group:*` is the form AWS documents for
            # both actions (https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html);
            # the explicit log-stream form is what the IAM reference (and the
            # linter) name for PutLogEvents -- the first already covers it.
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [f"{log_group_arn}:*", f"{log_group_arn}:log-stream:*"],
        },
    ]


ASSUME_ROLE_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)


def scale_up_policy(
    pool_name: str, group: aws.autoscaling.Group, opts: pulumi.ResourceOptions
) -> aws.autoscaling.Policy:
    """The pool group's +1 policy the receiver executes for each queued job.

    Simple scaling with ChangeInCapacity 1: AWS applies it to the group's
    current desired capacity itself and never past MaxSize, so concurrent
    deliveries each add one without reading the size first. The receiver calls
    it with HonorCooldown=False; a zero cooldown says the same for anyone else.
    """
    return aws.autoscaling.Policy(
        part(pool_name, "scale-up"),
        name=SCALE_UP_POLICY,
        autoscaling_group_name=group.name,
        policy_type="SimpleScaling",
        adjustment_type="ChangeInCapacity",
        scaling_adjustment=1,
        cooldown=0,
        opts=opts,
    )


class AwsReceiver(pulumi.ComponentResource):
    """The stack's AWS receiver; `url` is what the GitHub webhook points at."""

    url: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        document_text: str,
        region: str,
        names: AwsReceiverNames,
        groups: Sequence[tuple[str, str]],
        account: Account,
        webhook_secret: pulumi.Input[str],
        credential: pulumi.Input[str],
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
        package: Path | None = None,  # the receiver's package; tests pass a stand-in
    ) -> None:
        super().__init__(RECEIVER_TYPE, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        files = code_files(document_text, required=[HANDLER_FILE, "scaler/config.py"], package=package)

        secrets = [
            aws.ssm.Parameter(
                part(name, what),
                name=parameter,
                type="SecureString",
                value=value,  # a Pulumi secret: encrypted in state, never shown
                description=f"gh-runners receiver: {description}",
                tags=dict(tags),
                opts=child,
            )
            for what, parameter, value, description in (
                ("webhook-secret", names.webhook_parameter, webhook_secret, "HMAC secret of the GitHub webhook"),
                ("credential", names.credential_parameter, credential, "GitHub credential for the reconcile"),
            )
        ]
        logs = aws.cloudwatch.LogGroup(
            part(name, "logs"), retention_in_days=LOG_RETENTION_DAYS, tags=dict(tags), opts=child
        )
        role = aws.iam.Role(
            part(name, "role"),
            assume_role_policy=ASSUME_ROLE_POLICY,
            description="gh-runners receiver: grow the stack's groups, read its two secrets, write its logs",
            tags=dict(tags),
            opts=child,
        )
        document = pulumi.Output.all(
            account.partition, account.account_id, logs.name, *[secret.arn for secret in secrets]
        ).apply(
            lambda values: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": policy_statements(
                        partition=values[0],
                        account_id=values[1],
                        region=region,
                        groups=groups,
                        parameter_arns=values[3:],
                        log_group=values[2],
                    ),
                },
                sort_keys=True,
            )
        )
        policy = aws.iam.RolePolicy(part(name, "policy"), role=role.id, policy=document, opts=child)
        function = aws.lambda_.Function(
            part(name, "function"),
            description="gh-runners receiver: workflow_job webhooks and the scheduled reconcile",
            role=role.arn,
            runtime=RUNTIME,
            handler=HANDLER,
            architectures=[ARCHITECTURE],
            code=code_archive(files),
            memory_size=MEMORY_MB,
            timeout=TIMEOUT_SECONDS,
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=logs.name),
            tags=dict(tags),
            # Its permissions and log group exist before its first invocation.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[policy, logs, *secrets]),
        )
        url = aws.lambda_.FunctionUrl(
            part(name, "url"), function_name=function.name, authorization_type="NONE", opts=child
        )
        # Auth type NONE still needs the function's resource policy to let
        # anyone in; since October 2025 a new URL needs both statements:
        # InvokeFunctionUrl, and InvokeFunction limited to calls through the URL
        # (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html). Neither
        # lets anyone invoke the function directly with an event of their own.
        aws.lambda_.Permission(
            part(name, "url-invoke"),
            function=function.name,
            action="lambda:InvokeFunctionUrl",
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
        aws.lambda_.Permission(
            part(name, "url-invoke-function"),
            function=function.name,
            action="lambda:InvokeFunction",
            principal="*",
            invoked_via_function_url=True,
            opts=child,
        )
        rule = aws.cloudwatch.EventRule(
            part(name, "reconcile"),
            description="gh-runners receiver: reconcile queued jobs with capacity",
            schedule_expression=f"rate({RECONCILE_SECONDS // 60} minutes)",
            tags=dict(tags),
            opts=child,
        )
        aws.lambda_.Permission(
            part(name, "reconcile-invoke"),
            function=function.name,
            action="lambda:InvokeFunction",
            principal="events.amazonaws.com",
            source_arn=rule.arn,  # this rule only, not any rule of any account
            opts=child,
        )
        aws.cloudwatch.EventTarget(part(name, "reconcile-target"), rule=rule.name, arn=function.arn, opts=child)

        self.url = url.function_url
        self.function_name = function.name
        self.register_outputs(
            {"url": self.url, "functionName": function.name, "webhookSecret": names.webhook_parameter}
        )
