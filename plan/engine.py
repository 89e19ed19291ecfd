"""An in-process recording engine: runs the real Pulumi program under Pulumi's
unit-test mocks and records every resource it registers, with its parent and
which inputs are secret. No CLI, no cloud, no network.

The mocks return what a provider would compute (ids, ARNs, emails, self
links) so that code which consumes those outputs runs for real; they never
decide anything the program decides.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import runpy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.sync_await import _sync_await

SECRET = "[secret]"
_SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"  # Pulumi's wire marker for a secret value
_SIG_KEY = "4dabf18193072939515e22adb298388d"
FAKE_ACCOUNT = "123456789012"


@dataclass
class Recorded:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    dependencies: list[str]  # URNs this resource waits for (and outlives on destroy)
    inputs: dict[str, Any]  # secrets unwrapped: for assertions only
    shown: dict[str, Any]  # secrets replaced by "[secret]": safe to print
    outputs: dict[str, Any] = field(default_factory=dict)
    component_outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: list[str] = field(default_factory=list)  # outputs the resource declares secret
    id: str = ""  # what the provider would return as the resource's id (custom resources)
    # Resource options the engine acts on when it replaces or deletes.
    delete_before_replace: bool = False
    deleted_with: str = ""  # URN: Delete is skipped when that resource goes too
    retain_on_delete: bool = False
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # old URNs this resource may adopt
    replacement_trigger: Any = None  # a value whose change replaces the resource

    @property
    def secret_paths(self) -> list[str]:
        return sorted(_paths_of(self.shown, SECRET))


@dataclass
class Recording:
    resources: list[Recorded]
    stack_outputs: dict[str, Any]
    stack_outputs_shown: dict[str, Any]

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Recorded:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]

    @cached_property
    def _children(self) -> dict[str, list[Recorded]]:
        # Built once: a scan of every resource per lookup made trees quadratic.
        index: dict[str, list[Recorded]] = {}
        for record in self.resources:
            index.setdefault(record.parent, []).append(record)
        return index

    def children_of(self, urn: str) -> list[Recorded]:
        return list(self._children.get(urn, []))

    def descendants_of(self, urn: str) -> list[Recorded]:
        found, frontier = [], [urn]
        while frontier:
            children = [r for parent in frontier for r in self.children_of(parent)]
            found += children
            frontier = [c.urn for c in children]
        return found


def _paths_of(value: Any, target: Any, prefix: str = "") -> Iterator[str]:
    if value == target:
        yield prefix or "."
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths_of(item, target, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths_of(item, target, f"{prefix}[{i}]")


def _plain(value: Any, redact: bool) -> Any:
    """Wire-format properties as plain data: every secret replaced by "[secret]"
    (redact) or by its value (for assertions only); numbers back to ints where
    whole, since protobuf Structs carry every number as a double."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return SECRET if redact else _plain(value.get("value"), redact)
        # Resource references and assets carry the marker key too: keep what they name.
        return {k: _plain(v, redact) for k, v in value.items() if k != _SIG_KEY}
    if isinstance(value, list):
        return [_plain(v, redact) for v in value]
    return value


