"""GCP adapter: regional managed instance groups grown by `createInstances`; the Cloud Run entry points.

Scale-up is `regionInstanceGroupManagers.createInstances` with one instance
named after the job (`<base>-j<job id>`): the group adds it to its target size
itself (no read-modify-write of the size), and a redelivered `queued` event
names the same instance, which already exists, so it adds nothing. The request
also carries a `requestId` derived from that name, which Compute uses to
ignore a request it already completed (discovery document, compute.v1
`regionInstanceGroupManagers.createInstances`, parameter `requestId`): a retry
is safe, and so is a redelivery that comes after the job's VM has left.

A MIG has no maximum of its own (only an autoscaler has one, and an autoscaler
would fight demand scaling), so `max` is held here, in two steps that need no
lock between concurrent deliveries:

1. before creating, the group's live instances (listManagedInstances, those not
   being deleted or abandoned) are counted; at `max` nothing is created;
2. after creating, they are counted again; if concurrent deliveries together
   went past `max`, the surplus is deleted at once: of the instances this
   receiver created that are still being created (so no runner is on them),
   those with the greatest names. Every receiver that sees a surplus picks from
   the same order, and an instance is only picked if it is surplus in the view
   of whoever picks it -- so views taken at different moments can delete too
   little for a moment (the next delivery trims again) but never an instance
   inside the first `max`.

`resize` is never used to grow: it sets an absolute size, so a resize racing a
`createInstances` could shrink the group and the MIG would pick which VM
to delete -- maybe a busy one. The reconcile also creates named instances
(`<base>-r<run>-<n>`) to reach the floor or close a shortfall.

Everything is stdlib: the access token comes from the metadata server
(https://cloud.google.com/run/docs/securing/service-identity#fetching_identity_and_access_tokens),
and the runtime needs nothing from a registry.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from scaler.config import GcpTarget, Pool, ScalerConfig, SecretRef, load_deployed
from scaler.decision import MAX_BODY_BYTES, Grown, ScaleError
from scaler.floor import floor
from scaler.function import Function
from scaler.http import Answer, HttpError, call
from scaler.reconcile import GroupState

log = logging.getLogger("scaler")
log.setLevel(logging.INFO)

METADATA = "http://metadata.google.internal"
COMPUTE = "https://compute.googleapis.com"
SECRET_MANAGER = "https://secretmanager.googleapis.com"
# GCE names: RFC 1035, at most 63 characters.
MAX_NAME = 63
GONE = ("DELETING", "ABANDONING")
BOOTING = ("CREATING", "CREATING_WITHOUT_RETRIES", "VERIFYING")
RETRY_STATUSES = (429, 500, 502, 503, 504)


def instance_name(base: str, suffix: str) -> str:
    """`<base>-<suffix>` within 63 characters (a long base keeps a stable hash of itself)."""
    name = f"{base}-{suffix}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(base.encode()).hexdigest()[:7]
    keep = MAX_NAME - len(suffix) - len(digest) - 2
    return f"{base[:keep].rstrip('-')}-{digest}-{suffix}"


class GcpGroups:
    """The Groups verbs for a receiver's GCP pools."""

    def __init__(self, config: ScalerConfig, sleep: Any = time.sleep) -> None:
        self.config = config
        self.sleep = sleep
        self.metadata = config.endpoints.get("gcp_metadata", METADATA)
        self.compute = config.endpoints.get("gcp_compute", COMPUTE)
        self.secret_manager = config.endpoints.get("gcp_secretmanager", SECRET_MANAGER)
        self._token: tuple[str, float] | None = None

    # -- plumbing ---------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None or self._token[1] <= time.monotonic():
            url = f"{self.metadata}/computeMetadata/v1/instance/service-accounts/default/token"
            answer = self._call("GET", url, headers={"Metadata-Flavor": "Google"}, authorized=False)
            doc = answer.json()
            # Renew a minute early: a token must not expire between two calls of one delivery.
            self._token = (str(doc["access_token"]), time.monotonic() + int(doc.get("expires_in", 300)) - 60)
        return self._token[0]

    def _call(
        self, method: str, url: str, *, body: Any = None, headers: dict[str, str] | None = None, authorized: bool = True
    ) -> Answer:
        """One API call: transient statuses retried twice; a 401 fetches a new token once (it may have been
        revoked or the clock may be off) before it is an answer."""
        headers = dict(headers or {})
        renewed = False
        attempt = 0
        while True:
            if authorized:
                headers["Authorization"] = f"Bearer {self.token()}"
            try:
                answer = call(method, url, headers=headers, body=body)
            except HttpError as exc:
                if attempt == 2:
                    raise ScaleError(str(exc)) from None
            else:
                if authorized and answer.status == 401 and not renewed:
                    self._token, renewed = None, True
                    continue
                if answer.status not in RETRY_STATUSES or attempt == 2:
                    return answer
            self.sleep(0.2 * 2**attempt)
            attempt += 1

    def _group_url(self, target: GcpTarget) -> str:
        return (
            f"{self.compute}/compute/v1/projects/{target.project}/regions/{target.region}"
            f"/instanceGroupManagers/{target.group}"
        )

    def _target(self, pool: Pool) -> GcpTarget:
        if pool.gcp is None:
            raise ScaleError(f"pool {pool.name} has no GCP group in the configuration")
        return pool.gcp

    def _expect(self, answer: Answer, what: str) -> Any:
        if answer.status != 200:
            raise ScaleError(f"{what}: HTTP {answer.status} {_google_reason(answer)}")
        return answer.json()

    def live(self, target: GcpTarget) -> list[dict[str, Any]]:
        """The group's instances that are not on their way out (listManagedInstances, every page)."""
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            query = f"?pageToken={token}" if token else ""
            doc = self._expect(
                self._call("POST", f"{self._group_url(target)}/listManagedInstances{query}"),
                f"listManagedInstances {target.group}",
            )
            found += [i for i in doc.get("managedInstances", []) if i.get("currentAction") not in GONE]
            token = doc.get("nextPageToken", "")
            if not token:
                return found

    def _create(self, target: GcpTarget, names: list[str], request_id: uuid.UUID) -> int:
        """createInstances for `names`; how many were new (an existing name is not an error here).

        `request_id` makes the retries of this one request (see `_call`) safe: Compute ignores
        a request id it has already completed.
        """
        answer = self._call(
            "POST",
            f"{self._group_url(target)}/createInstances?requestId={request_id}",
            body={"instances": [{"name": name} for name in names]},
        )
        if answer.status == 409 or _already_exists(answer):
            return 0
        operation = self._expect(answer, f"createInstances {target.group}")
        if operation.get("error"):
            if _already_exists(answer):
                return 0
            raise ScaleError(f"createInstances {target.group}: {operation['error']}")
        return len(names)

    def _trim(self, target: GcpTarget, pool: Pool) -> list[str]:
        """Delete this receiver's booting surplus over max (see the module docstring); the deleted names."""
        live = self.live(target)
        surplus = len(live) - pool.max
        if surplus <= 0:
            return []
        ours = sorted(
            (i["name"] for i in live if i.get("currentAction") in BOOTING and _ours(i["name"], target.instance_base)),
            reverse=True,
        )[:surplus]
        if ours:
            zone_of = {i["name"]: i["instance"] for i in live}
            self._expect(
                self._call(
                    "POST",
                    f"{self._group_url(target)}/deleteInstances",
                    body={"instances": [zone_of[name] for name in ours], "skipInstancesOnValidationError": True},
                ),
                f"deleteInstances {target.group}",
            )
        return ours

    # -- Groups --------------------------------------------------------------------------

    def grow(self, pool: Pool, job_id: int) -> Grown:
        target = self._target(pool)
        name = instance_name(target.instance_base, f"j{job_id}")
        live = self.live(target)
        if any(i.get("name") == name for i in live):
            return Grown(False, f"{name} exists already (redelivery)")
        if len(live) >= pool.max:
            return Grown(False, f"at max ({pool.max})")
        # Per job: a redelivery after the job's VM has come and gone does not create another.
        if not self._create(target, [name], uuid.uuid5(uuid.NAMESPACE_URL, f"{self._group_url(target)}/{name}")):
            return Grown(False, f"{name} exists already (redelivery)")
        trimmed = self._trim(target, pool)
        if name in trimmed:
            return Grown(False, f"at max ({pool.max}): {name} deleted again")
        return Grown(True, f"created {name}")

    def state(self, pool: Pool, now: datetime) -> GroupState:
        target = self._target(pool)
        try:
            current = floor(pool, now)
        except (ValueError, LookupError) as exc:  # a time zone the runtime lacks: keep min, say so
            log.error(json.dumps({"pool": pool.name, "floor": f"schedules unreadable ({exc}); using min"}))
            current = pool.min
        return GroupState(size=len(self.live(target)), floor=current)

    def add(self, pool: Pool, count: int, run: int) -> int:
        target = self._target(pool)
        # Names of this run not in the group yet: one existing name would fail the whole request.
        taken = {i.get("name") for i in self.live(target)}
        names = []
        for n in range(count + len(taken)):
            name = instance_name(target.instance_base, f"r{run}-{n}")
            if name not in taken:
                names.append(name)
            if len(names) == count:
                break
        created = self._create(target, names, uuid.uuid4())
        trimmed = self._trim(target, pool)
        return max(0, created - len(set(trimmed) & set(names)))

    def read_secret(self, ref: SecretRef) -> str:
        """A Secret Manager version (the webhook secret, the GitHub credential)."""
        name = ref.location
        doc = self._expect(self._call("GET", f"{self.secret_manager}/v1/{name}:access"), f"access {name}")
        return base64.b64decode(doc["payload"]["data"]).decode()


