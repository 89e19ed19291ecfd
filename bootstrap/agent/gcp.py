"""GCP from inside the instance: metadata server, Secret Manager, Compute (leaving the MIG)."""

from __future__ import annotations

import base64
import functools
import json
import urllib.parse
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from .config import Config, endpoint
from .http import Response, Retry, expect, fetch
from .log import log


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

    def _api(self, method: str, url: str, what: str, body: Any = None) -> Response:
        token = self._access_token()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = b"" if method == "POST" else None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
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

    def lifecycle_state(self) -> str:
        return ""

    def complete_termination(self, instance_id: str, wait: float = 0) -> None:
        return None

    @property
    def _manager(self) -> str:
        return (f"{self.compute}/compute/v1/projects/{self.cfg.project}/regions/{self.cfg.region}"
                f"/instanceGroupManagers/{self.cfg.group}")

    def _sizes(self) -> tuple[int, int]:
        """(targetSize, the floor now)."""
        size = int(self._api("GET", self._manager, "Compute instanceGroupManagers.get").json()["targetSize"])
        return size, current_floor(self.cfg.floor, datetime.now(timezone.utc))

    def above_floor(self) -> bool:
        size, floor = self._sizes()
        return size > floor

    def leave_group(self, instance_id: str, replace: bool, shrink_only: bool = False) -> bool:
        """Leave through the MIG: deleteInstances, which lowers its targetSize, unless that would go below
        the pool's floor now (or `replace`): then recreateInstances, and the group replaces us, or with
        `shrink_only` we stay (False)."""
        zone = self._meta("instance/zone").body.decode().strip().rsplit("/", 1)[-1]
        name = self._meta("instance/name").body.decode().strip()
        size, floor = self._sizes()
        if shrink_only and size - 1 < floor:
            log.info("group %s is at its floor (%d)", self.cfg.group, floor)
            return False
        verb = "recreateInstances" if replace or size - 1 < floor else "deleteInstances"
        self._api("POST", f"{self._manager}/{verb}", f"Compute {verb}",
                  {"instances": [f"zones/{zone}/instances/{name}"]})
        log.info("left group %s: %s (target size %d, floor %d)", self.cfg.group, verb, size, floor)
        return True

    def alive_instances(self) -> set[str]:
        """Numeric ids of this MIG's instances (any state: a listed instance still exists)."""
        base = f"{self._manager}/listManagedInstances"
        alive: set[str] = set()
        page = ""
        while True:
            url = base + ("?" + urllib.parse.urlencode({"pageToken": page}) if page else "")
            doc = self._api("POST", url, "Compute listManagedInstances").json()
            alive.update(str(m["id"]) for m in doc.get("managedInstances", []) if m.get("id"))
            page = doc.get("nextPageToken", "")
            if not page:
                return alive



# --- the floor: min, moved by the pool's schedules ---------------------------------


def current_floor(floor: dict[str, Any], now: datetime) -> int:
    """The size the pool's schedules hold now (the one that fired last), else its min."""
    size, latest = int(floor.get("min", 0)), None
    for schedule in floor.get("schedules", []):
        fired = last_firing(schedule, now)
        if fired is not None and (latest is None or fired > latest):
            size, latest = int(schedule["desired"]), fired
    return size


def last_firing(schedule: dict[str, Any], now: datetime) -> datetime | None:
    """When a schedule (cron fields expanded by the renderer) last fired before `now`, within a year."""
    zone = ZoneInfo(schedule["time_zone"])
    local = now.astimezone(zone)
    minutes, hours, days, months, weekdays = (set(schedule[k]) for k in ("minutes", "hours", "days", "months",
                                                                          "weekdays"))
    times = sorted(((h, m) for h in hours for m in minutes), reverse=True)
    for back in range(367):
        day = local.date() - timedelta(days=back)
        in_month, in_week = day.day in days, day.isoweekday() % 7 in weekdays
        # Vixie cron: when both day fields are restricted, a day matching either fires.
        if day.month not in months or not ((in_month or in_week) if schedule["either"] else in_month and in_week):
            continue
        for hour, minute in times:
            when = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            if when <= local:
                return when
    return None