class CloudMocks(pulumi.runtime.Mocks):
    """What providers would compute for the resources and data sources we use.

    Offline nobody knows which instance types a zone offers: every one asked
    about is offered, except the (type, zone) pairs in `unoffered`, which tests
    use to play a region that lacks one. The plan says this was not checked.
    """

    def __init__(self, unoffered: set[tuple[str, str]] | None = None, local_zone: bool = True) -> None:
        self.provider_inputs: dict[str, dict[str, Any]] = {}
        self.unoffered = unoffered or set()
        self.local_zone = local_zone  # the account opted in to a Local Zone in every region

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        digest = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()
        physical = inputs.get("name") or f"{args.name}-{digest[:7]}"
        outputs: dict[str, Any] = {**inputs, "name": physical}
        package = args.typ.split(":", 1)[0]
        if args.typ.startswith("pulumi:providers:"):
            self.provider_inputs[args.name] = inputs
            return f"{args.name}-provider-id", outputs
        if args.typ in (
            "github:index/actionsRunnerGroup:ActionsRunnerGroup",
            "github:index/enterpriseActionsRunnerGroup:EnterpriseActionsRunnerGroup",
        ):
            # The provider's id for a runner group is GitHub's numeric group id
            # (terraform-provider-github, d.SetId(strconv.FormatInt(runnerGroup.GetID(), 10))).
            return str(_stable_number(f"{args.typ}/{args.name}")), outputs
        if package == "aws":
            region = self._provider_region(args.provider, "us-east-1")
            service = args.typ.split(":")[1].split("/")[0]
            kind = args.typ.rsplit(":", 1)[-1]
            kind = kind[0].lower() + kind[1:]
            # Hierarchical SSM names start with "/", which the ARN drops.
            outputs["arn"] = f"arn:aws:{service}:{region}:{FAKE_ACCOUNT}:{kind}/{str(physical).lstrip('/')}"
            resource_id = {
                "aws:ec2/vpc:Vpc": f"vpc-{digest[:17]}",
                "aws:ec2/subnet:Subnet": f"subnet-{digest[:17]}",
                "aws:ec2/securityGroup:SecurityGroup": f"sg-{digest[:17]}",
                "aws:ec2/launchTemplate:LaunchTemplate": f"lt-{digest[:17]}",
            }.get(args.typ, physical)
            if args.typ == "aws:ec2/launchTemplate:LaunchTemplate":
                outputs["latestVersion"] = 1
            if args.typ == "aws:s3/bucket:Bucket":
                # Auto-named like any other (pulumi-aws autonaming of `bucket`); S3 ARNs name neither
                # region nor account, and the provider's id is the bucket name.
                outputs["bucket"] = resource_id = inputs.get("bucket") or f"{args.name}-{digest[:7]}"
                outputs["arn"] = f"arn:aws:s3:::{resource_id}"
            if args.typ == "aws:lambda/functionUrl:FunctionUrl":
                outputs["functionUrl"] = f"https://{digest[:32]}.lambda-url.{region}.on.aws/"
            return resource_id, outputs
        if package == "gcp":
            project = inputs.get("project", "mock-project")
            outputs["selfLink"] = f"https://www.googleapis.com/compute/v1/projects/{project}/{args.name}/{physical}"
            if args.typ == "gcp:serviceaccount/account:Account":
                outputs["email"] = f"{inputs.get('accountId')}@{project}.iam.gserviceaccount.com"
                outputs["name"] = f"projects/{project}/serviceAccounts/{outputs['email']}"
            if args.typ == "gcp:cloudfunctionsv2/function:Function":
                outputs["url"] = f"https://{inputs.get('location')}-{project}.cloudfunctions.net/{physical}"
            if args.typ == "gcp:secretmanager/secret:Secret":
                outputs["name"] = f"projects/{project}/secrets/{inputs.get('secretId')}"
                return outputs["name"], outputs
            return f"projects/{project}/{physical}", outputs
        if package == "random":
            outputs.update(_random_outputs(args.typ, digest, inputs))
            if args.typ == "random:index/randomId:RandomId":
                return outputs["b64Url"], outputs  # the provider's id is the base64url form
        return f"{args.name}-{digest[:7]}", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:  # type: ignore[override]
        token = args.token
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": FAKE_ACCOUNT,
                "arn": f"arn:aws:iam::{FAKE_ACCOUNT}:user/plan",
                "id": FAKE_ACCOUNT,
                "userId": "PLAN",
            }
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            return self._availability_zones(args)
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            wanted = {spec["name"]: spec["values"] for spec in args.args.get("filters") or []}
            pairs = [
                (kind, zone)
                for kind in wanted.get("instance-type", [])
                for zone in wanted.get("location", [])
                if (kind, zone) not in self.unoffered
            ]
            return {
                "instanceTypes": [kind for kind, _ in pairs],
                "locations": [zone for _, zone in pairs],
                "locationTypes": [args.args.get("locationType", "region")] * len(pairs),
                "id": self._provider_region(args.provider, "us-east-1"),
            }
        if token == "gcp:compute/getZones:getZones":
            region = args.args.get("region") or self._provider_region(args.provider, "us-central1")
            return {"names": [f"{region}-{letter}" for letter in "abc"], "id": region}
        if token == "github:index/getRepository:getRepository":
            full_name = str(args.args.get("fullName"))
            return {"fullName": full_name, "repoId": _stable_number(full_name), "id": full_name}
        if token == "github:index/getOrganization:getOrganization":
            name = str(args.args.get("name"))
            return {"name": name, "login": name, "id": str(_stable_number(name)), "orgs": []}
        raise NotImplementedError(f"the recording engine has no mock for {token}")

    def _availability_zones(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        """A region as DescribeAvailabilityZones shows it to an account that opted in to a
        Local Zone: three standard zones and the Local Zone, which sorts first by name.
        `state` and `filters` (opt-in-status, zone-type, zone-name) apply as in EC2."""
        region = self._provider_region(args.provider, "us-east-1")
        zones = [
            {"zone-name": f"{region}{letter}", "opt-in-status": "opt-in-not-required", "zone-type": "availability-zone"}
            for letter in "abc"
        ]
        if self.local_zone:
            zones.append({"zone-name": f"{region}-lz-1a", "opt-in-status": "opted-in", "zone-type": "local-zone"})
        for spec in args.args.get("filters") or []:
            zones = [zone for zone in zones if zone.get(spec["name"]) in spec["values"]]
        names = [zone["zone-name"] for zone in zones]
        return {
            "names": names,
            "zoneIds": [f"{region[:3]}-az{i}" for i in range(len(names))],
            "id": region,
            "groupNames": [region if z["zone-type"] == "availability-zone" else f"{region}-lz-1" for z in zones],
        }

    def _provider_region(self, provider: str | None, default: str) -> str:
        """The region of the explicit provider a resource or call uses.

        A provider reference is `<provider urn>::<provider id>`; the urn ends in its name."""
        if provider:
            parts = provider.split("::")
            inputs = self.provider_inputs.get(parts[-2] if len(parts) >= 2 else "", {})
            return str(inputs.get("region") or default)
        return default


def _random_outputs(typ: str, digest: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Deterministic stand-ins for the values pulumi-random generates (bytes from the digest)."""
    raw = bytes.fromhex(digest)
    if typ == "random:index/randomBytes:RandomBytes":
        data = raw[: int(inputs.get("length", 32))]
        return {"hex": data.hex(), "base64": base64.b64encode(data).decode()}
    if typ == "random:index/randomId:RandomId":
        data = raw[: int(inputs.get("byteLength", 8))]
        return {
            "hex": data.hex(),
            "b64Std": base64.b64encode(data).decode(),
            "b64Url": base64.urlsafe_b64encode(data).decode().rstrip("="),
            "dec": str(int.from_bytes(data, "big")),
        }
    return {}


def _alias_urn(request: Any, spec: Any) -> str:
    """An alias as the old URN it names (the SDK sends specs: name, type, parent, project, stack)."""
    if spec.urn:
        return str(spec.urn)
    parts = spec.spec
    name = parts.name or request.name
    type_ = parts.type or request.type
    parent = parts.parentUrn if parts.HasField("parentUrn") else ("" if parts.noParent else request.parent)
    if parent:  # the child's type chain continues its parent's, as the monitor builds URNs
        prefix, parent_type = parent.rsplit("::", 2)[0], parent.split("::")[2]
        return f"{prefix}::{parent_type}${type_}::{name}"
    stack, project = parts.stack or pulumi.get_stack(), parts.project or pulumi.get_project()
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


def _stable_number(text: str) -> int:
    """A deterministic fake numeric id (GitHub repository / organization ids)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: CloudMocks) -> None:
        super().__init__(mocks)
        self.records: dict[str, Recorded] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        wire = json_format.MessageToDict(request.object) if request.object else {}
        state = self.resources.get(response.urn)
        self.records[response.urn] = Recorded(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=request.custom,
            provider=request.provider,
            dependencies=list(request.dependencies),
            inputs=_plain(wire, redact=False),
            shown=_plain(wire, redact=True),
            outputs=dict(state.state) if state else {},
            secret_outputs=list(request.additionalSecretOutputs),
            id=str(response.id),
            delete_before_replace=request.deleteBeforeReplace,
            deleted_with=request.deletedWith,
            retain_on_delete=request.retainOnDelete,
            replace_on_changes=list(request.replaceOnChanges),
            ignore_changes=list(request.ignoreChanges),
            aliases=[*request.aliasURNs, *(_alias_urn(request, spec) for spec in request.aliases)],
            replacement_trigger=_plain(json_format.MessageToDict(request.replacement_trigger), redact=False)
            if request.HasField("replacement_trigger")
            else None,
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:
        record = self.records.get(request.urn)
        if record is not None and request.outputs:
            record.component_outputs = _plain(json_format.MessageToDict(request.outputs), redact=True)
        return super().RegisterResourceOutputs(request)


@contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """contextlib.chdir, which Python 3.10 lacks."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def run(
    program: Callable[[], None],
    *,
    config: dict[str, Any],
    secret_keys: Sequence[str] = (),
    project: str = "gh-runners",
    stack: str = "plan",
    mocks: CloudMocks | None = None,
) -> Recording:
    """Run `program` under the recording engine and return what it registered."""
    mocks = mocks or CloudMocks()
    monitor = RecordingMonitor(mocks)
    flat = {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}
    pulumi.runtime.set_all_config(flat, list(secret_keys))
    pulumi_settings.reset_options()  # set_mocks is process-global: start from a clean runtime
    pulumi_mocks.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    pulumi_settings.SETTINGS.rpc_manager.clear()
    pulumi_settings.SETTINGS.outputs.clear()
    root = pulumi.runtime.get_root_resource()
    _sync_await(pulumi.runtime.stack.run_pulumi_func(program))
    outputs = getattr(root, "outputs", {}) or {}
    resolved = {k: _sync_await(pulumi.Output.from_input(v).future(with_unknowns=True)) for k, v in outputs.items()}
    secret_flags = {k: _sync_await(pulumi.Output.from_input(v).is_secret()) for k, v in outputs.items()}
    shown = {k: (SECRET if secret_flags[k] else v) for k, v in resolved.items()}
    return Recording(list(monitor.records.values()), resolved, shown)


def project_name(project_dir: Path) -> str:
    """The `name:` of the project's Pulumi.yaml: the namespace of its own config keys."""
    document = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    return str(document["name"])


def run_project(
    project_dir: Path,
    *,
    config: dict[str, Any],
    secret_keys: Sequence[str] = (),
    stack: str = "plan",
    project: str | None = None,
    mocks: CloudMocks | None = None,
) -> Recording:
    """Run the project's own __main__.py: the exact program `pulumi up` runs.

    `project` defaults to the name in the project's Pulumi.yaml, as with the CLI."""
    project_dir = project_dir.resolve()

    def program() -> None:
        with working_directory(project_dir):
            runpy.run_path(str(project_dir / "__main__.py"), run_name="__pulumi_program__")

    return run(
        program,
        config=config,
        secret_keys=secret_keys,
        stack=stack,
        project=project or project_name(project_dir),
        mocks=mocks,
    )
