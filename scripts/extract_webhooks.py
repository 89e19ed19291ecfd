"""Extract what the receiver's tests check against, from GitHub's and Google's own packages.

Like scripts/extract_openapi.py does for the VM agent, this keeps only what
the webhook receiver (scaler/) meets, so the tests never check it against
shapes we made up:

* ``webhook-examples.json`` -- GitHub's example deliveries for ``workflow_job``
  (every action) and ``ping``, from npm ``@octokit/webhooks-examples``
  (``api.github.com/index.json``);
* ``webhook-schemas.json`` -- the OpenAPI 3.1 ``webhooks`` entries of those
  events (their payload schemas and the headers GitHub sends) and every
  component they reference, from npm ``@octokit/openapi-webhooks``
  (``generated/api.github.com.json``);
* ``github-reconcile.json`` -- the REST operations the reconcile calls, from
  npm ``@octokit/openapi`` (``generated/api.github.com.json``; enterprise
  runners from ``generated/ghec.json``);
* ``gcp-groups.json`` -- the Compute v1 ``regionInstanceGroupManagers``
  methods the receiver and its double use, and Secret Manager's ``access``,
  from the discovery documents in PyPI ``google-api-python-client``.

Output: tests/scaler/fixtures/. Regenerate (npm and PyPI reachable):

    venv/bin/python scripts/extract_webhooks.py

``--npm-dir DIR`` reuses packages already unpacked as DIR/<package name>/package,
``--gapi-dir DIR`` an unpacked google-api-python-client.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from api_subsets import (
    DOTCOM,
    GHEC,
    Methods,
    check_version,
    closure,
    discovery_subset,
    drop,
    gapi_unpack,
    grouped,
    npm_unpack,
    rest_subset,
    write,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "scaler" / "fixtures"

PACKAGES = {
    "@octokit/webhooks-examples": "7.6.1",
    "@octokit/openapi-webhooks": "12.1.0",
    "@octokit/openapi": "23.0.2",
}
GAPI_PACKAGE, GAPI_VERSION = "google-api-python-client", "2.202.0"

EXAMPLE_EVENTS = ("workflow_job", "ping")
WEBHOOKS = ("ping", "workflow-job-queued", "workflow-job-in-progress", "workflow-job-completed", "workflow-job-waiting")
REST_OPERATIONS = [
    (DOTCOM, "/repos/{owner}/{repo}/actions/runs", "get"),
    (DOTCOM, "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get"),
    (DOTCOM, "/repos/{owner}/{repo}/actions/runners", "get"),
    (DOTCOM, "/orgs/{org}/actions/runners", "get"),
    (GHEC, "/enterprises/{enterprise}/actions/runners", "get"),
    (DOTCOM, "/orgs/{org}/repos", "get"),
    (DOTCOM, "/app/installations/{installation_id}/access_tokens", "post"),
]
GCP_METHODS: Methods = {
    "compute.v1": [
        (("regionInstanceGroupManagers",), name)
        for name in ("get", "listManagedInstances", "createInstances", "deleteInstances", "resize")
    ],
    "secretmanager.v1": [(("projects", "secrets", "versions"), "access")],
}


# --- GitHub ---------------------------------------------------------------------------------------


def build_examples(examples_dir: Path) -> dict[str, Any]:
    index = json.loads((examples_dir / "api.github.com" / "index.json").read_text())
    return {
        "x-source": {"package": "@octokit/webhooks-examples", "version": PACKAGES["@octokit/webhooks-examples"],
                     "file": "api.github.com/index.json", "generator": "scripts/extract_webhooks.py"},
        "events": {e["name"]: e["examples"] for e in index if e["name"] in EXAMPLE_EVENTS},
    }


def build_webhook_schemas(openapi_webhooks_dir: Path) -> dict[str, Any]:
    doc = json.loads((openapi_webhooks_dir / "generated" / DOTCOM).read_text())
    hooks = {name: drop(copy.deepcopy(doc["webhooks"][name]), ("examples",)) for name in WEBHOOKS}
    return {
        "openapi": doc["openapi"],
        "info": {"title": "GitHub webhooks subset met by the gh-runners receiver", "version": doc["info"]["version"],
                 "x-source": {"package": "@octokit/openapi-webhooks",
                              "version": PACKAGES["@octokit/openapi-webhooks"], "file": f"generated/{DOTCOM}",
                              "generator": "scripts/extract_webhooks.py"}},
        "webhooks": hooks,
        "components": grouped(closure(doc, list(hooks.values()))),
    }


def build_rest(openapi_dir: Path) -> dict[str, Any]:
    docs = {name: json.loads((openapi_dir / "generated" / name).read_text()) for name in (DOTCOM, GHEC)}
    return {
        "openapi": docs[DOTCOM]["openapi"],
        "info": {"title": "GitHub REST subset called by the gh-runners reconcile",
                 "version": docs[DOTCOM]["info"]["version"],
                 "x-source": {"package": "@octokit/openapi", "version": PACKAGES["@octokit/openapi"],
                              "files": [f"generated/{DOTCOM}", f"generated/{GHEC}"],
                              "generator": "scripts/extract_webhooks.py"}},
        **rest_subset(docs, REST_OPERATIONS),
    }


# --- Google ---------------------------------------------------------------------------------------


def build_gcp(gapi_dir: Path) -> dict[str, Any]:
    apis = discovery_subset(gapi_dir, GCP_METHODS, keep_method_descriptions=True)
    return {"x-source": {"package": GAPI_PACKAGE, "version": GAPI_VERSION,
                         "files": [f"googleapiclient/discovery_cache/documents/{a}.json" for a in apis],
                         "generator": "scripts/extract_webhooks.py"},
            "apis": apis}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npm-dir", type=Path, help="DIR/<package>/package already unpacked (skips npm)")
    parser.add_argument("--gapi-dir", type=Path, help="unpacked google-api-python-client (skips pip)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        unpacked = {}
        for package, version in PACKAGES.items():
            found = args.npm_dir / package.replace("/", "+") / "package" if args.npm_dir else None
            unpacked[package] = check_version(found, package, version) if found and found.is_dir() \
                else npm_unpack(package, version, Path(tmp))
        write(args.out_dir / "webhook-examples.json", build_examples(unpacked["@octokit/webhooks-examples"]), REPO_ROOT)
        write(args.out_dir / "webhook-schemas.json", build_webhook_schemas(unpacked["@octokit/openapi-webhooks"]),
              REPO_ROOT)
        write(args.out_dir / "github-reconcile.json", build_rest(unpacked["@octokit/openapi"]), REPO_ROOT)
        gapi_dir = args.gapi_dir or gapi_unpack(GAPI_PACKAGE, GAPI_VERSION, GCP_METHODS, Path(tmp))
        write(args.out_dir / "gcp-groups.json", build_gcp(gapi_dir), REPO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