# Names this receiver gives: `-j<job id>` and `-r<run>-<n>`. The MIG's own names end
# in `-` plus exactly four characters, so a suffix of five or more cannot be one of them.
_OURS = re.compile(r".*-(j\d{4,}|r\d+-\d+)")


def _ours(name: str, base: str) -> bool:
    return name.startswith(base[:20]) and _OURS.fullmatch(name) is not None


def _google_reason(answer: Answer) -> str:
    try:
        error = (answer.json() or {}).get("error", {})
    except ValueError:
        return ""
    return str(error.get("status") or error.get("message") or "")[:120]


def _already_exists(answer: Answer) -> bool:
    try:
        doc = answer.json() or {}
    except ValueError:
        return False
    text = json.dumps(doc.get("error", {})).upper()
    return "ALREADY_EXISTS" in text or "ALREADYEXISTS" in text


# --- the Cloud Run functions entry points -----------------------------------------------


_function: Function | None = None


def _warm() -> Function:
    """What a warm function instance keeps between requests."""
    global _function
    if _function is None:
        _function = Function(config := load_deployed(), GcpGroups(config))
    return _function


def webhook(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP function: Functions Framework calls it with the flask.Request
    (functions-framework-python, `_http_view_func_wrapper`); the buildpack adds
    the framework itself when the source declares no dependencies
    (GoogleCloudPlatform/buildpacks, cmd/python/functions_framework/lib/lib.go).
    """
    function = _warm()
    if (request.content_length or 0) > MAX_BODY_BYTES:
        # Refuse before reading it; the receiver would refuse it too.
        return '{"decision":"too-large"}', 400, {"Content-Type": "application/json"}
    reply = function.receiver.handle(dict(request.headers.items()), request.get_data())
    return reply.body, reply.status, {"Content-Type": "application/json"}


def reconcile(request: Any) -> tuple[str, int, dict[str, str]]:
    """HTTP function for Cloud Scheduler (Cloud Run checks its OIDC token before this runs)."""
    function = _warm()
    plans = function.reconcile(datetime.now(timezone.utc))
    return json.dumps({"reconciled": [plan.__dict__ for plan in plans]}), 200, {"Content-Type": "application/json"}
