"""Google Cloud doubles: metadata server, Secret Manager, Compute (MIG listing).

Three loopback servers sharing one :class:`GcpState`, because the real services
share identity: the metadata server issues the VM service account's access
token, and Secret Manager / Compute only accept that token, and only for the
resources the service account was granted (``accessors`` / ``readers``).

* Metadata (``metadata.url`` stands for ``http://metadata.google.internal``):
  ``/computeMetadata/v1/...`` — requires ``Metadata-Flavor: Google`` (403
  otherwise, also for requests carrying ``X-Forwarded-For``), answers with that
  header, supports ``?alt=json``, ``?recursive=true`` on directories and
  ``?wait_for_change=true`` (ETag/``last_etag``/``timeout_sec``) on values.
* Secret Manager (``secretmanager.url`` stands for
  ``https://secretmanager.googleapis.com``): ``GET /v1/projects/{p}/secrets/{s}/versions/{v}:access``.
* Compute (``compute.url`` stands for ``https://compute.googleapis.com``):
  ``/compute/v1/projects/{p}/regions/{r}/instanceGroupManagers/{m}`` (``get``) and its
  ``listManagedInstances``, ``deleteInstances``, ``recreateInstances``, plus the receiver's
  ``createInstances`` and ``resize`` when given their discovery document: one MIG model
  (``GcpState.migs``) for the agent and the webhook receiver alike.

Secret Manager and Compute responses are validated against Google's discovery
documents (``tests/bootstrap/openapi/gcp-subset.json``), query parameters too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from ._http import HttpDouble, Request, Response
from .schema import DiscoveryApi, load_gcp

METADATA_PREFIX = "/computeMetadata/v1/"
SCOPE_CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), what Secret Manager reports as ``dataCrc32c``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _google_error(code: int, status: str, message: str, reason: str | None = None) -> Response:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:  # Compute also lists errors[] with a reason
        err["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return Response(code, {"error": err}, content_type="application/json; charset=UTF-8")


@dataclass
class Secret:
    versions: list[bytes]
    accessors: set[str]  # service account emails with secretmanager.versions.access


@dataclass
class ManagedInstance:
    name: str
    zone: str
    id: str = field(default_factory=lambda: str(secrets.randbelow(10**18) + 10**18))
    status: str = "RUNNING"
    action: str = "NONE"
    busy: bool = False  # set by tests that model a runner taking a job


@dataclass
class Mig:
    """A regional managed instance group: ONE model for the VM agent (which lists it and leaves it) and the
    webhook receiver (which grows it), so both see the same instances and the same targetSize."""

    project: str
    region: str
    name: str
    readers: set[str]  # service account emails with compute.instanceGroupManagers.get
    instances: list[ManagedInstance] = field(default_factory=list)
    template: str = "pool-template"
    updaters: set[str] = field(default_factory=set)  # ... with compute.instanceGroupManagers.update
    target_size: int = 0
    actions: list[tuple[str, str]] = field(default_factory=list)  # (deleteInstances | recreateInstances, name)
    base: str = ""  # baseInstanceName (default: the group's name)
    zones: tuple[str, ...] = ()
    peak: int = 0  # the most live instances the group ever had
    history: list[tuple[str, int]] = field(default_factory=list)  # (verb, live count after it)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # requestId -> operation

    def __post_init__(self) -> None:
        self.base = self.base or self.name

    @property
    def vms(self) -> list[ManagedInstance]:
        return self.instances

    @property
    def live(self) -> list[ManagedInstance]:
        """Instances the group keeps: not being deleted."""
        return [i for i in self.instances if i.action not in ("DELETING", "ABANDONING")]

    def vm(self, name: str) -> ManagedInstance | None:
        return next((i for i in self.instances if i.name == name), None)

    def record(self, verb: str) -> None:
        count = len(self.live)
        self.peak = max(self.peak, count)
        self.history.append((verb, count))

    def add_instance(self, name: str, zone: str | None = None, **kw: Any) -> ManagedInstance:
        """An instance that is already RUNNING (seeded by a test)."""
        inst = ManagedInstance(name, zone or f"{self.region}-a", **kw)
        self.instances.append(inst)
        self.target_size += 1
        return inst

    def add(self, name: str) -> ManagedInstance:
        """An instance the group starts creating (createInstances, resize), spread over the zones."""
        zones = self.zones or (f"{self.region}-a", f"{self.region}-b")
        inst = ManagedInstance(name, zones[len(self.instances) % len(zones)], status="PROVISIONING",
                               action="CREATING")
        self.instances.append(inst)
        self.target_size += 1
        return inst

    def remove_instance(self, name: str) -> None:
        self.instances = [i for i in self.instances if i.name != name]


@dataclass
class GcpState:
    """The VM the agent runs on, its project, and what its identity may read."""

    project_id: str = "gh-runners-test"
    project_number: str = "123456789012"
    instance_name: str = "pool-x64-abcd"
    instance_id: str = "4520031799277581759"
    zone: str = "us-central1-a"
    machine_type: str = "e2-standard-2"
    service_account: str = "pool-x64@gh-runners-test.iam.gserviceaccount.com"
    scopes: list[str] = field(default_factory=lambda: [SCOPE_CLOUD_PLATFORM])
    attributes: dict[str, str] = field(default_factory=dict)
    project_attributes: dict[str, str] = field(default_factory=dict)
    preempted: bool = False
    maintenance_event: str = "NONE"
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (email, expiry)
    secrets: dict[tuple[str, str], Secret] = field(default_factory=dict)
    migs: dict[tuple[str, str, str], Mig] = field(default_factory=dict)
    token_lifetime: int = 3599

    @property
    def region(self) -> str:
        return self.zone.rsplit("-", 1)[0]

    def project_matches(self, project: str) -> bool:
        return project in (self.project_id, self.project_number)

    def token_owner(self, req: Request) -> str | Response:
        """The service account behind the request's bearer token, or the 401 to send."""
        scheme, _, token = (req.header("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _google_error(401, "UNAUTHENTICATED", "Request is missing required authentication credential. "
                                 "Expected OAuth 2 access token, login cookie or other valid authentication "
                                 "credential.")
        owner = self.tokens.get(token.strip())
        if owner is None or owner[1] <= time.time():
            return _google_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. "
                                 "Expected OAuth 2 access token, login cookie or other valid authentication "
                                 "credential.")
        return owner[0]


