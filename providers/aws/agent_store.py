"""The AWS VM agent as an S3 object: one private bucket per stack and region, the bundle keyed by its digest.

EC2 takes 16 KB of user data and the agent bundle alone is ~14.5 KB of it; as
an object it costs the user data a small loader (bootstrap/loader.py) and
leaves the room to the pool's setup script. The VM fetches the object with its
role's keys (s3:GetObject on `<bucket>/agent/*` only: providers/aws/identity.py)
and runs it only if its sha256 is the one its user data pins.

The bucket is created once per region, like the shared network, and used by
every AWS pool of the stack there. A changed agent is a new key (`agent/<sha256>.py`):
the key is ForceNew, so the engine creates the new object before the launch
templates move to it, and deletes the old one at the end of the `up`, never
overwriting what a booting VM may be fetching.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from bootstrap.cloud_config import AgentObject, agent_bytes, agent_key, agent_sha256, loader_source

STORE_TYPE = "ghrunners:aws:AgentStore"  # part of every URN: never rename without aliases
AGENT_PREFIX = "agent/"
# S3 bucket names are at most 63 characters (docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html):
# the user data is sized with the widest one, before the real (auto-named) one exists.
WIDEST_BUCKET = "b" * 63


def objects_arn(partition: str, bucket: str) -> str:
    """The ARN of every agent object in `bucket`: what the VMs' role may read, nothing else of the bucket."""
    return f"arn:{partition}:s3:::{bucket}/{AGENT_PREFIX}*"


def tls_only_policy(bucket_arn: str) -> str:
    """Deny every request that does not use TLS (the AWS-documented aws:SecureTransport condition:
    docs.aws.amazon.com/AmazonS3/latest/userguide/security-best-practices.html)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyWithoutTls",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        },
        sort_keys=True,
    )


class AgentStore(pulumi.ComponentResource):
    """The bucket of one region and the AWS agent in it."""

    def __init__(self, region: str, tags: dict[str, str], provider: aws.Provider) -> None:
        name = f"agent-store-{region}"
        super().__init__(STORE_TYPE, name, None, None)
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        # Auto-named (`agents-<region>-<7 hex>`): no fixed name to collide with on a
        # create-before-delete replacement, none claimed in S3's global namespace.
        # force_destroy: `pulumi destroy` empties it and leaves nothing behind.
        # Encryption: S3 applies SSE-S3 to every new object of every bucket since January 2023
        # (docs.aws.amazon.com/AmazonS3/latest/userguide/default-encryption-faq.html); the agent
        # is no secret, so no key of ours.
        self.bucket = aws.s3.Bucket(f"agents-{region}", force_destroy=True, tags=tags, opts=opts)
        access = aws.s3.BucketPublicAccessBlock(
            f"agents-{region}-private",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=opts,
        )
        # One bucket setting at a time: S3 answers concurrent ones with 409 OperationAborted ("A
        # conflicting conditional operation is currently in progress against this resource":
        # hashicorp/terraform-provider-aws#7628 for the policy and the public access block,
        # sevenwestmedia-labs/pulumi-components#46 for the policy and the ownership controls).
        # ACLs off: the bucket owner owns every object, only IAM decides.
        ownership = aws.s3.BucketOwnershipControls(
            f"agents-{region}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[access])),
        )
        policy = aws.s3.BucketPolicy(
            f"agents-{region}-tls-only",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[ownership])),
        )
        loader_source()  # minified now, not inside the apply that renders user data (see there)
        self.sha256 = agent_sha256("aws")
        self.object = aws.s3.BucketObjectv2(
            f"agents-{region}-aws",
            bucket=self.bucket.id,
            key=agent_key("aws"),
            content=agent_bytes("aws").decode(),
            content_type="text/x-python",
            tags=tags,
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[policy])),
        )
        self.region = region
        self.register_outputs({"bucket": self.bucket.id, "agentKey": self.object.key})

    def agent(self) -> pulumi.Output[AgentObject]:
        """The object the VMs fetch, known once it exists: user data built from it depends on the object,
        so a launch template never names an agent that is not uploaded yet."""
        return pulumi.Output.all(self.object.bucket, self.object.key).apply(
            lambda values: AgentObject(bucket=values[0], key=values[1], region=self.region, sha256=self.sha256)
        )

    def widest_agent(self) -> AgentObject:
        """The same with the widest bucket name S3 allows, for the user data size check."""
        return AgentObject(bucket=WIDEST_BUCKET, key=agent_key("aws"), region=self.region, sha256=self.sha256)
