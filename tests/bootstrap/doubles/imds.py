"""EC2 instance metadata service (IMDSv2) double.

Why not moto's: ``moto_server`` answers ``/latest/api/token`` and a few
``/latest/meta-data/`` paths (see ``moto/instance_metadata/responses.py``), but

* it never checks the token (IMDSv1 requests succeed), ignores the TTL header
  and returns the fixed token ``fake-imdsv2-token``;
* ``instance-id`` is always ``i-fake`` and the region always us-east-1, so they
  cannot match an instance moto created in an Auto Scaling group;
* credentials are the fixed ``test-key`` of a role named ``default-role``;
* ``autoscaling/target-lifecycle-state``, ``spot/instance-action``,
  ``events/recommendations/rebalance``, ``iam/info``, ``tags/instance/``,
  ``/latest/dynamic/instance-identity/document`` and ``/latest/user-data`` are
  missing (``spot/instance-action`` is a 500 NotImplementedError).

This double implements the IMDSv2 protocol as documented: ``PUT
/latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds`` (1–21600,
else 400; refused with 403 when ``X-Forwarded-For`` is present); every other
request needs a live ``X-aws-ec2-metadata-token`` (401 without, like
``HttpTokens=required``, which our launch templates set). Role credentials come
from ``credentials_provider`` — the ``aws`` fixture wires it to moto STS
``AssumeRole`` so the keys are ones moto knows, and registers them with the AWS
front so it can check the agent's SigV4 signatures.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ._http import HttpDouble, Request, Response


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Instance:
    """What IMDS tells the VM about itself; tests point it at a moto instance."""

    instance_id: str = "i-0123456789abcdef0"
    instance_type: str = "t3.medium"
    ami_id: str = "ami-0abcdef1234567890"
    region: str = "us-east-1"
    availability_zone: str = "us-east-1a"
    account_id: str = "123456789012"
    role_name: str = "gh-runners-pool"
    local_ipv4: str = "10.0.1.23"
    architecture: str = "x86_64"
    user_data: bytes | None = None
    tags: dict[str, str] | None = None  # None: instance metadata tags not enabled (404)
    # None when the instance is not in an Auto Scaling group (the path is absent).
    lifecycle_state: str | None = "InService"
    spot_action: dict[str, str] | None = None  # e.g. {"action": "terminate", "time": "..."}
    rebalance: dict[str, str] | None = None  # e.g. {"noticeTime": "..."}
    extra: dict[str, str] = field(default_factory=dict)  # any other meta-data path -> value


class ImdsDouble(HttpDouble):
    """See the module docstring. ``instance`` is reset between tests."""

    name = "imds"

    def __init__(self) -> None:
        super().__init__()
        self.credentials_provider: Callable[[Instance], dict[str, str]] | None = None
        self.reset()

    def reset(self) -> None:
        super().reset()
        with self._cond:
            self.instance = Instance()
            self.tokens: dict[str, float] = {}  # token -> expiry
            self.tokens_required = True  # False emulates HttpTokens=optional (IMDSv1 allowed)
            self._creds: dict[str, str] | None = None  # the provider is session wiring: kept

    def fault_body(self, status: int) -> Any:
        return ""

    def set(self, **changes: Any) -> None:
        """Change instance facts, e.g. ``set(lifecycle_state="Terminated")``; wakes waiters."""
        with self._cond:
            for key, value in changes.items():
                if not hasattr(self.instance, key):
                    raise AttributeError(key)
                setattr(self.instance, key, value)
            self.changed()

    def interrupt_spot(self, action: str = "terminate", in_seconds: int = 120) -> None:
        """Publish a spot interruption notice (``spot/instance-action``)."""
        self.set(spot_action={"action": action, "time": _iso(time.time() + in_seconds)})

    def credentials(self) -> dict[str, str]:
        """The role credentials IMDS hands out (cached until 5 minutes before expiry)."""
        with self._cond:
            if self._creds is None or _parse_iso(self._creds["Expiration"]) - time.time() < 300:
                if self.credentials_provider is not None:
                    creds = self.credentials_provider(self.instance)
                else:
                    creds = {"AccessKeyId": "ASIA" + secrets.token_hex(8).upper(),
                             "SecretAccessKey": secrets.token_urlsafe(30), "Token": secrets.token_urlsafe(60),
                             "Expiration": _iso(time.time() + 6 * 3600)}
                self._creds = {"Code": "Success", "LastUpdated": _iso(time.time()), "Type": "AWS-HMAC", **creds}
            return self._creds

    def _text(self, status: int, body: str = "", **headers: str) -> Response:
        return Response(status, body, {"Server": "EC2ws", **headers}, "text/plain")

    def handle(self, req: Request) -> Response:
        if req.path == "/latest/api/token":
            return self._token(req)
        token = req.header("x-aws-ec2-metadata-token")
        with self._cond:
            valid = token is not None and self.tokens.get(token, 0) > time.time()
        if (token is not None and not valid) or (token is None and self.tokens_required):
            return self._text(401, "")
        if req.method != "GET":
            return self._text(405, "")
        value = self._lookup(req.path)
        if value is None:
            return self._text(404, "")
        return self._text(200, value)

    def _token(self, req: Request) -> Response:
        if req.method != "PUT":
            return self._text(405, "")
        if req.header("x-forwarded-for") is not None:
            return self._text(403, "")
        ttl = req.header("x-aws-ec2-metadata-token-ttl-seconds")
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return self._text(400, "")
        token = secrets.token_urlsafe(42)
        with self._cond:
            self.tokens[token] = time.time() + int(ttl)
        return self._text(200, token, **{"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": ttl})

    def _tree(self) -> dict[str, Any]:
        i = self.instance
        meta: dict[str, Any] = {
            "ami-id": i.ami_id, "instance-id": i.instance_id, "instance-type": i.instance_type,
            "local-ipv4": i.local_ipv4, "local-hostname": f"ip-{i.local_ipv4.replace('.', '-')}.ec2.internal",
            "hostname": f"ip-{i.local_ipv4.replace('.', '-')}.ec2.internal", "instance-life-cycle":
                "spot" if i.spot_action is not None else "on-demand",
            "placement": {"region": i.region, "availability-zone": i.availability_zone},
            "iam": {
                "info": lambda: json.dumps({
                    "Code": "Success", "LastUpdated": _iso(time.time()),
                    "InstanceProfileArn": f"arn:aws:iam::{i.account_id}:instance-profile/{i.role_name}",
                    "InstanceProfileId": "AIPA" + i.instance_id[2:14].upper()}, indent=2),
                "security-credentials": {i.role_name: lambda: json.dumps(self.credentials(), indent=2)},
            },
            **i.extra,
        }
        if i.lifecycle_state is not None:
            meta["autoscaling"] = {"target-lifecycle-state": i.lifecycle_state}
        if i.spot_action is not None:
            meta["spot"] = {"instance-action": json.dumps(i.spot_action)}
        if i.rebalance is not None:
            meta["events"] = {"recommendations": {"rebalance": json.dumps(i.rebalance)}}
        if i.tags is not None:
            meta["tags"] = {"instance": dict(i.tags)}
        identity = {
            "accountId": i.account_id, "architecture": i.architecture, "availabilityZone": i.availability_zone,
            "imageId": i.ami_id, "instanceId": i.instance_id, "instanceType": i.instance_type,
            "pendingTime": _iso(time.time() - 60), "privateIp": i.local_ipv4, "region": i.region,
            "version": "2017-09-30",
        }
        return {"meta-data": meta, "dynamic": {"instance-identity": {"document": json.dumps(identity, indent=2)}}}

    def _lookup(self, path: str) -> str | None:
        if not path.startswith("/latest/"):
            return None
        rel = path[len("/latest/"):]
        if rel == "user-data":
            data = self.instance.user_data
            return data.decode() if data is not None else None
        node: Any = self._tree()
        for part in [p for p in rel.split("/") if p]:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        if callable(node):
            return str(node())
        if isinstance(node, dict):  # a directory: one entry per line, sub-directories with "/"
            return "\n".join(f"{k}/" if isinstance(v, dict) else k for k, v in node.items())
        return str(node)


def _parse_iso(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
