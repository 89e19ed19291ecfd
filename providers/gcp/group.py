"""GCP VM group: the regional instance template, the regional MIG and, for fixed pools, its autoscaler."""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pulumi
import pulumi_gcp as gcp

from providers.base import Identity, Network, PoolProblem, VmGroup
from providers.gcp import GcpNames
from providers.naming import part
from schema.models import GcpPool, Schedule

UBUNTU_IMAGE = "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-{arch}"
UBUNTU_ARCH = {"x64": "amd64", "arm64": "arm64"}
# IAM decides what the VM identity may do; the OAuth scope only has to let those
# calls through. Narrower scopes would not narrow anything the IAM grants allow.
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
MIN_SCHEDULE_SECONDS = 300  # GCP's lower bound for a scaling schedule's duration_sec

# The shutdown windows: how long a VM has, from the ACPI shutdown signal that
# makes systemd stop the agent, until GCE powers it off.
# - Standard VMs: graceful shutdown (scheduling.gracefulShutdown, preview) for
#   up to one hour, GCP's maximum (maxDuration.seconds: 1..3600, pulumi_gcp
#   RegionInstanceTemplateSchedulingGracefulShutdownMaxDurationArgs). MIG
#   deletions -- a template roll, a scale-in, deleting the group -- honour it
#   unless the caller passes noGracefulShutdown (REST regionInstanceGroupManagers
#   .delete / .deleteInstances), which nothing here does.
# - Spot VMs: a preemption gives 30 s whatever the template says (Compute Engine
#   "Preemption process"), and the agent cannot tell a preemption from a MIG
#   deletion, so spot templates ask for no graceful shutdown and spot drains fit 30 s.
GRACEFUL_SHUTDOWN_SECONDS = 3600
SPOT_SHUTDOWN_SECONDS = 30
SHUTDOWN_WINDOW_SECONDS = {"standard": GRACEFUL_SHUTDOWN_SECONDS, "spot": SPOT_SHUTDOWN_SECONDS}
# Deleting a group waits for its VMs' graceful shutdown; the provider's default
# delete timeout is 15 minutes (resource_compute_region_instance_group_manager.go, Timeouts).
GROUP_DELETE_TIMEOUT = f"{GRACEFUL_SHUTDOWN_SECONDS // 60 + 15}m"


def image_for(pool: GcpPool) -> str:
    return pool.image or UBUNTU_IMAGE.format(arch=UBUNTU_ARCH[pool.arch])