class MetadataDouble(HttpDouble):
    """The GCE metadata server (see the module docstring). Each VM has its own: ``identity`` (name, id)
    makes this one another VM of the same project (the state, tokens included, is shared)."""

    name = "gce-metadata"

    def __init__(self, state: GcpState, identity: tuple[str, str] | None = None) -> None:
        super().__init__()
        self.state = state
        self.identity = identity

    def fault_body(self, status: int) -> Any:
        return f"injected {status}"

    def _tree(self) -> dict[str, Any]:
        s = self.state
        name, instance_id = self.identity or (s.instance_name, s.instance_id)
        sa = {"email": s.service_account, "scopes": "\n".join(s.scopes) + "\n", "aliases": "default\n"}
        return {
            "instance": {
                "id": instance_id, "name": name,
                "hostname": f"{name}.{s.zone}.c.{s.project_id}.internal",
                "zone": f"projects/{s.project_number}/zones/{s.zone}",
                "machine-type": f"projects/{s.project_number}/machineTypes/{s.machine_type}",
                "attributes": dict(s.attributes), "preempted": "TRUE" if s.preempted else "FALSE",
                "maintenance-event": s.maintenance_event,
                "service-accounts": {"default": sa, s.service_account: sa},
            },
            "project": {"project-id": s.project_id, "numeric-project-id": s.project_number,
                        "attributes": dict(s.project_attributes)},
        }

    def _lookup(self, parts: list[str]) -> Any:
        node: Any = self._tree()
        for part in parts:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def handle(self, req: Request) -> Response:
        headers = {"Metadata-Flavor": "Google", "Server": "Metadata Server for VM"}
        if req.header("x-forwarded-for") is not None:
            return Response(403, "Forbidden: X-Forwarded-For header not allowed", headers, "text/html")
        if req.header("metadata-flavor") != "Google":
            # Checked before the path: the real server refuses every flavourless request.
            return Response(403, "Missing Metadata-Flavor:Google header.", headers, "text/html")
        if not req.path.startswith(METADATA_PREFIX) or req.method != "GET":
            return Response(404, "Not Found", headers, "text/html")
        rel = req.path[len(METADATA_PREFIX):]
        if rel.startswith("instance/service-accounts/") and rel.endswith("/token"):
            return self._token(rel, headers)
        parts = [p for p in rel.split("/") if p]
        q = {k: v[0] for k, v in req.query.items()}
        with self._cond:
            value = self._lookup(parts)
            if value is None:
                return Response(404, "Not Found", headers, "text/html")
            if isinstance(value, dict):
                if not rel.endswith("/") and rel:
                    return Response(301, "", {**headers, "Location": req.path + "/"}, "text/html")
                if q.get("recursive") == "true" or q.get("alt") == "json":
                    return Response(200, _camel(value) if q.get("recursive") == "true" else list(value), headers,
                                    "application/json")
                listing = "".join(f"{k}/\n" if isinstance(v, dict) else f"{k}\n" for k, v in value.items())
                return Response(200, listing, headers, "application/text")
            if q.get("wait_for_change") == "true":
                value = self._wait_for_change(parts, value, q)
            etag = hashlib.sha256(str(value).encode()).hexdigest()[:16]
            body = json.dumps(value) if q.get("alt") == "json" else value
            return Response(200, body, {**headers, "ETag": etag}, "application/text")

    def _wait_for_change(self, parts: list[str], value: Any, q: dict[str, str]) -> Any:
        """Hang until the value's ETag differs from ``last_etag`` (or from now)."""
        start_etag = q.get("last_etag") or hashlib.sha256(str(value).encode()).hexdigest()[:16]
        deadline = time.monotonic() + float(q.get("timeout_sec", 60))
        release = self._release  # set when the test ends: do not hang past it
        while hashlib.sha256(str(value).encode()).hexdigest()[:16] == start_etag:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or release.is_set():
                break
            self._cond.wait(remaining)
            value = self._lookup(parts)
        return value

    def _token(self, rel: str, headers: dict[str, str]) -> Response:
        account = rel.split("/")[2]
        s = self.state
        if account not in ("default", s.service_account):
            return Response(404, "Not Found", headers, "text/html")
        token = "ya29.c." + secrets.token_urlsafe(48)
        with self._cond:
            s.tokens[token] = (s.service_account, time.time() + s.token_lifetime)
        return Response(200, {"access_token": token, "expires_in": s.token_lifetime, "token_type": "Bearer"},
                        headers, "application/json")

    def preempt(self) -> None:
        """Mark the instance preempted (``instance/preempted`` turns TRUE, waiters wake)."""
        with self._cond:
            self.state.preempted = True
            self.changed()


