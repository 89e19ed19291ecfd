"""AWS for the agent: moto_server, plus a thin front for what moto lacks.

What is moto (``venv/bin/moto_server``, one process per test session, state
wiped between tests with ``POST /moto-api/reset``):

* SSM Parameter Store — ``GetParameter`` with ``WithDecryption`` on a
  SecureString (moto returns ``kms:<key>:<value>`` without decryption, the
  plaintext with it, like AWS);
* Auto Scaling groups, launch templates, EC2 instances, lifecycle hooks
  (``Describe*``, ``TerminateInstanceInAutoScalingGroup``…);
* STS ``AssumeRole`` — the IMDS double's role credentials are real moto keys.

What is the front (:class:`AwsFront`, the endpoint the agent is given), and why:

* **SigV4 is checked.** moto_server accepts any signature unless IAM auth mode
  is on, and that mode cannot be used here: it evaluates SSM/Auto Scaling calls
  against resource ``*``, so a least-privilege policy naming the parameter ARN
  is always denied. The front recomputes the signature with the secret of the
  credentials IMDS issued, checks the credential scope's region and service and
  the ``X-Amz-Security-Token``, then forwards the request to moto untouched.
* **Requests are checked against botocore's service models** (the AWS API
  descriptions boto ships): JSON-protocol bodies, and Query/EC2 parameters read
  back by the naming rules of botocore's own serializers (``Filter.1.Value.1``,
  ``Names.member.1``…), must validate; breaches become ``violations``.
* **Lifecycle actions are emulated.** moto has no ``CompleteLifecycleAction`` /
  ``RecordLifecycleActionHeartbeat`` (HTTP 500) and terminates at once despite a
  termination hook. :meth:`AwsFront.begin_termination` puts an instance in
  ``Terminating:Wait`` (IMDS ``autoscaling/target-lifecycle-state`` turns
  ``Terminated``); the agent's ``CompleteLifecycleAction`` is validated and
  recorded, and only then is the instance terminated in moto.
* **``TerminateInstanceInAutoScalingGroup`` keeps the group's rules.** moto
  lets a decrementing terminate take the desired capacity below ``MinSize``;
  AWS refuses: "the desired capacity ... must be greater than or equal to the
  minimum group size" (docs.aws.amazon.com/autoscaling/ec2/userguide/
  asg-capacity-limits.html), with the ValidationError "Currently, desiredSize
  equals minSize (N). Terminating instance without replacement will violate
  group's min size constraint. Either set shouldDecrementDesiredCapacity flag to
  false or lower group's min size." The front checks that first; then, if the
  group has a termination hook, the instance waits in ``Terminating:Wait`` for
  its ``CompleteLifecycleAction`` as above ("This call simply makes a
  termination request. The instance is not terminated immediately", API
  reference TerminateInstanceInAutoScalingGroup).

* **S3 GETs of the agent object** (bootstrap/loader.py) are checked the way S3
  checks them: SigV4 with S3's canonical URI (the path as sent, not encoded
  again), and the ``x-amz-content-sha256`` header S3 requires on every SigV4
  request, signed and equal to the payload's digest ("Missing required header
  for this request: x-amz-content-sha256" otherwise;
  docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html). moto
  serves the object (path-style: ``/<bucket>/<key>``).

IMDS itself is :mod:`imds` (moto's is not IMDSv2: see there).
"""

from __future__ import annotations

import atexit
import base64
import calendar
import hashlib
import hmac
import http.client
import json
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

from ._http import HttpDouble, Request, Response
from .imds import ImdsDouble, Instance

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"
# Static keys for seeding moto directly (moto accepts anything when auth is off).
SEED_CREDENTIALS = {"aws_access_key_id": "AKIASEEDSEEDSEEDSEED", "aws_secret_access_key": "seed-secret"}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "server", "date"}
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<signature>[0-9a-f]{64})$")