def build_vm_group(
    pool: GcpPool,
    project: str,
    region: str,
    names: GcpNames,
    network: Network,
    identity: Identity,
    user_data: pulumi.Input[str],
    labels: dict[str, str],
    zone_count: pulumi.Input[int],
    machine_type: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> VmGroup:
    name = pool.name
    template = gcp.compute.RegionInstanceTemplate(
        part(name, "template"),
        # A prefix, not a name: a changed template is a new one, created before
        # the old is deleted, so the group always has a template to roll to.
        name_prefix=names.template_prefix,
        project=project,
        region=region,
        description=f"gh-runners pool {name}",
        machine_type=machine_type,  # pool.effective_machine_type, checked against the zones (backend.py)
        disks=[
            gcp.compute.RegionInstanceTemplateDiskArgs(
                boot=True,
                auto_delete=True,  # every recycled VM starts from a fresh disk
                source_image=image_for(pool),
                disk_size_gb=pool.disk.size_gb,
                disk_type=pool.effective_disk_type,
                labels=labels,
            )
        ],
        network_interfaces=[
            # No access_configs: no external IP. Egress goes through Cloud NAT.
            gcp.compute.RegionInstanceTemplateNetworkInterfaceArgs(
                subnetwork=pulumi.Output.from_input(network.subnet_ids).apply(lambda ids: ids[0]),
                stack_type="IPV4_ONLY",
            )
        ],
        service_account=gcp.compute.RegionInstanceTemplateServiceAccountArgs(
            email=identity.instance_identity, scopes=SCOPES
        ),
        # Ubuntu's GCE images are UEFI images with signed shim/kernel: Secure Boot works.
        shielded_instance_config=gcp.compute.RegionInstanceTemplateShieldedInstanceConfigArgs(
            enable_secure_boot=True, enable_vtpm=True, enable_integrity_monitoring=True
        ),
        metadata={
            # cloud-init on Ubuntu's GCE images reads its user data from this key.
            "user-data": user_data,
            "enable-oslogin": "TRUE",  # SSH (IAP only, when enabled) through IAM, never keys in metadata
            "block-project-ssh-keys": "TRUE",
            # Only the v1 metadata endpoint, which insists on the Metadata-Flavor header.
            "disable-legacy-endpoints": "TRUE",
        },
        scheduling=_scheduling(pool),
        labels=labels,
        tags=[names.tag],  # the firewall rules target the pool by this tag
        opts=opts,
    )
    group = gcp.compute.RegionInstanceGroupManager(
        part(name, "group"),
        name=names.group,
        base_instance_name=names.base_instance,
        project=project,
        region=region,
        description=f"gh-runners pool {name}",
        versions=[
            gcp.compute.RegionInstanceGroupManagerVersionArgs(name="runners", instance_template=template.self_link)
        ],
        # The size is set here once, when the group is created; from then on
        # the runtime owns it (ignore_changes below): a fixed pool's
        # autoscaler, or a demand pool's receiver and its VMs. A target_size
        # that Pulumi changes later is a `resize` call, which GCE refuses with
        # 412 on a group that still has an autoscaler -- as when schedules are
        # removed and the autoscaler, deleted last, still exists
        # (terraform-google-modules/terraform-google-vm#64).
        target_size=pool_floor(pool),
        distribution_policy_zones=list(pool.zones) or None,
        # BALANCED prefers zones with capacity (spot, Arm) and still spreads;
        # unlike EVEN it never deletes VMs (possibly busy) to rebalance zones.
        distribution_policy_target_shape="BALANCED",
        update_policy=gcp.compute.RegionInstanceGroupManagerUpdatePolicyArgs(
            type="PROACTIVE",
            minimal_action="REPLACE",
            most_disruptive_allowed_action="REPLACE",
            replacement_method="SUBSTITUTE",
            # New VMs first, then the old ones go: capacity never drops. A
            # regional MIG wants a fixed surge of at least its zone count; when
            # GCP picks the zones, the region's zone count bounds what it picks.
            max_surge_fixed=zone_count,
            max_unavailable_fixed=0,
            instance_redistribution_type="NONE",
        ),
        # An ephemeral runner powers its VM off after one job. A VM stopped from
        # inside the guest counts as failed (not a MIG action), and REPAIR makes
        # the MIG recreate it -- from the current template, thanks to
        # force_update_on_repair. REPAIR is GCP's default; it is stated here
        # because the whole recycle depends on it.
        instance_lifecycle_policy=gcp.compute.RegionInstanceGroupManagerInstanceLifecyclePolicyArgs(
            default_action_on_failure="REPAIR",
            force_update_on_repair="YES",
        ),
        wait_for_instances=False,
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                depends_on=[*identity.needed_by_vms, *network.egress],
                # Pulumi keeps the stored target_size (or none, for a group an
                # earlier version made without one): it never resizes the group.
                # The size is the runtime's: the autoscaler below (fixed pools),
                # or createInstances from the receiver and deleteInstances from
                # VMs that leave (demand pools), with nothing to undo here.
                ignore_changes=["targetSize"],
                custom_timeouts=pulumi.CustomTimeouts(delete=GROUP_DELETE_TIMEOUT),
            ),
        ),
    )
    if pool.on_demand:
        # No autoscaler: it would fight the receiver. An autoscaler owns the
        # group's size and moves it to its own recommendation (min_replicas,
        # schedules, CPU), so it would delete the VMs createInstances adds
        # above that -- busy runners among them. The floor
        # (min, moved by schedules) is kept by the receiver's reconcile.
        # Dropping the autoscaler of a pool that had one (an earlier release,
        # or `scaling: fixed` removed) resizes nothing: the group's target_size
        # stays ignored, and the autoscaler, deleted last, leaves the group at
        # the size it last set (tests/gcp/test_upgrade.py).
        return VmGroup(name=group.name, id=group.id)
    # A fixed pool has an autoscaler, schedules or not: its size moves only
    # through it, so adding or removing schedules, or changing the size, is an
    # update of this one resource and never a resize of an autoscaled group.
    schedules = scaling_schedules(pool)
    gcp.compute.RegionAutoscaler(
        part(name, "autoscaler"),
        project=project,
        region=region,
        target=group.id,
        description=f"gh-runners pool {name}: its size, moved by its schedules",
        autoscaling_policy=gcp.compute.RegionAutoscalerAutoscalingPolicyArgs(
            min_replicas=pool_floor(pool),
            max_replicas=pool.size.max,
            mode="ON",
            # The schedules are the only signal. Left at its 0.6 default, the
            # CPU signal would add VMs under load and delete VMs -- busy
            # runners among them -- whenever the load drops. A target of 1.0
            # (the maximum) never asks for more VMs than run at full load, so
            # CPU adds none, and it cannot go below the floor.
            cpu_utilization=gcp.compute.RegionAutoscalerAutoscalingPolicyCpuUtilizationArgs(target=1.0),
            scaling_schedules=[
                gcp.compute.RegionAutoscalerAutoscalingPolicyScalingScheduleArgs(
                    name=window.name,
                    schedule=window.cron,
                    time_zone=window.time_zone,
                    duration_sec=window.duration_sec,
                    min_required_replicas=window.replicas,
                    description=window.description,
                )
                for window in schedules
            ],
        ),
        opts=opts,
    )
    return VmGroup(name=group.name, id=group.id)


