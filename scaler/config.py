"""The receiver's configuration: what the deployed function knows, and nothing secret.

The stack renders one JSON document per receiver (one per cloud that has
pools) from runners.yaml and the stack's derived names. The function reads it
at cold start: from the environment variable `GHR_SCALER_CONFIG` (the JSON
text itself) if set, else from the file named by `GHR_SCALER_CONFIG_FILE`,
else from `scaler.json` at the root of the function's code archive (Lambda:
/var/task/scaler.json; Cloud Run functions: the source directory). A file is
the default because Lambda caps all environment variables of a function at
4 KB together (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html),
which a stack with many pools can exceed. `python -m scaler serve --config FILE`
reads the same document.

The document (every key required unless marked optional; unknown keys are errors)::

    {
      "version": 1,
      "cloud": "aws",                     # the receiver's own cloud: "aws" | "gcp"
      "stack": "gh-runners-dev",          # optional, for log lines only
      "github": {
        "scope": "repository",            # "repository" | "organization" | "enterprise"
        "target": "octo/hello",           # owner/repo | org login | enterprise slug
        "api_url": "https://api.github.com"   # REST base, no trailing slash (GHES: https://HOST/api/v3)
      },
      "webhook_secret": {                 # where the webhook's HMAC secret lives (never the value)
        "location": "/ghr/dev/webhook-secret",   # AWS: SSM SecureString parameter name
                                                 # GCP: projects/P/secrets/S/versions/latest
        "region": "eu-central-1"          # AWS only: the parameter's region; null on GCP
      },
      "github_credential": {              # the credential the reconcile reads, same JSON document
        "location": "...",                # as the VMs read ({"kind": "pat"|"app", ...}); same shape
        "region": "eu-central-1"          # as webhook_secret
      },
      "reconcile": {                      # optional; these are the defaults
        "interval_seconds": 300,          # how often the scheduled invocation runs (for the round-robin)
        "request_budget": 100             # most GitHub REST requests one reconcile may make
      },
      "pools": [                          # ALL pools of the stack, both clouds, so that every
        {                                 # receiver applies the same pool-choice rule
          "name": "codex",
          "cloud": "aws",
          "order": 0,                     # position in runners.yaml: the last tie-break of the rule
          "labels": ["self-hosted", "linux", "x64", "codex"],   # everything the runner carries
          "max": 6,
          "min": 0,
          "schedules": [                  # may be empty
            {"cron": "0 21 * * *", "desired": 0, "time_zone": "Europe/Berlin"}
          ],
          "scales_on_demand": true,       # false: the receiver never grows this pool (it still
                                          # wins jobs under the rule, so no other pool grows for them)
          "idle_timeout_seconds": 600,
          "ephemeral": true,
          "aws": {                        # only for pools of the receiver's own cloud, and only on AWS
            "region": "eu-central-1",
            "group": "ghr-gh-runners-dev-codex",          # Auto Scaling group name
            "scale_up_policy": "ghr-gh-runners-dev-codex-up"   # +1 ChangeInCapacity simple scaling
          },                                                   # policy: name or ARN
          "gcp": null                     # on GCP pools of a GCP receiver:
                                          # {"project": "p", "region": "europe-west1",
                                          #  "group": "<MIG name>", "instance_base": "<base instance name>"}
        }
      ],
      "endpoints": {}                     # optional, tests only: "aws", "gcp_compute",
                                          # "gcp_secretmanager", "gcp_metadata" base URLs
    }

The floor of a pool at time t is the `desired` of the schedule that fired most
recently at or before t (each cron read in its own time zone); a pool without
schedules has the floor `min`.

The pool-choice rule (scaler/decision.py), the same in every receiver: a job
goes to the pools whose `labels` contain every `runs-on` label of the job,
compared case-insensitively; of those, the pool with the fewest labels wins
(the tightest fit, so a generic job does not take a specialised pool's
capacity), and among equally many the lowest `order`. Exactly one pool wins,
whatever its cloud; only the receiver of that pool's cloud acts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

Cloud = Literal["aws", "gcp"]
Scope = Literal["repository", "organization", "enterprise"]
CLOUDS: tuple[Cloud, ...] = ("aws", "gcp")
SCOPES: tuple[Scope, ...] = ("repository", "organization", "enterprise")
ENDPOINT_KEYS = ("aws", "gcp_compute", "gcp_secretmanager", "gcp_metadata")
CONFIG_ENV = "GHR_SCALER_CONFIG"
CONFIG_FILE_ENV = "GHR_SCALER_CONFIG_FILE"
CONFIG_FILE = "scaler.json"


class ConfigError(ValueError):
    """The document does not match the contract above; the message names the key."""


@dataclass(frozen=True)
class GitHubTarget:
    scope: Scope
    target: str
    api_url: str

    @property
    def scope_path(self) -> str:
        """REST prefix of the runner endpoints: repos/o/r, orgs/o, enterprises/e."""
        prefix = {"repository": "repos", "organization": "orgs", "enterprise": "enterprises"}[self.scope]
        return f"{prefix}/{self.target}"


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives: an SSM parameter (+ region) or a Secret Manager version name."""

    location: str
    region: str | None = None


