"""One stack on loopback: its pools seeded in the cloud doubles and a receiver per cloud, running."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from doubles.aws import REGION

from .world import PoolSpec, document, seed_aws_group

WEBHOOK_SECRET = b"It's a Secret to Everybody"  # GitHub's documented example secret
RECEIVER_KEY = ("AKIARECEIVERRECEIVER", "receiver-secret-key")  # the receiver role's keys, as the front trusts them
PAT = "ghp_receiverreconcileTOKEN000000000000000"
WEBHOOK_PARAMETER = "/ghs/test/webhook-secret"
CREDENTIAL_PARAMETER = "/ghs/test/credential"


@dataclass
class Stack:
    pools: list[PoolSpec]
    aws: Any | None = None  # ReceiverProcess
    gcp: Any | None = None

    def pool(self, name: str) -> PoolSpec:
        return next(p for p in self.pools if p.name == name)


def build_stack(pools: list[PoolSpec], *, aws_front: Any, gcp: Any, github_api: Any, start_receiver: Any,
                secret: bytes, pat: str, clouds: tuple[str, ...] = ("aws", "gcp"), scope: str = "repository",
                target: str = "octo-org/octo-repo", budget: int = 100, credential: str | None = None) -> Stack:
    """Seed every pool's group and both clouds' secrets, then start one receiver per cloud in `clouds`."""
    credential_doc = credential or json.dumps({"kind": "pat", "token": pat})
    stack = Stack(pools)
    if "aws" in clouds:
        ssm = aws_front.seed("ssm")
        ssm.put_parameter(Name=WEBHOOK_PARAMETER, Value=secret.decode(), Type="SecureString")
        ssm.put_parameter(Name=CREDENTIAL_PARAMETER, Value=credential_doc, Type="SecureString")
        for pool in pools:
            if pool.cloud == "aws":
                seed_aws_group(aws_front, pool)
        stack.aws = start_receiver(document(
            "aws", pools, github_url=github_api.url, scope=scope, target=target, budget=budget,
            webhook_secret={"location": WEBHOOK_PARAMETER, "region": REGION},
            credential={"location": CREDENTIAL_PARAMETER, "region": REGION},
            endpoints={"aws": aws_front.url}))
    if "gcp" in clouds:
        webhook_name = gcp.add_secret("ghs-test-webhook-secret", secret)
        credential_name = gcp.add_secret("ghs-test-credential", credential_doc.encode())
        for pool in pools:
            if pool.cloud == "gcp":
                gcp.compute.add_group(pool.group, base=pool.group, size=pool.min)
        stack.gcp = start_receiver(document(
            "gcp", pools, github_url=github_api.url, scope=scope, target=target, budget=budget,
            webhook_secret={"location": webhook_name, "region": None},
            credential={"location": credential_name, "region": None},
            endpoints={"gcp_compute": gcp.compute.url, "gcp_metadata": gcp.metadata.url,
                       "gcp_secretmanager": gcp.secrets.url}))
    for receiver in (stack.aws, stack.gcp):  # started side by side; now wait until both listen
        if receiver is not None:
            assert receiver.url
    return stack