def _scheduling(pool: GcpPool) -> gcp.compute.RegionInstanceTemplateSchedulingArgs:
    if pool.spot:
        # GCP's rules for SPOT: preemptible, no automatic restart, terminate on
        # host maintenance. DELETE on preemption: the MIG then recreates the VM.
        # No graceful shutdown: see SHUTDOWN_WINDOW_SECONDS.
        return gcp.compute.RegionInstanceTemplateSchedulingArgs(
            provisioning_model="SPOT",
            preemptible=True,
            automatic_restart=False,
            on_host_maintenance="TERMINATE",
            instance_termination_action="DELETE",
        )
    # Standard VMs keep GCP's defaults (live migration where the machine series
    # has it, automatic restart after a host failure). No max_run_duration: a
    # persistent runner lives until it is replaced. Graceful shutdown gives a
    # VM that the group deletes (template roll, scale-in, destroy) the time to
    # finish a running job, as the termination hook does on AWS.
    return gcp.compute.RegionInstanceTemplateSchedulingArgs(
        provisioning_model="STANDARD",
        automatic_restart=True,
        graceful_shutdown=gcp.compute.RegionInstanceTemplateSchedulingGracefulShutdownArgs(
            enabled=True,
            max_duration=gcp.compute.RegionInstanceTemplateSchedulingGracefulShutdownMaxDurationArgs(
                seconds=GRACEFUL_SHUTDOWN_SECONDS
            ),
        ),
    )


# --- schedules -> autoscaler scaling schedules ----------------------------------
#
# A pool schedule says "from each time `cron` fires, run `desired` VMs"; the pool
# keeps that size until another schedule with a different size fires. GCP's
# autoscaler instead takes a floor (min_replicas) and windows, each raising the
# floor to `min_required_replicas` for `duration_sec` from each time its cron
# fires. So: the floor is the smallest size any schedule (or size.min) asks for;
# every schedule above it becomes a window lasting until the size next changes.
# GCP has one duration per window, so that time must be the same after every
# firing; it is worked out by walking the schedules over a week or a year.
#
# Daylight saving time: GCP starts a window when its cron fires on the wall
# clock of its time_zone, but duration_sec counts elapsed seconds. A window
# from 20:00 to 06:00 Berlin time lasts 10 h of wall clock and 9 h or 11 h of
# real time on the nights the clocks change. The wall-clock length must be the
# same after every firing (what the user wrote); the window then lasts the
# longest real time any firing in a year needs, so it never ends before the
# size changes -- on the nights the clocks go forward it keeps the larger size
# one hour longer (cost, never a missing runner).