@dataclass(frozen=True)
class Schedule:
    cron: str
    desired: int
    time_zone: str = "UTC"


@dataclass(frozen=True)
class AwsTarget:
    region: str
    group: str
    scale_up_policy: str  # name or ARN; ExecutePolicy accepts either


@dataclass(frozen=True)
class GcpTarget:
    project: str
    region: str
    group: str
    instance_base: str


@dataclass(frozen=True)
class Pool:
    name: str
    cloud: Cloud
    order: int
    labels: tuple[str, ...]
    max: int
    min: int
    schedules: tuple[Schedule, ...] = ()
    scales_on_demand: bool = True
    idle_timeout_seconds: int = 600
    ephemeral: bool = True
    aws: AwsTarget | None = None
    gcp: GcpTarget | None = None

    @property
    def label_keys(self) -> frozenset[str]:
        """Labels compared case-insensitively, as GitHub does."""
        return frozenset(label.lower() for label in self.labels)


@dataclass(frozen=True)
class Reconcile:
    interval_seconds: int = 300
    request_budget: int = 100


@dataclass(frozen=True)
class ScalerConfig:
    cloud: Cloud
    github: GitHubTarget
    webhook_secret: SecretRef
    github_credential: SecretRef
    pools: tuple[Pool, ...]
    reconcile: Reconcile = field(default_factory=Reconcile)
    endpoints: dict[str, str] = field(default_factory=dict)
    stack: str = ""

    @property
    def own_pools(self) -> tuple[Pool, ...]:
        """The pools this receiver acts for: its own cloud's."""
        return tuple(p for p in self.pools if p.cloud == self.cloud)

    def pool(self, name: str) -> Pool:
        return next(p for p in self.pools if p.name == name)


def load(json_text: str) -> ScalerConfig:
    """Parse and check the document; a ConfigError names the offending key."""
    try:
        doc = json.loads(json_text)
    except ValueError as exc:
        raise ConfigError(f"not JSON: {exc}") from None
    return _config(_Obj(doc, "config"))


def load_deployed(root: Path | None = None) -> ScalerConfig:
    """The deployed function's document: env text, env file, or scaler.json beside the package."""
    text = os.environ.get(CONFIG_ENV)
    if text:
        return load(text)
    path = os.environ.get(CONFIG_FILE_ENV)
    default = (root or Path(__file__).resolve().parent.parent) / CONFIG_FILE
    return load(Path(path or default).read_text(encoding="utf-8"))


# --- checking ----------------------------------------------------------------