class MotoServer:
    """``moto_server`` on 127.0.0.1 with a kernel-chosen port (read from its banner, no races)."""

    def __init__(self, executable: Path | None = None) -> None:
        self.executable = executable or _moto_executable()
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> MotoServer:
        self.proc = subprocess.Popen([str(self.executable), "-H", "127.0.0.1", "-p", "0"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        atexit.register(self.stop)  # however the test process ends, no orphan server
        found = threading.Event()

        def drain() -> None:  # keep reading so moto never blocks on a full stderr pipe
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                m = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
                if m and not found.is_set():
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=drain, name="moto-stderr", daemon=True).start()
        if not found.wait(timeout):
            self.stop()
            raise RuntimeError("moto_server did not report its address")
        return self

    def warm(self) -> None:
        """Touch each backend once: moto loads them lazily (~1 s for SSM alone) and
        a test should not pay that inside its own timing. Raw requests, not boto3:
        this runs in a thread of the test process and should cost it nothing."""
        stamp = time.strftime("%Y%m%d", time.gmtime())
        calls = {  # service -> (X-Amz-Target or None, body)
            "ssm": ("AmazonSSM.DescribeParameters", "{}"),
            "autoscaling": (None, "Action=DescribeAutoScalingGroups&Version=2011-01-01"),
            "ec2": (None, "Action=DescribeLaunchTemplates&Version=2016-11-15"),
            "iam": (None, "Action=ListRoles&Version=2010-05-08"),
            "sts": (None, "Action=GetCallerIdentity&Version=2011-06-15"),
        }
        for service, (target, body) in calls.items():
            # moto routes on the credential scope's service; it does not check the signature.
            headers = {"Authorization": f"AWS4-HMAC-SHA256 Credential={SEED_CREDENTIALS['aws_access_key_id']}/"
                                        f"{stamp}/{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0",
                       "Content-Type": "application/x-amz-json-1.1" if target else
                       "application/x-www-form-urlencoded"}
            if target:
                headers["X-Amz-Target"] = target
            _request(self.url, "POST", "/", body.encode(), headers)

    def reset(self) -> None:
        """Wipe every moto backend (between tests)."""
        _request(self.url, "POST", "/moto-api/reset")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()  # nothing to flush; SIGTERM costs werkzeug a second
            self.proc.wait()
            self.proc = None


def _moto_executable() -> Path:
    import sys

    candidate = Path(sys.executable).parent / "moto_server"
    return candidate if candidate.exists() else Path("moto_server")


def _request(base: str, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


@dataclass
class LifecycleAction:
    """A pending termination lifecycle action (instance in ``Terminating:Wait``)."""

    asg: str
    hook: str
    instance_id: str
    token: str = field(default_factory=lambda: str(uuid.uuid4()))
    decrement: bool = True
    state: str = "pending"  # pending | completed
    result: str | None = None  # CONTINUE | ABANDON
    heartbeats: int = 0
    front: AwsFront | None = field(default=None, repr=False)

    def wait_completed(self, timeout: float = 10.0) -> LifecycleAction:
        assert self.front is not None
        self.front.wait_for(lambda: self.state == "completed", timeout,
                            f"CompleteLifecycleAction for {self.instance_id}")
        return self


@dataclass
class AwsCall:
    """One AWS API call the front saw (after signature checking)."""

    service: str
    action: str
    params: dict[str, Any]
    access_key: str
    region: str
    status: int | None = None


class AwsFront(HttpDouble):
    """The AWS endpoint given to the agent; see the module docstring."""

    name = "aws"

    def __init__(self, moto: MotoServer, imds: ImdsDouble) -> None:
        super().__init__()
        self.moto = moto
        self.imds = imds
        self._models: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self.credentials: dict[str, tuple[str, str | None]] = {}  # akid -> (secret, session token)
            self.calls: list[AwsCall] = []
            self.lifecycle_actions: list[LifecycleAction] = []
            self.terminations: list[tuple[str, bool]] = []  # accepted (instance, decrement) requests
            self.region = REGION

    def fault_body(self, status: int) -> Any:
        return {"__type": "InternalFailure", "message": f"injected {status}"}

    def trust(self, access_key: str, secret: str, token: str | None = None) -> None:
        """Accept signatures made with these credentials."""
        with self._cond:
            self.credentials[access_key] = (secret, token)

    # -- lifecycle emulation -------------------------------------------------------

    def begin_termination(self, instance_id: str, asg: str, hook: str, *, decrement: bool = True) -> LifecycleAction:
        """Scale-in/refresh picked ``instance_id``: hold it in Terminating:Wait for ``hook``."""
        action = LifecycleAction(asg, hook, instance_id, decrement=decrement, front=self)
        with self._cond:
            self.lifecycle_actions.append(action)
        if self.imds.instance.instance_id == instance_id:
            self.imds.set(lifecycle_state="Terminated")
        self.changed()
        return action

    def _lifecycle(self, action_name: str, params: dict[str, Any]) -> Response:
        with self._cond:
            action = next((a for a in self.lifecycle_actions if a.state == "pending"
                           and a.asg == params.get("AutoScalingGroupName")
                           and a.hook == params.get("LifecycleHookName")
                           and (a.instance_id == params.get("InstanceId")
                                or a.token == params.get("LifecycleActionToken"))), None)
            if action is None:
                ident = params.get("InstanceId") or params.get("LifecycleActionToken")
                message = f"No active Lifecycle Action found with instance ID {ident}"
                return _query_error(400, "ValidationError", message)
            if action_name == "RecordLifecycleActionHeartbeat":
                action.heartbeats += 1
                self.changed()
                return _query_ok(action_name)
            result = params.get("LifecycleActionResult")
            if result not in ("CONTINUE", "ABANDON"):
                return _query_error(400, "ValidationError", f"Invalid lifecycle action result: {result}")
            action.state, action.result = "completed", result
            self.changed()
        # The hold is over: now moto may terminate the instance.
        import boto3

        boto3.client("autoscaling", endpoint_url=self.moto.url, region_name=self.region, **SEED_CREDENTIALS) \
            .terminate_instance_in_auto_scaling_group(InstanceId=action.instance_id,
                                                      ShouldDecrementDesiredCapacity=action.decrement)
        return _query_ok(action_name)

    def _terminate_in_group(self, req: Request, params: dict[str, Any]) -> Response:
        import boto3

        instance_id = str(params.get("InstanceId", ""))
        decrement = str(params.get("ShouldDecrementDesiredCapacity", "")).lower() == "true"
        client = boto3.client("autoscaling", endpoint_url=self.moto.url, region_name=self.region, **SEED_CREDENTIALS)
        found = client.describe_auto_scaling_instances(InstanceIds=[instance_id])["AutoScalingInstances"]
        if not found:
            return _query_error(400, "ValidationError",
                                f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
        name = found[0]["AutoScalingGroupName"]
        group = client.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        if decrement and group["DesiredCapacity"] - 1 < group["MinSize"]:
            return _query_error(400, "ValidationError", (
                f"Currently, desiredSize equals minSize ({group['MinSize']}). Terminating instance without "
                "replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity "
                "flag to false or lower group's min size."))
        hooks = client.describe_lifecycle_hooks(AutoScalingGroupName=name)["LifecycleHooks"]
        hook = next((h["LifecycleHookName"] for h in hooks
                     if h["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"), None)
        with self._cond:
            self.terminations.append((instance_id, decrement))
        if hook is None:
            return self._forward(req)
        self.begin_termination(instance_id, name, hook, decrement=decrement)
        xml = ('<TerminateInstanceInAutoScalingGroupResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">'
               f"<TerminateInstanceInAutoScalingGroupResult><Activity><ActivityId>{uuid.uuid4()}</ActivityId>"
               f"<AutoScalingGroupName>{escape(name)}</AutoScalingGroupName><Description>Terminating EC2 instance: "
               f"{escape(instance_id)}</Description><Cause>At {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
               f"instance {escape(instance_id)} was taken out of service in response to a user request.</Cause>"
               f"<StartTime>{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}</StartTime>"
               "<StatusCode>InProgress</StatusCode><Progress>0</Progress></Activity>"
               "</TerminateInstanceInAutoScalingGroupResult><ResponseMetadata>"
               f"<RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></TerminateInstanceInAutoScalingGroupResponse>")
        return Response(200, xml, content_type="text/xml")

    # -- request handling ---------------------------------------------------------

    def handle(self, req: Request) -> Response:
        json_protocol = req.header("x-amz-target") is not None
        auth = req.header("authorization")
        if not auth:
            return _aws_error(json_protocol, 403, "MissingAuthenticationToken", "Missing Authentication Token")
        m = _AUTH.match(auth)
        if m is None:
            return _aws_error(json_protocol, 400, "IncompleteSignature", "Authorization header is malformed")
        with self._cond:
            known = self.credentials.get(m["akid"])
        if known is None:
            return _aws_error(json_protocol, 403, "UnrecognizedClientException" if json_protocol else
                              "InvalidClientTokenId", "The security token included in the request is invalid.")
        secret, session_token = known
        if session_token is not None and req.header("x-amz-security-token") != session_token:
            return _aws_error(json_protocol, 403, "UnrecognizedClientException" if json_protocol else
                              "InvalidClientTokenId", "The security token included in the request is invalid.")
        if m["region"] != self.region:
            return _aws_error(json_protocol, 403, "SignatureDoesNotMatch",
                              f"Credential should be scoped to a valid region, not '{m['region']}'.")
        if m["service"] == "s3":
            missing = _s3_payload_problem(req, m["signed"].split(";"))
            if missing:
                self.violate(f"S3 {req.method} {req.path}: {missing}")
                return _s3_error(400, "InvalidRequest", missing)
        problem = _verify_sigv4(req, m, secret)
        if problem:
            self.violate(f"SigV4 rejected for {req.method} {req.path}: {problem}")
            return _aws_error(json_protocol, 403, "InvalidSignatureException" if json_protocol else
                              "SignatureDoesNotMatch", "The request signature we calculated does not match the "
                              "signature you provided. Check your AWS Secret Access Key and signing method.")
        service, action, params = self._decode(req, m["service"])
        call = AwsCall(service, action, params, m["akid"], m["region"])
        with self._cond:
            self.calls.append(call)
        req.operation = f"{service}:{action}"
        for issue in self._validate(service, action, params, json_protocol) if service != "s3" else ():
            self.violate(f"{service}:{action}: {issue}")
        if service == "autoscaling" and action in ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat"):
            resp = self._lifecycle(action, params)
        elif service == "autoscaling" and action == "TerminateInstanceInAutoScalingGroup":
            resp = self._terminate_in_group(req, params)
        else:
            resp = self._forward(req)
        call.status = resp.status
        return resp

    def _decode(self, req: Request, service: str) -> tuple[str, str, dict[str, Any]]:
        target = req.header("x-amz-target")
        if service == "s3":  # REST: the operation is the method on a path-style /<bucket>/<key>
            bucket, _, key = req.path.lstrip("/").partition("/")
            action = {"GET": "GetObject", "HEAD": "HeadObject"}.get(req.method, req.method) if key else req.method
            return service, action, {"Bucket": bucket, "Key": key}
        if target:
            try:
                params = json.loads(req.body or b"{}")
            except ValueError:
                params = {}
            return service, target.split(".", 1)[-1], params
        form = parse_qs(req.body.decode(), keep_blank_values=True) if req.body else dict(req.query)
        flat = {k: v[0] for k, v in form.items()}
        return service, flat.pop("Action", ""), flat

    def _model(self, service: str) -> Any:
        if service not in self._models:
            import botocore.session

            self._models[service] = botocore.session.get_session().get_service_model(service)
        return self._models[service]

    def _validate(self, service: str, action: str, params: dict[str, Any], json_protocol: bool) -> list[str]:
        """Check params against botocore's model (JSON bodies; Query/EC2 parameters, unflattened)."""
        from botocore.exceptions import UnknownServiceError
        from botocore.model import OperationNotFoundError
        from botocore.validate import ParamValidator

        try:
            op = self._model(service).operation_model(action)
        except (OperationNotFoundError, UnknownServiceError):
            return [f"{action!r} is not an operation of {service}"]
        shape = op.input_shape
        if shape is None:
            return []
        if not json_protocol:
            params = dict(params)
            if params.pop("Version", None) != self._model(service).api_version:
                return [f"Query call without Version={self._model(service).api_version}"]
            params = _query_params(shape, params, self._model(service).metadata["protocol"])
        report = ParamValidator().validate(params, shape)
        return [report.generate_report()] if report.has_errors() else []

    def _forward(self, req: Request) -> Response:
        query = "&".join(f"{k}={quote(v, safe='')}" for k, vs in req.query.items() for v in vs)
        headers = {k: v for k, v in req.headers.items() if k not in _HOP_BY_HOP}
        status, resp_headers, body = _request(self.moto.url, req.method, req.path + (f"?{query}" if query else ""),
                                              req.body, headers)
        kept = {k: v for k, v in resp_headers if k.lower() not in _HOP_BY_HOP and k.lower() != "content-type"}
        ctype = next((v for k, v in resp_headers if k.lower() == "content-type"), "text/xml")
        return Response(status, body, kept, ctype)


def _query_params(shape: Any, flat: dict[str, str], protocol: str) -> dict[str, Any]:
    """Flat Query/EC2 parameters -> botocore params: the inverse of botocore's own serializer.

    The key names come from botocore's serializer for ``protocol`` (``query``:
    ``Name.member.N``, flattened lists and maps; ``ec2``: capitalised
    ``locationName``/``queryName``, lists as ``Name.N``), so ``Filter.1.Value.2``
    becomes ``Filters[0]["Values"][1]`` exactly as ``EC2Serializer`` produced it.
    Keys the model does not explain are kept verbatim, for the validator to
    report as unknown parameters.
    """
    from botocore.serialize import SERIALIZERS

    serializer = SERIALIZERS[protocol]()
    consumed: set[str] = set()
    missing = object()

    def present(prefix: str) -> bool:
        return any(k == prefix or k.startswith(prefix + ".") for k in flat)

    def scalar(raw: str, type_name: str) -> Any:
        try:
            if type_name in ("integer", "long"):
                return int(raw)
            if type_name in ("float", "double"):
                return float(raw)
            if type_name == "blob":
                return base64.b64decode(raw, validate=True)
        except ValueError:
            return raw  # not of its type: the validator says so
        if type_name == "boolean":
            return {"true": True, "false": False}.get(raw, raw)
        return raw

    def known(value: Any) -> Any:  # an element or map entry with a part missing: None, for the validator
        return None if value is missing else value

    def indices(prefix: str) -> list[int]:
        found = {int(m[1]) for k in flat if (m := re.match(re.escape(prefix) + r"\.(\d+)(?:\.|$)", k))}
        return sorted(found)

    def parse(sh: Any, prefix: str) -> Any:
        """The value serialized under ``prefix`` (``missing`` if none was)."""
        if sh.type_name == "structure":
            out: dict[str, Any] = {}
            for name, member in sh.members.items():
                key = serializer._get_serialized_name(member, name)
                value = parse(member, f"{prefix}.{key}" if prefix else key)
                if value is not missing:
                    out[name] = value
            return out if out or not prefix or present(prefix) else missing
        if sh.type_name == "list":
            if flat.get(prefix) == "" and protocol == "query":  # how the query protocol sends []
                consumed.add(prefix)
                return []
            if protocol == "ec2":
                list_prefix = prefix
            elif serializer._is_shape_flattened(sh):
                list_prefix = prefix
                if sh.member.serialization.get("name"):
                    name = serializer._get_serialized_name(sh.member, default_name="")
                    list_prefix = ".".join([*prefix.split(".")[:-1], name])
            else:
                list_prefix = f"{prefix}.{sh.member.serialization.get('name', 'member')}"
            found = indices(list_prefix)
            return [known(parse(sh.member, f"{list_prefix}.{i}")) for i in found] if found else missing
        if sh.type_name == "map":
            full = prefix if serializer._is_shape_flattened(sh) else f"{prefix}.entry"
            key_suffix = serializer._get_serialized_name(sh.key, default_name="key")
            value_suffix = serializer._get_serialized_name(sh.value, "value")
            found = indices(full)
            return {known(parse(sh.key, f"{full}.{i}.{key_suffix}")):
                    known(parse(sh.value, f"{full}.{i}.{value_suffix}")) for i in found} if found else missing
        if prefix not in flat:
            return missing
        consumed.add(prefix)
        return scalar(flat[prefix], sh.type_name)

    params = parse(shape, "")
    params.update({k: v for k, v in flat.items() if k not in consumed})
    return params


def _verify_sigv4(req: Request, m: re.Match[str], secret: str) -> str | None:
    """Recompute the AWS Signature Version 4 of ``req``; None when it matches."""
    signed = m["signed"].split(";")
    if "host" not in signed:
        return "host is not a signed header"
    amz_date = req.header("x-amz-date")
    if not amz_date or not amz_date.startswith(m["date"]):
        return "X-Amz-Date missing or not the credential date"
    if abs(time.time() - calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))) > 900:
        return "X-Amz-Date more than 15 minutes off"
    for name in signed:
        if req.header(name) is None:
            return f"signed header {name} is missing"
    canonical_query = "&".join(sorted(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, vs in req.query.items() for v in vs))
    canonical_headers = "".join(f"{h}:{' '.join((req.header(h) or '').split())}\n" for h in signed)
    payload = req.header("x-amz-content-sha256") or hashlib.sha256(req.body).hexdigest()
    # Non-S3 services sign the path URI-encoded once more, as botocore does; S3 signs it as sent.
    uri = req.path if m["service"] == "s3" else quote(req.path, safe="/~")
    canonical = "\n".join([req.method, uri, canonical_query, canonical_headers, m["signed"], payload])
    scope = f"{m['date']}/{m['region']}/{m['service']}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in (m["date"], m["region"], m["service"], "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return None if hmac.compare_digest(expected, m["signature"]) else "signature mismatch"


def _s3_payload_problem(req: Request, signed: list[str]) -> str | None:
    """S3 wants x-amz-content-sha256 on every SigV4 request, signed, and naming the payload's digest."""
    stated = req.header("x-amz-content-sha256")
    if stated is None:
        return "Missing required header for this request: x-amz-content-sha256"
    if "x-amz-content-sha256" not in signed:
        return "x-amz-content-sha256 is not a signed header"
    if stated != "UNSIGNED-PAYLOAD" and stated != hashlib.sha256(req.body).hexdigest():
        return "The provided 'x-amz-content-sha256' header does not match what was computed."
    return None


def _s3_error(status: int, code: str, message: str) -> Response:
    xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{escape(message)}"
           f"</Message><RequestId>{uuid.uuid4()}</RequestId></Error>")
    return Response(status, xml, content_type="application/xml")


def _query_ok(action: str) -> Response:
    xml = (f'<{action}Response xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><{action}Result/>'
           f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata></{action}Response>")
    return Response(200, xml, content_type="text/xml")


def _query_error(status: int, code: str, message: str) -> Response:
    xml = (f'<ErrorResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/"><Error><Type>Sender</Type>'
           f"<Code>{code}</Code><Message>{escape(message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
           "</ErrorResponse>")
    return Response(status, xml, content_type="text/xml")


def _aws_error(json_protocol: bool, status: int, code: str, message: str) -> Response:
    """JSON-protocol services (SSM) answer auth errors with 400 and ``__type``; Query ones with XML."""
    if json_protocol:
        code = code if code.endswith("Exception") else f"{code}Exception"
        return Response(400, {"__type": code, "message": message}, content_type="application/x-amz-json-1.1")
    return _query_error(status, code, message)


class AwsEnv:
    """What the ``aws`` fixture yields: moto, the front, IMDS, and seeding helpers."""

    def __init__(self, moto: MotoServer, front: AwsFront, imds: ImdsDouble) -> None:
        self.moto, self.front, self.imds = moto, front, imds
        self.region = REGION
        self._clients: dict[str, Any] = {}

    @property
    def endpoint_url(self) -> str:
        """The AWS endpoint to give the agent (all services)."""
        return self.front.url

    @property
    def violations(self) -> list[str]:
        return self.front.violations + self.imds.violations

    def reset(self) -> None:
        self.moto.reset()
        self.front.reset()
        self.imds.reset()

    def client(self, service: str) -> Any:
        """A boto3 client straight to moto, for seeding and inspecting state."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.client(service, endpoint_url=self.moto.url, region_name=self.region,
                                                  **SEED_CREDENTIALS)
        return self._clients[service]

    def role_credentials(self, instance: Instance) -> dict[str, str]:
        # Real keys from moto STS for the instance's role; the front trusts them.
        creds = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{instance.account_id}:role/{instance.role_name}",
            RoleSessionName=instance.instance_id)["Credentials"]
        self.front.trust(creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
        return {"AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["SessionToken"],
                "Expiration": creds["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ")}

    def put_secure_parameter(self, name: str, value: str, *, key_id: str | None = None) -> str:
        """Seed an SSM SecureString; returns its ARN."""
        kw = {"KeyId": key_id} if key_id else {}
        self.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString", **kw)
        return f"arn:aws:ssm:{self.region}:{ACCOUNT_ID}:parameter{name if name.startswith('/') else '/' + name}"

    def create_role(self, name: str, policy: dict[str, Any] | None = None) -> str:
        """IAM role + instance profile for the VM (trusting EC2); returns the role ARN."""
        iam = self.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        if policy is not None:
            iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        iam.create_instance_profile(InstanceProfileName=name)
        iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
        return str(arn)

    def put_agent(self, body: bytes, key: str, bucket: str = "agents-us-east-1-0123abc") -> tuple[str, str]:
        """Upload an agent object as the stack does (providers/aws/agent_store.py); returns (bucket, key)."""
        s3 = self.client("s3")
        if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        return bucket, key

    def create_asg(self, name: str, *, desired: int = 2, hook: str | None = "drain", min_size: int = 0,
                   heartbeat_timeout: int = 300, instance_type: str = "t3.medium") -> list[str]:
        """Launch template + ASG (+ termination lifecycle hook); returns the instance ids."""
        self.client("ec2").create_launch_template(
            LaunchTemplateName=f"{name}-lt", LaunchTemplateData={"ImageId": "ami-12c6146b",
                                                                 "InstanceType": instance_type})
        asg = self.client("autoscaling")
        asg.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateName": f"{name}-lt", "Version": "$Latest"},
            MinSize=min_size, MaxSize=max(desired, 1) * 2, DesiredCapacity=desired,
            AvailabilityZones=[f"{self.region}a"])
        if hook:
            asg.put_lifecycle_hook(LifecycleHookName=hook, AutoScalingGroupName=name,
                                   LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                                   HeartbeatTimeout=heartbeat_timeout, DefaultResult="CONTINUE")
        return list(self.instances(name))

    def instances(self, asg: str) -> Iterator[str]:
        groups = self.client("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[asg])
        for group in groups["AutoScalingGroups"]:
            for inst in group["Instances"]:
                yield inst["InstanceId"]

    def become(self, instance_id: str, *, role: str | None = None) -> Instance:
        """Make IMDS describe moto instance ``instance_id`` (the VM the agent runs on)."""
        found = self.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
        self.imds.set(instance_id=instance_id, instance_type=found["InstanceType"], ami_id=found["ImageId"],
                      availability_zone=found["Placement"]["AvailabilityZone"], region=self.region,
                      local_ipv4=found.get("PrivateIpAddress", "10.0.1.23"),
                      **({"role_name": role} if role else {}))
        return self.imds.instance

    def begin_termination(self, instance_id: str, asg: str, hook: str = "drain", *,
                          decrement: bool = True) -> LifecycleAction:
        """Scale-in/instance refresh chose ``instance_id``: see :meth:`AwsFront.begin_termination`."""
        return self.front.begin_termination(instance_id, asg, hook, decrement=decrement)