@dataclass(frozen=True)
class Window:
    name: str
    cron: str
    time_zone: str
    duration_sec: int
    replicas: int
    description: str


def autoscaler_floor(pool: GcpPool) -> int:
    return min([pool.size.min, *(schedule.desired for schedule in pool.schedules)])


def pool_floor(pool: GcpPool) -> int:
    """The size the group never goes below: `desired`, or with schedules the smallest size they ask for."""
    return autoscaler_floor(pool) if pool.schedules else pool.size.desired_count


def scaling_schedules(pool: GcpPool) -> list[Window]:
    """The autoscaler windows of a pool's schedules; PoolProblem where GCP cannot express them."""
    if not pool.schedules:
        return []
    floor = autoscaler_floor(pool)
    durations, elapsed = _window_durations(pool.schedules)
    windows = []
    for i, schedule in enumerate(pool.schedules):
        if schedule.desired <= floor:
            continue  # the floor already holds it
        found = durations[i]
        if not found:
            raise PoolProblem(("schedules", i, "cron"), f"`{schedule.cron}` never fires within a year")
        if len(found) > 1:
            shown = " or ".join(_span(seconds) for seconds in sorted(found)[:2])
            raise PoolProblem(
                ("schedules", i),
                f"the pool would stay at {schedule.desired} for {shown} after `{schedule.cron}` fires, depending on "
                "the day; GCP's autoscaler schedules need one fixed duration. Add a schedule that ends the window "
                "at a fixed time after it (for example the same days, with the evening's desired)",
            )
        seconds = found.pop()
        if seconds < MIN_SCHEDULE_SECONDS:
            raise PoolProblem(
                ("schedules", i),
                f"the pool would stay at {schedule.desired} for only {_span(seconds)}; "
                f"GCP's autoscaler schedules last at least {_span(MIN_SCHEDULE_SECONDS)}",
            )
        windows.append(
            Window(
                name=f"schedule-{i}",
                cron=gcp_cron(schedule.cron),
                time_zone=schedule.time_zone,
                duration_sec=elapsed[i],
                replicas=schedule.desired,
                description=f"gh-runners: {schedule.desired} VMs from `{schedule.cron}` ({schedule.time_zone})",
            )
        )
    return windows


# Fixed, ordinary spans, so the answer never depends on the day `pulumi up` runs:
# firings are measured over one span, and followed to a later horizon to see
# where the last of them ends. Schedules on every day of every month, in one
# time zone, repeat weekly on their wall clock: a week tells all. Anything else
# (days of the month, months, several zones) is walked over a whole year.
_WEEK = (date(2025, 1, 6), date(2025, 1, 13), date(2025, 1, 27))  # from a Monday
_YEAR = (date(2025, 1, 1), date(2026, 1, 1), date(2027, 1, 1))


