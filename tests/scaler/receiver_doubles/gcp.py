"""Compute's regional managed instance groups, for the receiver: get, listManagedInstances,
createInstances, deleteInstances, resize.

A new module beside tests/bootstrap/doubles/gcp.py (whose ComputeDouble the
VM agent's tests use): it shares that module's `GcpState` -- the metadata
server's tokens and service accounts -- so Secret Manager, the metadata
server and this double agree on who is calling. Requests and responses are
validated against Google's discovery document (tests/scaler/fixtures/gcp-groups.json,
made by scripts/extract_webhooks.py), whose method descriptions give the
semantics modelled here:

* createInstances: "Creates instances with per-instance configurations ...
  The create instances operation is marked DONE if the createInstances request
  is successful. The underlying actions take additional time." -- each named
  instance joins the group at once with currentAction CREATING and targetSize
  grows by one per instance; a name the group already has is refused
  (Compute's 409 alreadyExists; the discovery document does not spell the
  code out, the receiver treats any "already exists" answer alike);
* deleteInstances: "... reduces the targetSize of the managed instance group
  by the number of instances that you delete"; an instance that is not a
  member fails the request unless `skipInstancesOnValidationError`;
* resize: "If you increase the size, the group creates new instances ... If you
  decrease the size, the group deletes one or more instances" -- the MIG picks
  which; this double picks the newest, busy or not, to make that hazard visible;
* `requestId`: a repeated request id returns the first operation and does nothing
  ("the server will know to ignore the request if it has already been completed").

A MIG has no maximum: nothing here refuses growth. `peak` records the most
live instances each group ever had, so a test can prove the receiver's own
bound held.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from doubles._http import HttpDouble, Request, Response
from doubles.gcp import GcpState
from doubles.schema import DiscoveryApi, _discovery_to_draft4, _errors

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "gcp-groups.json"
JSON = "application/json; charset=UTF-8"
BOOTING = ("CREATING", "CREATING_WITHOUT_RETRIES", "VERIFYING")


class Discovery(DiscoveryApi):
    """DiscoveryApi plus request-body checks (request objects are open: Google ignores nothing silently,
    but a field we misspell must show up, so they are closed too)."""

    def request_errors(self, method_id: str, body: Any) -> list[str]:
        ref = self.doc["methods"][method_id]["request"]["$ref"]
        schemas = {k: _discovery_to_draft4(v, closed=True) for k, v in self.doc["schemas"].items()}
        validator = jsonschema.Draft4Validator({"$ref": f"#/schemas/{ref}", "schemas": schemas})
        return _errors(validator, body)


def load_compute() -> Discovery:
    data = json.loads(FIXTURE.read_text())
    return Discovery("compute.v1", data["apis"]["compute.v1"])


def _google_error(code: int, status: str, message: str, reason: str) -> Response:
    err = {"code": code, "message": message, "status": status,
           "errors": [{"message": message, "domain": "global", "reason": reason}]}
    return Response(code, {"error": err}, content_type=JSON)


@dataclass
class Vm:
    name: str
    zone: str
    action: str = "CREATING"
    status: str = "PROVISIONING"
    id: str = field(default_factory=lambda: str(secrets.randbelow(10**18) + 10**18))
    busy: bool = False  # set by tests that model a runner taking a job


@dataclass
class Group:
    project: str
    region: str
    name: str
    base: str
    readers: set[str]
    updaters: set[str]
    zones: tuple[str, ...] = ()
    vms: list[Vm] = field(default_factory=list)
    target_size: int = 0
    peak: int = 0
    history: list[tuple[str, int]] = field(default_factory=list)  # (verb, live count after it)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)  # requestId -> operation

    @property
    def live(self) -> list[Vm]:
        return [vm for vm in self.vms if vm.action not in ("DELETING", "ABANDONING")]

    def vm(self, name: str) -> Vm | None:
        return next((vm for vm in self.vms if vm.name == name), None)

    def record(self, verb: str) -> None:
        count = len(self.live)
        self.peak = max(self.peak, count)
        self.history.append((verb, count))

    def add(self, name: str) -> Vm:
        zones = self.zones or (f"{self.region}-a", f"{self.region}-b")
        vm = Vm(name, zones[len(self.vms) % len(zones)])
        self.vms.append(vm)
        self.target_size += 1
        return vm


class GroupsDouble(HttpDouble):
    """Compute v1 regionInstanceGroupManagers for the receiver (see the module docstring)."""

    name = "compute-groups"
    _PATH = re.compile(
        r"^/compute/v1/projects/([^/]+)/regions/([^/]+)/instanceGroupManagers/([^/]+)"
        r"(?:/(listManagedInstances|createInstances|deleteInstances|resize))?$"
    )

    def __init__(self, state: GcpState) -> None:
        super().__init__()
        self.state = state
        self.api = load_compute()
        self.groups: dict[tuple[str, str, str], Group] = {}
        self.boot_on_create = False  # True: new VMs are RUNNING at once (no agent in the test)

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self.groups = {}
            self.boot_on_create = False

    def fault_body(self, status: int) -> Any:
        return {"error": {"code": status, "message": "The service is currently unavailable.",
                          "status": "UNAVAILABLE" if status == 503 else "INTERNAL"}}

    # -- test controls -------------------------------------------------------------------

    def add_group(self, name: str, *, region: str = "us-central1", base: str | None = None,
                  updaters: set[str] | None = None, readers: set[str] | None = None, size: int = 0) -> Group:
        with self._cond:
            accounts = {self.state.service_account}
            group = Group(self.state.project_id, region, name, base or name, readers or set(accounts),
                          updaters or set(accounts))
            for _ in range(size):
                vm = group.add(_generated(group))
                vm.action, vm.status = "NONE", "RUNNING"
            self.groups[(group.project, region, name)] = group
            group.record("seed")
            return group

    def boot(self, group: Group, name: str) -> Vm:
        """The VM finished booting: the MIG shows it RUNNING with no action."""
        with self._cond:
            vm = group.vm(name)
            assert vm is not None, name
            vm.action, vm.status = "NONE", "RUNNING"
            self.changed()
            return vm

    def finish_deletes(self, group: Group) -> None:
        with self._cond:
            group.vms = [vm for vm in group.vms if vm.action != "DELETING"]
            self.changed()

    # -- requests ---------------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        m = self._PATH.match(req.path)
        verb = m.group(4) if m else None
        if m is None or req.method != ("GET" if verb is None else "POST"):
            self.violate(f"{req.method} {req.path}: not a call this double knows")
            return _google_error(404, "NOT_FOUND", "Not Found", "notFound")
        method_id = f"regionInstanceGroupManagers.{verb or 'get'}"
        for problem in self.api.check_query(method_id, req.query):
            self.violate(f"{req.method} {req.path}: {problem}")
        body: dict[str, Any] = {}
        if verb in ("createInstances", "deleteInstances"):
            try:
                body = json.loads(req.body or b"{}")
            except ValueError:
                return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.", "parseError")
            problems = self.api.request_errors(method_id, body)
            for problem in problems:
                self.violate(f"{method_id} request body: {problem}")
            if problems:
                return _google_error(400, "INVALID_ARGUMENT", f"Invalid JSON payload received. {problems[0]}",
                                     "invalid")
        project, region, name = m.group(1), m.group(2), m.group(3)
        with self._cond:
            owner = self.state.token_owner(req)
            if isinstance(owner, Response):
                return owner
            resource = f"projects/{project}/regions/{region}/instanceGroupManagers/{name}"
            group = self.groups.get((project, region, name))
            if group is None:
                return _google_error(404, "NOT_FOUND", f"The resource '{resource}' was not found", "notFound")
            needed, allowed = ("get", group.readers) if verb in (None, "listManagedInstances") else (
                "update", group.updaters)
            if owner not in allowed:
                return _google_error(403, "PERMISSION_DENIED", f"Required 'compute.instanceGroupManagers.{needed}' "
                                     f"permission for '{resource}'", "forbidden")
            if verb is None:
                resp = Response(200, self._manager(group), content_type=JSON)
            elif verb == "listManagedInstances":
                resp = self._list(req, group)
            else:
                request_id = (req.query.get("requestId") or [""])[0]
                if request_id and request_id in group.requests:
                    return self._served(req, method_id, Response(200, group.requests[request_id], content_type=JSON))
                resp = self._act(req, group, verb, body)
                if resp.status == 200 and request_id:
                    group.requests[request_id] = resp.body
            self.changed()
        return self._served(req, method_id, resp)

    def _served(self, req: Request, method_id: str, resp: Response) -> Response:
        if resp.status == 200:
            for problem in self.api.response_errors(method_id, resp.body):
                self.violate(f"{self.name} response to {req.path} breaks {method_id}: {problem}")
        return resp

    def _base(self, group: Group) -> str:
        return f"https://www.googleapis.com/compute/v1/projects/{group.project}/regions/{group.region}"

    def _url(self, group: Group, vm: Vm) -> str:
        return f"https://www.googleapis.com/compute/v1/projects/{group.project}/zones/{vm.zone}/instances/{vm.name}"

    def _manager(self, group: Group) -> dict[str, Any]:
        base = self._base(group)
        return {"kind": "compute#instanceGroupManager", "id": str(abs(hash(group.name)) % 10**18),
                "name": group.name, "region": base, "selfLink": f"{base}/instanceGroupManagers/{group.name}",
                "baseInstanceName": group.base, "targetSize": group.target_size,
                "status": {"isStable": all(vm.action == "NONE" for vm in group.vms)}}

    def _list(self, req: Request, group: Group) -> Response:
        items = [{"instance": self._url(group, vm), "id": vm.id, "name": vm.name, "instanceStatus": vm.status,
                  "currentAction": vm.action} for vm in group.vms]
        size = int((req.query.get("maxResults") or ["500"])[0])
        start = int((req.query.get("pageToken") or ["0"])[0] or 0)
        body: dict[str, Any] = {"managedInstances": items[start:start + size]} if items else {}
        if start + size < len(items):
            body["nextPageToken"] = str(start + size)
        return Response(200, body, content_type=JSON)

    def _act(self, req: Request, group: Group, verb: str, body: dict[str, Any]) -> Response:
        if verb == "createInstances":
            names = [str(item.get("name", "")) for item in body.get("instances") or []]
            if not names or not all(re.fullmatch(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?", n) for n in names):
                return _google_error(400, "INVALID_ARGUMENT", "Invalid value for field 'instances'", "invalid")
            existing = [n for n in names if group.vm(n) is not None]
            if existing or len(set(names)) != len(names):
                return _google_error(409, "ALREADY_EXISTS", f"The resource '{existing[0] if existing else names[0]}'"
                                     " already exists", "alreadyExists")
            for n in names:
                vm = group.add(n)
                if self.boot_on_create:
                    vm.action, vm.status = "NONE", "RUNNING"
        elif verb == "deleteInstances":
            wanted = [_instance_path(str(u)) for u in body.get("instances") or []]
            by_path = {_instance_path(self._url(group, vm)): vm for vm in group.live}
            picked = [by_path.get(p) for p in wanted]
            if not wanted or (None in picked and not body.get("skipInstancesOnValidationError")):
                return _google_error(400, "INVALID_ARGUMENT", "The instance is not a member of the group or is "
                                     "already being deleted.", "invalid")
            for vm in {id(v): v for v in picked if v is not None}.values():
                vm.action = "DELETING"
                group.target_size -= 1
        else:  # resize
            size = int((req.query.get("size") or ["-1"])[0])
            if size < 0:
                return _google_error(400, "INVALID_ARGUMENT", "Invalid value for field 'size'", "invalid")
            live = group.live
            for _ in range(size - len(live)):
                group.add(_generated(group))
            for vm in live[size:][::-1] if size < len(live) else []:
                vm.action = "DELETING"
            group.target_size = size
        group.record(verb)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000-00:00", time.gmtime())
        base = self._base(group)
        op_name = f"operation-{secrets.token_hex(8)}"
        return Response(200, {"kind": "compute#operation", "id": str(secrets.randbelow(10**18)), "name": op_name,
                              "operationType": f"compute.instanceGroupManagers.{verb}",
                              "targetLink": f"{base}/instanceGroupManagers/{group.name}", "status": "DONE",
                              "progress": 100, "insertTime": now, "startTime": now, "endTime": now,
                              "region": base, "selfLink": f"{base}/operations/{op_name}",
                              "user": self.state.service_account}, content_type=JSON)


def _generated(group: Group) -> str:
    """A name like the MIG's own: base instance name, `-`, four random characters."""
    alphabet = string.ascii_lowercase + string.digits
    while True:
        name = f"{group.base}-{''.join(secrets.choice(alphabet) for _ in range(4))}"
        if group.vm(name) is None:
            return name


def _instance_path(url: str) -> str:
    return url[url.index("zones/"):] if "zones/" in url else url
