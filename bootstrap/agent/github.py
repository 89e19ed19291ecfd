"""The GitHub REST calls the agent makes, for repository, organization and enterprise runners."""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

from .config import Config
from .http import AgentError, Response, Retry, expect, fetch, transient

API_VERSION = "2022-11-28"
# Repositories have only the default runner group, id 1: what GitHub's own example for a repository's
# generate-jitconfig sends (@octokit/openapi api.github.com.json, POST /repos/{owner}/{repo}/actions/runners/
# generate-jitconfig, example `runner_group_id: 1`; docs.github.com/rest/actions/self-hosted-runners).
DEFAULT_GROUP_ID = 1


def _busy_or_transient(answer: Response) -> bool:
    # 422: the runner is still finishing a job (e.g. one just cancelled by its stop): GitHub refuses to
    # delete a busy runner, and it is free a moment later.
    return answer.status == 422 or transient(answer)


class GitHub:
    def __init__(self, cfg: Config, token: str, retry: Retry) -> None:
        self.cfg, self.retry, self.token = cfg, retry, token
        self._headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": API_VERSION}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,),
             again: Any = transient) -> Response:
        url = self.cfg.api_url + path
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        what = f"GitHub {method} {path.split('?')[0]}"
        attempt = functools.partial(fetch, method, url, headers=headers, data=data)
        return expect(self.retry(what, attempt, again), what, ok)

    def _pages(self, path: str, key: str) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            sep = "&" if "?" in path else "?"
            items = self.call("GET", f"{path}{sep}per_page=100&page={page}").json()[key]
            yield from items
            if len(items) < 100:
                return
            page += 1

    # --- registration -------------------------------------------------------

    def runner_group_id(self) -> int:
        """The id of the pool's runner group: from the config when the stack knows it, else looked up."""
        if self.cfg.runner_group_id is not None:
            return self.cfg.runner_group_id
        if self.cfg.scope == "repository":
            return DEFAULT_GROUP_ID
        wanted = self.cfg.runner_group.lower()
        for group in self._pages(f"{self.cfg.scope_path}/actions/runner-groups", "runner_groups"):
            if group["name"].lower() == wanted or (wanted == "default" and group.get("default")):
                return int(group["id"])
        raise AgentError(f"runner group {self.cfg.runner_group!r} not found in {self.cfg.scope} {self.cfg.target}")

    def jit_config(self, name: str, group_id: int) -> tuple[int, str]:
        """(runner id, encoded JIT config) for a just-in-time runner."""
        body = {"name": name, "runner_group_id": group_id, "labels": list(self.cfg.labels), "work_folder": "_work"}
        path = f"{self.cfg.scope_path}/actions/runners/generate-jitconfig"
        doc = self.call("POST", path, body, ok=(201,)).json()
        return int(doc["runner"]["id"]), str(doc["encoded_jit_config"])

    def registration_token(self) -> str:
        doc = self.call("POST", f"{self.cfg.scope_path}/actions/runners/registration-token", ok=(201,)).json()
        return str(doc["token"])

    # --- runners ------------------------------------------------------------

    def runners(self, name: str = "", group_id: int | None = None) -> Iterator[dict[str, Any]]:
        """The scope's runners (or one runner group's), optionally only those named `name`."""
        if group_id is not None:
            return self._pages(f"{self.cfg.scope_path}/actions/runner-groups/{group_id}/runners", "runners")
        query = "?" + urllib.parse.urlencode({"name": name}) if name else ""
        return self._pages(f"{self.cfg.scope_path}/actions/runners{query}", "runners")

    def find_runner(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.runners(name) if r["name"] == name), None)

    def runner(self, runner_id: int) -> dict[str, Any] | None:
        answer = self.call("GET", f"{self.cfg.scope_path}/actions/runners/{runner_id}", ok=(200, 404))
        return answer.json() if answer.status == 200 else None

    def delete_runner(self, runner_id: int, wait_while_busy: bool = True) -> bool:
        """Deregister; False if it is busy (and `wait_while_busy` is off). Already gone is fine."""
        again = _busy_or_transient if wait_while_busy else transient
        answer = self.call("DELETE", f"{self.cfg.scope_path}/actions/runners/{runner_id}", ok=(204, 404, 422),
                           again=again)
        return answer.status != 422

    # --- runner releases (github.com, even for GHES targets) ------------------

    def release(self, version: str) -> dict[str, Any]:
        """Release metadata of actions/runner `version` ("latest" or X.Y.Z)."""
        tag = "latest" if version == "latest" else f"tags/v{version}"
        url = f"{self.cfg.releases_url}/repos/actions/runner/releases/{tag}"
        # Our token is only good for the target's API; send it to the releases
        # API only when they are the same host (5,000 an hour instead of 60 per address).
        headers = dict(self._headers)
        if self.cfg.releases_url != self.cfg.api_url:
            headers.pop("Authorization", None)
        what = f"GitHub release actions/runner {version}"
        answer = self.retry(what, functools.partial(fetch, "GET", url, headers=headers))
        doc: dict[str, Any] = expect(answer, what).json()
        return doc