class _Obj:
    """A JSON object being read: every access is checked and located, unknown keys are errors."""

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object")
        self.doc: dict[str, Any] = value
        self.where = where
        self.read: set[str] = set()

    def _get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., nullable: bool = False) -> Any:
        self.read.add(key)
        if key not in self.doc:
            if default is ...:
                raise ConfigError(f"{self.where}.{key}: required")
            return default
        value = self.doc[key]
        if value is None and nullable:
            return None
        # bool is an int in Python; a count must not be `true`.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{self.where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def text(self, key: str, default: Any = ..., nullable: bool = False) -> Any:
        value = self._get(key, str, default, nullable)
        if isinstance(value, str) and not value:
            raise ConfigError(f"{self.where}.{key}: must not be empty")
        return value

    def integer(self, key: str, default: Any = ..., low: int = 0) -> int:
        value = cast(int, self._get(key, int, default))
        if value < low:
            raise ConfigError(f"{self.where}.{key}: must be at least {low}")
        return value

    def flag(self, key: str, default: Any = ...) -> bool:
        return cast(bool, self._get(key, bool, default))

    def obj(self, key: str, default: Any = ..., nullable: bool = False) -> _Obj | None:
        value = self._get(key, dict, default, nullable)
        return None if value is None else _Obj(value, f"{self.where}.{key}")

    def array(self, key: str, default: Any = ...) -> list[Any]:
        return cast(list, self._get(key, list, default))

    def choice(self, key: str, allowed: tuple[str, ...]) -> Any:
        value = self.text(key)
        if value not in allowed:
            raise ConfigError(f"{self.where}.{key}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.doc) - self.read)
        if unknown:
            raise ConfigError(f"{self.where}: unknown key {unknown[0]!r}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object", list: "a list"}
    return names.get(kind, str(kind)) if isinstance(kind, type) else "a value"


def _config(doc: _Obj) -> ScalerConfig:
    if doc.integer("version") != 1:
        raise ConfigError("config.version: only version 1 is known")
    cloud = doc.choice("cloud", CLOUDS)
    github = _github(_required(doc.obj("github")))
    webhook_secret = _secret(_required(doc.obj("webhook_secret")), cloud)
    credential = _secret(_required(doc.obj("github_credential")), cloud)
    reconcile_doc = doc.obj("reconcile", None)
    reconcile = Reconcile()
    if reconcile_doc:
        reconcile = Reconcile(
            interval_seconds=reconcile_doc.integer("interval_seconds", 300, low=60),
            request_budget=reconcile_doc.integer("request_budget", 100, low=1),
        )
        reconcile_doc.done()
    endpoints_doc = doc.obj("endpoints", None)
    endpoints: dict[str, str] = {}
    if endpoints_doc:
        for key in ENDPOINT_KEYS:
            value = endpoints_doc.text(key, None)
            if value:
                endpoints[key] = value.rstrip("/")
        endpoints_doc.done()
    raw_pools = doc.array("pools")
    if not raw_pools:
        raise ConfigError("config.pools: at least one pool")
    pools = tuple(_pool(_Obj(raw, f"config.pools[{i}]"), cloud) for i, raw in enumerate(raw_pools))
    stack = doc.text("stack", None) or ""
    doc.done()
    _unique(pools)
    return ScalerConfig(
        cloud=cloud,
        github=github,
        webhook_secret=webhook_secret,
        github_credential=credential,
        pools=pools,
        reconcile=reconcile,
        endpoints=endpoints,
        stack=stack,
    )


def _required(value: _Obj | None) -> _Obj:
    assert value is not None  # only `nullable=True` reads return None
    return value


def _github(doc: _Obj) -> GitHubTarget:
    target = GitHubTarget(scope=doc.choice("scope", SCOPES), target=doc.text("target"), api_url=doc.text("api_url"))
    doc.done()
    if target.scope == "repository" and target.target.count("/") != 1:
        raise ConfigError("config.github.target: a repository target is owner/name")
    if not target.api_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ConfigError("config.github.api_url: must be https:// (plain http only on loopback, for tests)")
    return GitHubTarget(target.scope, target.target, target.api_url.rstrip("/"))


def _secret(doc: _Obj, cloud: Cloud) -> SecretRef:
    ref = SecretRef(location=doc.text("location"), region=doc.text("region", None, nullable=True))
    doc.done()
    if cloud == "aws" and not ref.region:
        raise ConfigError(f"{doc.where}.region: an SSM parameter needs its region")
    if cloud == "gcp" and not ref.location.startswith("projects/"):
        raise ConfigError(f"{doc.where}.location: a Secret Manager name is projects/P/secrets/S/versions/V")
    return ref


def _pool(doc: _Obj, own_cloud: Cloud) -> Pool:
    cloud = doc.choice("cloud", CLOUDS)
    labels = doc.array("labels")
    if not labels or not all(isinstance(label, str) and label for label in labels):
        raise ConfigError(f"{doc.where}.labels: a non-empty list of strings")
    schedules = []
    for i, raw in enumerate(doc.array("schedules", [])):
        s = _Obj(raw, f"{doc.where}.schedules[{i}]")
        schedules.append(
            Schedule(cron=s.text("cron"), desired=s.integer("desired"), time_zone=s.text("time_zone", "UTC"))
        )
        s.done()
    aws_doc, gcp_doc = doc.obj("aws", None, nullable=True), doc.obj("gcp", None, nullable=True)
    pool = Pool(
        name=doc.text("name"),
        cloud=cloud,
        order=doc.integer("order"),
        labels=tuple(labels),
        max=doc.integer("max", low=1),
        min=doc.integer("min"),
        schedules=tuple(schedules),
        scales_on_demand=doc.flag("scales_on_demand", True),
        idle_timeout_seconds=doc.integer("idle_timeout_seconds", 600, low=1),
        ephemeral=doc.flag("ephemeral", True),
        aws=_aws(aws_doc) if aws_doc else None,
        gcp=_gcp(gcp_doc) if gcp_doc else None,
    )
    doc.done()
    if pool.min > pool.max or any(s.desired > pool.max for s in pool.schedules):
        raise ConfigError(f"{doc.where}: min and every schedule's desired must be at most max")
    where_to_act = {"aws": pool.aws, "gcp": pool.gcp}
    if where_to_act["gcp" if cloud == "aws" else "aws"] is not None:
        raise ConfigError(f"{doc.where}: a {cloud} pool takes no {'gcp' if cloud == 'aws' else 'aws'} target")
    if cloud == own_cloud and where_to_act[cloud] is None:
        raise ConfigError(f"{doc.where}.{cloud}: required for a pool of the receiver's own cloud")
    return pool


def _aws(doc: _Obj) -> AwsTarget:
    target = AwsTarget(region=doc.text("region"), group=doc.text("group"), scale_up_policy=doc.text("scale_up_policy"))
    doc.done()
    return target


def _gcp(doc: _Obj) -> GcpTarget:
    target = GcpTarget(
        project=doc.text("project"),
        region=doc.text("region"),
        group=doc.text("group"),
        instance_base=doc.text("instance_base"),
    )
    doc.done()
    return target


def _unique(pools: tuple[Pool, ...]) -> None:
    names: set[str] = set()
    orders: set[int] = set()
    for pool in pools:
        if pool.name in names:
            raise ConfigError(f"config.pools: pool name {pool.name!r} appears twice")
        if pool.order in orders:
            raise ConfigError(f"config.pools: order {pool.order} appears twice (the rule needs a strict order)")
        names.add(pool.name)
        orders.add(pool.order)
