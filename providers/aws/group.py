"""AWS VM group: the launch template and the Auto Scaling group that keeps the pool's size."""

from __future__ import annotations

import base64
import struct
import zlib

import pulumi
import pulumi_aws as aws

from providers.aws.scaler import scale_up_policy
from providers.base import Identity, Network, Site, VmGroup
from providers.naming import part
from schema.models import AwsPool

# Canonical's public SSM parameters: the newest Ubuntu 24.04 AMI, resolved by
# EC2 at launch -- no data-source call at `pulumi up`, always patched images.
UBUNTU_AMI = "resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/{arch}/hvm/ebs-gp3/ami-id"
UBUNTU_ARCH = {"x64": "amd64", "arm64": "arm64"}
ROOT_DEVICE = "/dev/sda1"  # Ubuntu's root device name on EC2
LIFECYCLE_HOOK = "gh-runners-drain"
# How long the agent waits for a running job when its VM is being terminated;
# the termination hook holds the VM a little longer so the agent can still
# deregister and complete the hook itself. An idle runner goes at once.
DRAIN_SECONDS = 3000
HOOK_TIMEOUT_SECONDS = DRAIN_SECONDS + 600
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
# The group's `initial_lifecycle_hook` is ForceNew in terraform-provider-aws
# (internal/service/autoscaling/group.go): any change to it replaces the
# fixed-name group. It is what closes the launch window, though: with it the
# provider creates the group at size 0, puts the hook, then sets the real size
# (resourceGroupCreate, "twoPhases"), so no VM ever runs before its hook. So it
# stays, frozen exactly as every earlier release created it, and the
# LifecycleHook resource below (PutLifecycleHook on the same name, updated in
# place) owns the live settings. The group never reads hooks back
# (resourceGroupRead), so the two never disagree. Never edit these literals.
FROZEN_INITIAL_HOOK = aws.autoscaling.GroupInitialLifecycleHookArgs(
    name="gh-runners-drain",
    lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
    heartbeat_timeout=3600,
    default_result="CONTINUE",
)
USER_DATA_LIMIT = 16 * 1024  # EC2 rejects larger user data (counted before base64)


# RFC 1952 member header: deflate, no flags, mtime 0, maximum compression, OS Unix.
# Fixed here because gzip.compress writes OS 3 on Python 3.11 but 255 on 3.10 and
# 3.12+ (CPython's Lib/gzip.py), so the user data, and with it every VM through an
# instance refresh, would change with the Python that runs `pulumi up`.
GZIP_HEADER = bytes.fromhex("1f8b0800000000000203")


def packed_user_data(user_data: str) -> bytes:
    """gzip, which cloud-init detects and unpacks: the agent inside is already
    xz-compressed, but the rest (config, unit, setup script) shrinks, leaving
    room for longer setup scripts under EC2's 16 KB. Same bytes every run."""
    data = user_data.encode()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate: the header is ours
    body = deflate.compress(data) + deflate.flush()
    return GZIP_HEADER + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def image_for(pool: AwsPool) -> str:
    return pool.image or UBUNTU_AMI.format(arch=UBUNTU_ARCH[pool.arch])