def _camel(tree: dict[str, Any]) -> dict[str, Any]:
    """``?recursive=true`` answers use camelCase keys for directory entries (except attributes)."""
    def conv(key: str) -> str:
        head, *rest = key.split("-")
        return head + "".join(p.title() for p in rest)
    # Attribute names and service account emails are data, not directory names: kept as is.
    return {k if k == "attributes" or "@" in k else conv(k):
            (v if k == "attributes" or not isinstance(v, dict) else _camel(v)) for k, v in tree.items()}


class _GoogleApiDouble(HttpDouble):
    """Shared request checks for Secret Manager and Compute."""

    api_name = ""

    def __init__(self, state: GcpState, api: DiscoveryApi) -> None:
        super().__init__()
        self.state = state
        self.api = api

    def fault_body(self, status: int) -> Any:
        return {"error": {"code": status, "message": "The service is currently unavailable.",
                          "status": "UNAVAILABLE" if status == 503 else "INTERNAL"}}

    def served(self, req: Request, method_id: str, resp: Response) -> Response:
        if resp.status == 200:
            for problem in self.api.response_errors(method_id, resp.body):
                self.violate(f"{self.name} response to {req.path} breaks {method_id}: {problem}")
        return resp

    def check_query(self, req: Request, method_id: str) -> None:
        for problem in self.api.check_query(method_id, req.query):
            self.violate(f"{req.method} {req.path}: {problem}")


