"""Extract the API descriptions the bootstrap test doubles validate against.

The doubles in tests/bootstrap/doubles/ must not check requests and responses
against shapes we made up: they use the providers' own published descriptions.
Those are far too large to commit (GitHub's is ~14 MB per variant), so this
script keeps only the operations the VM agent calls, plus every component they
reference, and records where they came from.

* GitHub: npm package ``@octokit/openapi`` (``generated/api.github.com.json``;
  enterprise-scoped endpoints only exist in ``generated/ghec.json``).
  Output: tests/bootstrap/openapi/github-subset.json (OpenAPI 3.0.3, refs kept
  and their components included).
* Google Cloud: the discovery documents shipped in the PyPI package
  ``google-api-python-client`` (Compute v1, Secret Manager v1).
  Output: tests/bootstrap/openapi/gcp-subset.json (discovery methods + schemas).

Regenerate (network access to the npm registry and PyPI required):

    venv/bin/python scripts/extract_openapi.py

``--octokit-dir`` / ``--gapi-dir`` reuse an already unpacked package instead.
"""

from __future__ import annotations

import argparse
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
    discovery_subset,
    gapi_unpack,
    npm_unpack,
    rest_subset,
    write,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "bootstrap" / "openapi"

OCTOKIT_PACKAGE = "@octokit/openapi"
OCTOKIT_VERSION = "23.0.2"
GAPI_PACKAGE = "google-api-python-client"
GAPI_VERSION = "2.202.0"

_SCOPES = {
    "repo": "/repos/{owner}/{repo}/actions",
    "org": "/orgs/{org}/actions",
    "enterprise": "/enterprises/{enterprise}/actions",
}


def _github_operations() -> list[tuple[str, str, str]]:
    """(source file, path, method) of every operation the agent may call."""
    ops: list[tuple[str, str, str]] = []
    for scope, prefix in _SCOPES.items():
        # Enterprise endpoints are GitHub Enterprise Cloud only: ghec.json.
        src = GHEC if scope == "enterprise" else DOTCOM
        ops += [
            (src, f"{prefix}/runners/generate-jitconfig", "post"),
            (src, f"{prefix}/runners/registration-token", "post"),
            # remove-token: what `config.sh remove --token` needs on persistent pools.
            (src, f"{prefix}/runners/remove-token", "post"),
            (src, f"{prefix}/runners", "get"),
            (src, f"{prefix}/runners/{{runner_id}}", "get"),
            (src, f"{prefix}/runners/{{runner_id}}", "delete"),
        ]
        if scope != "repo":  # repositories have no runner groups
            ops.append((src, f"{prefix}/runner-groups", "get"))
            # The ghost sweep lists only its own runner group's runners.
            ops.append((src, f"{prefix}/runner-groups/{{runner_group_id}}/runners", "get"))
    ops.append((DOTCOM, "/app/installations/{installation_id}/access_tokens", "post"))
    # The runner release metadata (asset digests) the agent verifies the tarball with.
    ops.append((DOTCOM, "/repos/{owner}/{repo}/releases/tags/{tag}", "get"))
    # runner_version "latest": resolved at boot.
    ops.append((DOTCOM, "/repos/{owner}/{repo}/releases/latest", "get"))
    return ops


def build_github_subset(octokit_dir: Path, version: str) -> dict[str, Any]:
    """Build the pruned OpenAPI document from an unpacked @octokit/openapi."""
    docs = {
        name: json.loads((octokit_dir / "generated" / name).read_text())
        for name in (DOTCOM, GHEC)
    }
    return {
        "openapi": docs[DOTCOM]["openapi"],
        "info": {
            "title": "GitHub REST API subset used by the gh-runners VM agent",
            "version": docs[DOTCOM]["info"]["version"],
            "x-source": {
                "package": OCTOKIT_PACKAGE,
                "version": version,
                "files": [f"generated/{DOTCOM}", f"generated/{GHEC}"],
                "generator": "scripts/extract_openapi.py",
            },
        },
        **rest_subset(docs, _github_operations()),
    }


# --- Google Cloud --------------------------------------------------------------

_GCP_METHODS: Methods = {
    # api: [(resource path, method name)]
    # A VM that is done leaves through its group: get (targetSize), deleteInstances or recreateInstances.
    "compute.v1": [(("regionInstanceGroupManagers",), name)
                   for name in ("listManagedInstances", "get", "deleteInstances", "recreateInstances")],
    "secretmanager.v1": [(("projects", "secrets", "versions"), "access")],
}


def build_gcp_subset(gapi_dir: Path, version: str) -> dict[str, Any]:
    """Build the pruned discovery subset from an unpacked google-api-python-client."""
    apis = discovery_subset(gapi_dir, _GCP_METHODS)
    return {
        "x-source": {
            "package": GAPI_PACKAGE,
            "version": version,
            "files": [f"googleapiclient/discovery_cache/documents/{a}.json" for a in apis],
            "generator": "scripts/extract_openapi.py",
        },
        "apis": apis,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--octokit-version", default=OCTOKIT_VERSION)
    parser.add_argument("--octokit-dir", type=Path, help="unpacked @octokit/openapi (skips npm)")
    parser.add_argument("--gapi-version", default=GAPI_VERSION)
    parser.add_argument("--gapi-dir", type=Path, help="unpacked google-api-python-client (skips pip)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        version = args.octokit_version
        octokit_dir = check_version(args.octokit_dir, OCTOKIT_PACKAGE, version) if args.octokit_dir \
            else npm_unpack(OCTOKIT_PACKAGE, version, Path(tmp), [f"generated/{DOTCOM}", f"generated/{GHEC}"])
        write(args.out_dir / "github-subset.json", build_github_subset(octokit_dir, version), REPO_ROOT)

        gapi_dir = args.gapi_dir or gapi_unpack(GAPI_PACKAGE, args.gapi_version, _GCP_METHODS, Path(tmp))
        write(args.out_dir / "gcp-subset.json", build_gcp_subset(gapi_dir, args.gapi_version), REPO_ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())