def build_vm_group(
    pool: AwsPool,
    site: Site,
    network: Network,
    identity: Identity,
    user_data: pulumi.Input[str],
    tags: dict[str, str],
    opts: pulumi.ResourceOptions,
) -> VmGroup:
    name = pool.name
    template = aws.ec2.LaunchTemplate(
        part(name, "template"),
        description=f"gh-runners pool {name}",
        image_id=image_for(pool),
        instance_type=pool.effective_instance_types[0] if not _mixed(pool) else None,
        # Ephemeral runners power the VM off after their job: terminate it and
        # let the group start a fresh one. No API permission is needed for that.
        instance_initiated_shutdown_behavior="terminate",
        iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(name=identity.instance_identity),
        metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled",
            http_tokens="required",  # IMDSv2 only
            # Hop limit 1: a container on the docker bridge is one hop further
            # away and cannot reach the instance credentials.
            http_put_response_hop_limit=1,
            instance_metadata_tags="disabled",
        ),
        block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name=ROOT_DEVICE,
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=pool.disk.size_gb,
                    volume_type=pool.disk.type,
                    encrypted="true",
                    delete_on_termination="true",
                ),
            )
        ],
        network_interfaces=[
            aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                device_index=0,
                associate_public_ip_address="true" if network.public_ip else None,
                security_groups=network.firewall_ids,
                delete_on_termination="true",
            )
        ],
        user_data=pulumi.Output.from_input(user_data).apply(
            lambda text: base64.b64encode(packed_user_data(text)).decode()
        ),
        update_default_version=True,
        tag_specifications=[
            aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=tags)
            for kind in ("instance", "volume", "network-interface")
        ],
        tags=tags,
        opts=opts,
    )
    version = template.latest_version.apply(str)
    group = aws.autoscaling.Group(
        part(name, "asg"),
        name=site.group_name,
        min_size=pool.size.min,
        max_size=pool.size.max,
        desired_capacity=pool.size.desired_count,
        vpc_zone_identifiers=network.subnet_ids,
        launch_template=None
        if _mixed(pool)
        else aws.autoscaling.GroupLaunchTemplateArgs(id=template.id, version=version),
        mixed_instances_policy=_mixed_policy(pool, template.id, version) if _mixed(pool) else None,
        capacity_rebalance=pool.spot,
        protect_from_scale_in=protected_from_scale_in(pool),
        # A new launch template version rolls the group launch-before-terminate:
        # capacity never drops below 100% while old VMs drain their jobs.
        # Protected VMs are refreshed too ("Refresh"; the provider's default
        # "Ignore" would leave a demand pool's VMs on the old template, AWS's
        # "Wait" fails the refresh after an hour), through the drain hook.
        instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
            strategy="Rolling",
            preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                min_healthy_percentage=100,
                max_healthy_percentage=200,
                skip_matching=True,
                scale_in_protected_instances="Refresh",
            ),
        ),
        instance_maintenance_policy=aws.autoscaling.GroupInstanceMaintenancePolicyArgs(
            min_healthy_percentage=100, max_healthy_percentage=200
        ),
        initial_lifecycle_hooks=[FROZEN_INITIAL_HOOK],
        # "0" skips the provider's capacity waiting (pulumi_aws Group
        # `wait_for_capacity_timeout`: 'Setting this to "0" causes the provider
        # to skip all Capacity Waiting behavior'): a short spot supply must not
        # fail `pulumi up` while the group itself is fine and keeps trying.
        wait_for_capacity_timeout="0",
        tags=[
            aws.autoscaling.GroupTagArgs(key=key, value=value, propagate_at_launch=True)
            for key, value in sorted(tags.items())
        ],
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                ignore_changes=runtime_owned(pool),
                depends_on=[*identity.needed_by_vms, *network.egress],
                # Deleting the group waits for every VM to pass its termination
                # hook; the provider's default 10 minutes would cut a drain short.
                custom_timeouts=pulumi.CustomTimeouts(delete=f"{HOOK_TIMEOUT_SECONDS // 60 + 10}m"),
            ),
        ),
    )
    aws.autoscaling.LifecycleHook(
        part(name, "drain-hook"),
        name=LIFECYCLE_HOOK,
        autoscaling_group_name=group.name,
        lifecycle_transition=TERMINATING,
        heartbeat_timeout=HOOK_TIMEOUT_SECONDS,
        default_result="CONTINUE",
        opts=pulumi.ResourceOptions.merge(
            opts,
            # The hook goes with its group: deleting it first on `pulumi
            # destroy` would let the group kill busy VMs without a drain.
            pulumi.ResourceOptions(deleted_with=group),
        ),
    )
    for i, schedule in enumerate(pool.schedules):
        min_size, max_size, desired = scheduled_sizes(pool, schedule.desired)
        aws.autoscaling.Schedule(
            part(name, f"schedule-{i}"),
            scheduled_action_name=f"{name}-{i}",
            autoscaling_group_name=group.name,
            recurrence=schedule.cron,
            time_zone=schedule.time_zone,
            min_size=min_size,
            max_size=max_size,
            desired_capacity=desired,
            opts=opts,
        )
    if pool.on_demand:
        # What the receiver executes for each queued job (providers/aws/scaler.py).
        scale_up_policy(name, group, opts)
    return VmGroup(name=group.name, id=group.arn)