class SecretManagerDouble(_GoogleApiDouble):
    """Secret Manager v1 ``versions.access``."""

    name = "secretmanager"
    _PATH = re.compile(r"^/v1/projects/([^/]+)/secrets/([^/]+)/versions/([^/:]+):access$")

    def handle(self, req: Request) -> Response:
        method_id = "projects.secrets.versions.access"
        m = self._PATH.match(req.path)
        if m is None or req.method != "GET":
            self.violate(f"{req.method} {req.path}: not a Secret Manager call the double knows")
            return _google_error(404, "NOT_FOUND", "Requested entity was not found.")
        self.check_query(req, method_id)
        project, name, version = m.groups()
        with self._cond:
            owner = self.state.token_owner(req)
            if isinstance(owner, Response):
                return owner
            resource = f"projects/{project}/secrets/{name}/versions/{version}"
            secret = self.state.secrets.get((self.state.project_id, name))
            if not self.state.project_matches(project) or secret is None or owner not in secret.accessors:
                # Secret Manager does not reveal whether a secret you may not read exists.
                if secret is None and self.state.project_matches(project):
                    return _google_error(404, "NOT_FOUND", f"Secret [projects/{self.state.project_number}/"
                                         f"secrets/{name}] not found or has no versions.")
                return _google_error(403, "PERMISSION_DENIED", f"Permission 'secretmanager.versions.access' "
                                     f"denied for resource '{resource}' (or it may not exist).")
            number = len(secret.versions) if version == "latest" else int(version) if version.isdigit() else 0
            if not 1 <= number <= len(secret.versions):
                return _google_error(404, "NOT_FOUND", f"Secret Version [{resource}] not found.")
            data = secret.versions[number - 1]
        body = {"name": f"projects/{self.state.project_number}/secrets/{name}/versions/{number}",
                "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc32c(data))}}
        return self.served(req, method_id, Response(200, body, content_type="application/json; charset=UTF-8"))


class ComputeDouble(_GoogleApiDouble):
    """Compute v1 ``regionInstanceGroupManagers`` over the one MIG model in ``GcpState.migs``: ``get``,
    ``listManagedInstances``, ``deleteInstances``, ``recreateInstances`` (what the VM agent calls) and
    ``createInstances``, ``resize`` (what the webhook receiver calls).

    Semantics from the discovery document's method descriptions:

    * createInstances: "Creates instances with per-instance configurations ... The create instances
      operation is marked DONE if the createInstances request is successful. The underlying actions take
      additional time." -- each named instance joins the group at once with currentAction CREATING and
      targetSize grows by one per instance; a name the group already has is refused (Compute's 409
      alreadyExists);
    * deleteInstances: "... reduces the targetSize of the managed instance group by the number of instances
      that you delete" -- the instance stays listed as DELETING until the test finishes the delete
      (``finish_deletes``), as a real MIG lists it while it shuts down; an instance that is not a member
      fails the request unless ``skipInstancesOnValidationError``;
    * recreateInstances: "Flags the specified VM instances in the managed instance group to be immediately
      recreated" -- currentAction RECREATING, targetSize unchanged;
    * resize: "If you increase the size, the group creates new instances ... If you decrease the size, the
      group deletes one or more instances" -- the MIG picks which; this double picks the newest, busy or
      not, to make that hazard visible;
    * ``requestId``: a repeated request id returns the first operation and does nothing ("the server will
      know to ignore the request if it has already been completed").

    All answer with an ``Operation`` and need ``compute.instanceGroupManagers.update`` on the group; ``get``
    and ``listManagedInstances`` need ``.get``. A MIG has no maximum: nothing here refuses growth; ``peak``
    records the most live instances a group ever had. Requests and responses are validated against the
    discovery documents given (each method against the one that describes it).
    """

    name = "compute"
    _PATH = re.compile(
        r"^/compute/v1/projects/([^/]+)/regions/([^/]+)/instanceGroupManagers/([^/]+)"
        r"(?:/(listManagedInstances|deleteInstances|recreateInstances|createInstances|resize))?$")
    _BODIES = ("deleteInstances", "recreateInstances", "createInstances")

    def __init__(self, state: GcpState, api: DiscoveryApi, *more: DiscoveryApi) -> None:
        super().__init__(state, api)
        self.apis = (api, *more)
        self.boot_on_create = False  # True: new instances are RUNNING at once (no agent in the test)

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self.boot_on_create = False

    def _api_for(self, method_id: str) -> DiscoveryApi | None:
        return next((a for a in self.apis if method_id in a.doc["methods"]), None)

    def served(self, req: Request, method_id: str, resp: Response) -> Response:
        api = self._api_for(method_id)
        if resp.status == 200 and api is not None:
            for problem in api.response_errors(method_id, resp.body):
                self.violate(f"{self.name} response to {req.path} breaks {method_id}: {problem}")
        return resp

    # -- test controls ---------------------------------------------------------------------

    def boot(self, mig: Mig, name: str) -> ManagedInstance:
        """The instance finished booting: the MIG shows it RUNNING with no action."""
        with self._cond:
            inst = mig.vm(name)
            assert inst is not None, name
            inst.action, inst.status = "NONE", "RUNNING"
            self.changed()
            return inst

    def finish_deletes(self, mig: Mig) -> None:
        """Instances being deleted are gone."""
        with self._cond:
            mig.instances = [i for i in mig.instances if i.action != "DELETING"]
            self.changed()

    # -- requests --------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        m = self._PATH.match(req.path)
        verb = m.group(4) if m else None
        method_id = f"regionInstanceGroupManagers.{verb or 'get'}"
        api = self._api_for(method_id)
        if m is None or api is None or req.method != ("GET" if verb is None else "POST"):
            self.violate(f"{req.method} {req.path}: not a Compute call the double knows")
            return _google_error(404, "NOT_FOUND", "Not Found", "notFound")
        for problem in api.check_query(method_id, req.query):
            self.violate(f"{req.method} {req.path}: {problem}")
        body: dict[str, Any] = {}
        if verb in self._BODIES:
            try:
                body = json.loads(req.body or b"{}")
            except ValueError:
                return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "parseError")
            problems = api.request_errors(method_id, body)
            if problems:
                for problem in problems:
                    self.violate(f"{method_id} request body: {problem}")
                return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received. " + problems[0],
                                     "invalid")
        project, region, name = m.group(1), m.group(2), m.group(3)
        with self._cond:
            owner = self.state.token_owner(req)
            if isinstance(owner, Response):
                return owner
            resource = f"projects/{project}/regions/{region}/instanceGroupManagers/{name}"
            mig = self.state.migs.get((self.state.project_id, region, name)) if self.state.project_matches(
                project) else None
            if mig is None:
                return _google_error(404, "NOT_FOUND", f"The resource '{resource}' was not found", "notFound")
            needed, allowed = ("get", mig.readers) if verb in (None, "listManagedInstances") else (
                "update", mig.updaters)
            if owner not in allowed:
                return _google_error(403, "PERMISSION_DENIED", f"Required 'compute.instanceGroupManagers.{needed}' "
                                     f"permission for '{resource}'", "forbidden")
            if verb is None:
                return self.served(req, method_id, Response(200, self._manager(mig), content_type=JSON))
            if verb == "listManagedInstances":
                return self._list(req, method_id, mig)
            request_id = (req.query.get("requestId") or [""])[0]
            if request_id and request_id in mig.requests:
                return self.served(req, method_id, Response(200, mig.requests[request_id], content_type=JSON))
            resp = self._act(req, mig, verb, body)
            if resp.status == 200 and request_id:
                mig.requests[request_id] = resp.body
            self.changed()
        return self.served(req, method_id, resp)

    def _instance_url(self, inst: ManagedInstance) -> str:
        return f"https://www.googleapis.com/compute/v1/projects/{self.state.project_id}/zones/{inst.zone}/instances/" \
               f"{inst.name}"

    def _template(self, mig: Mig) -> str:
        return f"https://www.googleapis.com/compute/v1/projects/{self.state.project_id}/global/instanceTemplates/" \
               f"{mig.template}"

    def _manager(self, mig: Mig) -> dict[str, Any]:
        base = f"https://www.googleapis.com/compute/v1/projects/{self.state.project_id}/regions/{mig.region}"
        return {"kind": "compute#instanceGroupManager", "id": str(abs(hash(mig.name)) % 10**18), "name": mig.name,
                "region": base, "selfLink": f"{base}/instanceGroupManagers/{mig.name}",
                "baseInstanceName": mig.base, "targetSize": mig.target_size,
                "instanceTemplate": self._template(mig),
                "status": {"isStable": all(i.action == "NONE" for i in mig.instances)}}

    def _list(self, req: Request, method_id: str, mig: Mig) -> Response:
        items = [{
            "instance": self._instance_url(i), "id": i.id, "name": i.name, "instanceStatus": i.status,
            "currentAction": i.action, "version": {"instanceTemplate": self._template(mig)},
        } for i in mig.instances]
        size = int((req.query.get("maxResults") or ["500"])[0])
        start = int((req.query.get("pageToken") or ["0"])[0] or 0)
        body: dict[str, Any] = {"managedInstances": items[start:start + size]} if items else {}
        if start + size < len(items):
            body["nextPageToken"] = str(start + size)
        return self.served(req, method_id, Response(200, body, content_type=JSON))

    def _act(self, req: Request, mig: Mig, verb: str, body: dict[str, Any]) -> Response:
        if verb == "createInstances":
            names = [str(item.get("name", "")) for item in body.get("instances") or []]
            if not names or not all(re.fullmatch(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", n) for n in names):
                return _google_error(400, "INVALID_ARGUMENT", "Invalid value for field 'instances'", "invalid")
            existing = [n for n in names if mig.vm(n) is not None]
            if existing or len(set(names)) != len(names):
                return _google_error(409, "ALREADY_EXISTS", f"The resource '{existing[0] if existing else names[0]}'"
                                     " already exists", "alreadyExists")
            for n in names:
                inst = mig.add(n)
                if self.boot_on_create:
                    inst.action, inst.status = "NONE", "RUNNING"
        elif verb == "resize":
            size = int((req.query.get("size") or ["-1"])[0])
            if size < 0:
                return _google_error(400, "INVALID_ARGUMENT", "Invalid value for field 'size'", "invalid")
            live = mig.live
            for _ in range(size - len(live)):
                mig.add(generated_name(mig))
            for inst in live[size:][::-1] if size < len(live) else []:
                inst.action = "DELETING"
            mig.target_size = size
        else:  # deleteInstances | recreateInstances
            wanted = list(body.get("instances") or [])
            by_url = {_instance_path(self._instance_url(i)): i for i in mig.live}
            picked = [by_url.get(_instance_path(str(url))) for url in wanted]
            if not wanted or (None in picked and not (verb == "deleteInstances"
                                                      and body.get("skipInstancesOnValidationError"))):
                missing = next((url for url, inst in zip(wanted, picked, strict=True) if inst is None), "")
                return _google_error(400, "INVALID_ARGUMENT", f"The instance '{missing}' is not a member of the "
                                     f"group '{mig.name}' or is already being deleted." if wanted else
                                     "Required field 'instances' not specified", "invalid")
            for inst in {id(i): i for i in picked if i is not None}.values():
                if verb == "deleteInstances":
                    inst.action = "DELETING"
                    mig.target_size -= 1
                else:
                    inst.action = "RECREATING"
                mig.actions.append((verb, inst.name))
        mig.record(verb)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())
        base = f"https://www.googleapis.com/compute/v1/projects/{self.state.project_id}/regions/{mig.region}"
        op_name = f"operation-{secrets.token_hex(8)}"
        op = {"kind": "compute#operation", "id": str(secrets.randbelow(10**18)), "name": op_name,
              "operationType": f"compute.instanceGroupManagers.{verb}",
              "targetLink": f"{base}/instanceGroupManagers/{mig.name}", "status": "DONE", "progress": 100,
              "insertTime": now, "startTime": now, "endTime": now, "region": base,
              "selfLink": f"{base}/operations/{op_name}", "user": self.state.service_account}
        return Response(200, op, content_type=JSON)


def generated_name(mig: Mig) -> str:
    """A name like the MIG's own: base instance name, `-`, four random characters."""
    alphabet = string.ascii_lowercase + string.digits
    while True:
        name = f"{mig.base}-{''.join(secrets.choice(alphabet) for _ in range(4))}"
        if mig.vm(name) is None:
            return name


JSON = "application/json; charset=UTF-8"


def _instance_path(url: str) -> str:
    """``zones/Z/instances/N`` of a full or partial instance URL (Compute accepts both)."""
    return url[url.index("zones/"):] if "zones/" in url else url


class GcpDoubles:
    """The three GCP servers plus their shared state; one object for fixtures."""

    def __init__(self) -> None:
        apis = load_gcp()
        self.state = GcpState()
        self.metadata = MetadataDouble(self.state)
        self.secretmanager = SecretManagerDouble(self.state, apis["secretmanager.v1"])
        self.compute = ComputeDouble(self.state, apis["compute.v1"])

    @property
    def servers(self) -> tuple[HttpDouble, ...]:
        return (self.metadata, self.secretmanager, self.compute)

    def start(self) -> GcpDoubles:
        for server in self.servers:
            server.start()
        return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def reset(self) -> None:
        for server in self.servers:
            server.reset()
        fresh = GcpState()
        self.state.__dict__.update(fresh.__dict__)  # servers keep their reference to one state object

    @property
    def violations(self) -> list[str]:
        return [v for server in self.servers for v in server.violations]

    def add_secret(self, name: str, value: bytes | str, *, accessors: set[str] | None = None) -> Secret:
        """A secret in the VM's project readable by ``accessors`` (default: the VM's SA)."""
        data = value.encode() if isinstance(value, str) else value
        secret = Secret([data], set(accessors) if accessors is not None else {self.state.service_account})
        self.state.secrets[(self.state.project_id, name)] = secret
        return secret

    def add_mig(self, name: str, *, region: str | None = None, readers: set[str] | None = None,
                updaters: set[str] | None = None, base: str = "") -> Mig:
        """A regional MIG in the VM's project, readable by ``readers`` and changeable by ``updaters``
        (default for both: the VM's SA, which may remove only itself, as the stack grants)."""
        mig = Mig(self.state.project_id, region or self.state.region, name,
                  set(readers) if readers is not None else {self.state.service_account},
                  updaters=set(updaters) if updaters is not None else {self.state.service_account}, base=base)
        self.state.migs[(mig.project, mig.region, name)] = mig
        return mig
