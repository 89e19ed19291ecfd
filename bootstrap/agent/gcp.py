"""GCP from inside the instance: metadata server, Secret Manager, Compute."""

from __future__ import annotations

import base64
import functools
import urllib.parse

from .config import Config, endpoint
from .http import Response, Retry, expect, fetch


class GcpCloud:
    def __init__(self, cfg: Config, retry: Retry) -> None:
        self.cfg, self.retry = cfg, retry
        # metadata.google.internal resolves to 169.254.169.254, the address the firewall blocks.
        self.metadata = endpoint("GCE_METADATA", "http://metadata.google.internal") + "/computeMetadata/v1"
        self.secretmanager = endpoint("SECRETMANAGER", "https://secretmanager.googleapis.com")
        self.compute = endpoint("COMPUTE", "https://compute.googleapis.com")

    def _meta(self, path: str) -> Response:
        call = functools.partial(fetch, "GET", f"{self.metadata}/{path}", headers={"Metadata-Flavor": "Google"},
                                 direct=True, timeout=5)
        return expect(self.retry(f"metadata {path}", call), f"metadata {path}")

    def instance_id(self) -> str:
        # The numeric id, not the name: it is what listManagedInstances reports as `id`.
        return self._meta("instance/id").body.decode().strip()

    def _access_token(self) -> str:
        token: str = self._meta("instance/service-accounts/default/token").json()["access_token"]
        return token

    def _api(self, method: str, url: str, what: str) -> Response:
        token = self._access_token()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = b"" if method == "POST" else None
        answer = self.retry(what, functools.partial(fetch, method, url, headers=headers, data=data))
        del token, headers
        return expect(answer, what)

    def read_secret(self) -> str:
        url = f"{self.secretmanager}/v1/{self.cfg.secret}/versions/latest:access"
        answer = self._api("GET", url, f"Secret Manager access {self.cfg.secret}")
        return base64.b64decode(answer.json()["payload"]["data"]).decode()

    def termination_notice(self) -> str | None:
        # GCE announces deletion, preemption and MIG replacement with an ACPI
        # shutdown: systemd stops the agent with SIGTERM, nothing to poll.
        return None

    def complete_termination(self, instance_id: str) -> None:
        return None

    def alive_instances(self) -> set[str]:
        """Numeric ids of this MIG's instances (any state: a listed instance still exists)."""
        base = (f"{self.compute}/compute/v1/projects/{self.cfg.project}/regions/{self.cfg.region}"
                f"/instanceGroupManagers/{self.cfg.group}/listManagedInstances")
        alive: set[str] = set()
        page = ""
        while True:
            url = base + ("?" + urllib.parse.urlencode({"pageToken": page}) if page else "")
            doc = self._api("POST", url, "Compute listManagedInstances").json()
            alive.update(str(m["id"]) for m in doc.get("managedInstances", []) if m.get("id"))
            page = doc.get("nextPageToken", "")
            if not page:
                return alive