def protected_from_scale_in(pool: AwsPool) -> bool:
    """Whether the group's VMs are protected from the scale-in AWS itself starts.

    Demand pools: every VM, from launch. Only its own agent removes a VM, when
    its job is done or it is idle above the floor, through
    TerminateInstanceInAutoScalingGroup, which protection does not stop; so a
    lowered desired capacity (by hand, a lowered `max`) never makes AWS pick a
    busy VM: the group stays above it until VMs leave by themselves ("Could not
    scale to desired capacity because all remaining instances are protected").
    Group-wide instead of SetInstanceProtection around each job: no API call per
    job and no window between a job's start and its protection. Protection does
    not stop health-check replacement, spot interruptions or EC2
    TerminateInstances (a VM's own power-off); the drain hook and the agent
    cover those. https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html

    Fixed pools stay unprotected: their schedules scale them in, and the drain
    hook holds a busy VM that AWS picks.

    terraform-provider-aws internal/service/autoscaling/group.go: the attribute
    is Optional, Default false, not ForceNew; resourceGroupUpdate sends it as
    NewInstancesProtectedFromScaleIn in UpdateAutoScalingGroup, so switching a
    pool between demand and fixed updates its group in place. AWS applies it to
    VMs launched afterwards.
    """
    return pool.on_demand


def runtime_owned(pool: AwsPool) -> list[str] | None:
    """Group inputs that the runtime moves and `pulumi up` must never set back.

    - desired_capacity of a demand pool: the receiver's +1 policy grows it and
      VMs that leave lower it; a restored value would drop or add VMs at random.
    - desired and min of a scheduled pool: the scheduled actions move them; a
      restored min would scale a night-time 0 back up.
    A fixed pool without schedules keeps both under Pulumi: its size is the file's.
    """
    owned = []
    if pool.on_demand or pool.schedules:
        owned.append("desired_capacity")
    if pool.schedules:
        owned.append("min_size")
    return owned or None


def scheduled_sizes(pool: AwsPool, desired: int) -> tuple[int, int, int]:
    """(min, max, desired) one scheduled action sets when it fires.

    Fixed pools: the group runs exactly `desired`; lowering desired below min
    is refused by AWS, so a night-time 0 lowers min with it and a morning
    schedule restores the pool's min.

    Demand pools: only the floor moves. A raised MinSize above the current
    size raises DesiredCapacity with it (AWS: "If you specify a new value for
    MinSize without specifying a value for DesiredCapacity, and the new
    MinSize is larger than the current size of the group, we implicitly call
    SetDesiredCapacity to set the size of the group to the new value of
    MinSize", https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_UpdateAutoScalingGroup.html;
    a scheduled action applies its sizes the same way,
    https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-scheduled-scaling.html).
    A lowered floor leaves desired alone: the VMs above it are busy or idle,
    and each leaves by itself when its job is done or its idle timeout passes
    -- a lowered desired would have AWS pick VMs to terminate.

    desired_capacity -1 is the provider's "leave it out of the action"
    (terraform-provider-aws internal/service/autoscaling/schedule.go,
    resourceSchedulePut): the attribute is Optional+Computed, so leaving it
    unset would send DesiredCapacity 0 on create.
    """
    if pool.on_demand:
        return desired, pool.size.max, -1
    return min(pool.size.min, desired), pool.size.max, desired


def _mixed(pool: AwsPool) -> bool:
    return pool.spot or len(pool.effective_instance_types) > 1


def _mixed_policy(
    pool: AwsPool, template_id: pulumi.Output[str], version: pulumi.Output[str]
) -> aws.autoscaling.GroupMixedInstancesPolicyArgs:
    return aws.autoscaling.GroupMixedInstancesPolicyArgs(
        launch_template=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateArgs(
            launch_template_specification=aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateLaunchTemplateSpecificationArgs(
                launch_template_id=template_id, version=version
            ),
            overrides=[
                aws.autoscaling.GroupMixedInstancesPolicyLaunchTemplateOverrideArgs(instance_type=instance_type)
                for instance_type in pool.effective_instance_types
            ],
        ),
        instances_distribution=aws.autoscaling.GroupMixedInstancesPolicyInstancesDistributionArgs(
            on_demand_base_capacity=pool.on_demand_base,
            on_demand_percentage_above_base_capacity=0 if pool.spot else 100,
            spot_allocation_strategy="price-capacity-optimized",
            on_demand_allocation_strategy="prioritized",
        ),
    )
