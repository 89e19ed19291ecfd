"""A receiver as deployed: what one function instance builds once and keeps between invocations.

The same wiring serves the Lambda handler (scaler/aws.py), the Cloud Run
functions (scaler/gcp.py) and the local server (scaler/server.py); only the
cloud adapter (its groups and its secret store) differs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from scaler.config import ScalerConfig, SecretRef
from scaler.decision import Receiver
from scaler.github import GitHub
from scaler.reconcile import PoolPlan, ReconcileGroups, reconcile


class SecretGroups(ReconcileGroups, Protocol):
    """A cloud adapter: the groups, and the cloud's secret store."""

    def read_secret(self, ref: SecretRef) -> str: ...


class Function:
    """The webhook receiver and the reconcile over one cloud's groups. Secrets are read from the cloud's
    store when first needed (and the webhook secret again after a rotation), never at start."""

    def __init__(self, config: ScalerConfig, groups: SecretGroups) -> None:
        self.config, self.groups = config, groups
        self.receiver = Receiver(config, lambda: groups.read_secret(config.webhook_secret).encode(), groups)

    def github(self) -> GitHub:
        """A client for the reconcile; it reads the GitHub credential when it first calls GitHub."""
        return GitHub(self.config.github.api_url, lambda: self.groups.read_secret(self.config.github_credential),
                      self.config.reconcile.request_budget)

    def reconcile(self, now: datetime) -> list[PoolPlan]:
        return reconcile(self.config, self.github(), self.groups, now)