def _window_durations(schedules: Sequence[Schedule]) -> tuple[list[set[int]], list[int]]:
    """Per schedule, every distinct time (seconds, on its own wall clock) its size lasts,
    and the longest real (elapsed) time any of its firings in a year lasts."""
    weekly = len({s.time_zone for s in schedules}) == 1 and all(s.cron.split()[2:4] == ["*", "*"] for s in schedules)
    first, measured_end, horizon = _WEEK if weekly else _YEAR
    events: list[tuple[datetime, int]] = []  # (UTC instant, schedule index)
    for i, schedule in enumerate(schedules):
        events += [(instant, i) for instant in _firings(schedule, first, horizon)]
    events.sort()
    for (when, i), (other_when, j) in itertools.pairwise(events):
        if when == other_when and schedules[i].desired != schedules[j].desired:
            raise PoolProblem(
                ("schedules", max(i, j)),
                f"fires at the same time as schedules[{min(i, j)}] ({when:%Y-%m-%d %H:%M} UTC) "
                "with a different desired",
            )
    sizes = [schedules[i].desired for _, i in events]
    # next_change[k]: the first event after k that sets a different size.
    next_change: list[int | None] = [None] * len(events)
    for k in range(len(events) - 2, -1, -1):
        next_change[k] = k + 1 if sizes[k + 1] != sizes[k] else next_change[k + 1]
    uniform = len(set(sizes)) <= 1
    own = [[when for when, i in events if i == index] for index in range(len(schedules))]
    start = datetime.combine(first, datetime.min.time(), timezone.utc)
    end = datetime.combine(measured_end, datetime.min.time(), timezone.utc)
    durations: list[set[int]] = [set() for _ in schedules]
    elapsed = [0 for _ in schedules]
    for k, (when, i) in enumerate(events):
        if not start <= when < end:
            continue
        change = next_change[k]
        if change is not None:
            until = events[change][0]
        elif uniform:
            # Every schedule sets the same size: the window only has to reach
            # this schedule's own next firing.
            later = bisect.bisect_right(own[i], when)
            if later == len(own[i]):
                continue
            until = own[i][later]
        else:
            continue  # the change lies past the horizon: only for firings after the measured span
        zone = ZoneInfo(schedules[i].time_zone)
        # Measured on the schedule's wall clock, as GCP reads its cron: a window
        # spanning a DST change is still "20:00 to 08:00".
        local_start = when.astimezone(zone).replace(tzinfo=None)
        wall = until.astimezone(zone).replace(tzinfo=None) - local_start
        durations[i].add(int(wall.total_seconds()))
        # A weekly walk measured one January week: replay the same wall-clock
        # window on every week of the year to meet both DST changes.
        weeks = range(53) if weekly else range(1)
        longest = max(_elapsed(local_start + timedelta(weeks=k), wall, zone) for k in weeks)
        elapsed[i] = max(elapsed[i], int(longest.total_seconds()))
    return durations, elapsed


def _elapsed(local_start: datetime, wall: timedelta, zone: ZoneInfo) -> timedelta:
    """Real time between two wall-clock readings `wall` apart in `zone`."""
    start = local_start.replace(tzinfo=zone).astimezone(timezone.utc)
    end = (local_start + wall).replace(tzinfo=zone).astimezone(timezone.utc)
    return end - start


def _firings(schedule: Schedule, first: date, stop: date) -> Iterator[datetime]:
    minutes, hours, days, months, weekdays = (
        _expand(text, low, high, names) for text, (low, high, names) in zip(schedule.cron.split(), _FIELDS, strict=True)
    )
    weekdays = {day % 7 for day in weekdays}  # 7 is Sunday too
    dom_field, dow_field = schedule.cron.split()[2:5:2]
    # Vixie cron: when both day fields are restricted, a day matching either fires.
    either = not (dom_field.startswith("*") or dow_field.startswith("*"))
    zone = ZoneInfo(schedule.time_zone)
    day = first
    while day < stop:
        if day.month in months:
            in_month, in_week = day.day in days, (day.weekday() + 1) % 7 in weekdays
            if (in_month or in_week) if either else (in_month and in_week):
                for hour in sorted(hours):
                    for minute in sorted(minutes):
                        local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                        yield local.astimezone(timezone.utc)
        day += timedelta(days=1)


_MONTHS = {
    name: i + 1
    for i, name in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))
}
_DAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (1, 12, _MONTHS),
    (0, 7, _DAYS),
)


def _expand(text: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    """One cron field (already validated by the schema) as the set of its values."""
    values: set[int] = set()
    for item in text.lower().split(","):
        span, _, step = item.partition("/")
        if span == "*":
            first, last = low, high
        else:
            bounds = [names[b] if b in names else int(b) for b in span.split("-")]
            first = bounds[0]
            last = bounds[1] if len(bounds) == 2 else (high if step else first)
        values.update(range(first, last + 1, int(step) if step else 1))
    return values


def gcp_cron(expression: str) -> str:
    """The cron with month and weekday names as numbers (GCP documents numeric unix-cron)."""
    fields = expression.lower().split()
    fields[3] = re.sub(r"[a-z]{3}", lambda match: str(_MONTHS[match.group(0)]), fields[3])
    fields[4] = re.sub(r"[a-z]{3}", lambda match: str(_DAYS[match.group(0)]), fields[4])
    return " ".join(fields)


def _span(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} day{'s' if seconds != 86400 else ''}"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min"
