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
import copy
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "tests" / "bootstrap" / "openapi"

OCTOKIT_PACKAGE = "@octokit/openapi"
OCTOKIT_VERSION = "23.0.2"
GAPI_PACKAGE = "google-api-python-client"
GAPI_VERSION = "2.202.0"

DOTCOM = "api.github.com.json"
GHEC = "ghec.json"

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


def _refs(node: Any) -> set[str]:
    """All local ``$ref`` targets below ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _strip_examples(node: Any) -> Any:
    """Drop media-type ``examples``: they are most of the bytes and validate nothing."""
    if isinstance(node, dict):
        return {k: _strip_examples(v) for k, v in node.items() if k != "examples"}
    if isinstance(node, list):
        return [_strip_examples(v) for v in node]
    return node


def _rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rename_refs(v, renames) for k, v in node.items()}
        if isinstance(out.get("$ref"), str) and out["$ref"] in renames:
            out["$ref"] = renames[out["$ref"]]
        return out
    if isinstance(node, list):
        return [_rename_refs(v, renames) for v in node]
    return node


def _closure(doc: dict[str, Any], roots: list[Any]) -> dict[str, Any]:
    """Every component (by ``#/components/...`` ref) reachable from ``roots``."""
    todo = set().union(*(_refs(r) for r in roots))
    seen: dict[str, Any] = {}
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        if not ref.startswith("#/components/"):
            raise SystemExit(f"unexpected non-local $ref {ref!r}")
        _, _, kind, name = ref.split("/", 3)
        target = _strip_examples(doc["components"][kind][name])
        seen[ref] = target
        todo |= _refs(target) - seen.keys()
    return seen


def build_github_subset(octokit_dir: Path, version: str) -> dict[str, Any]:
    """Build the pruned OpenAPI document from an unpacked @octokit/openapi."""
    docs = {
        name: json.loads((octokit_dir / "generated" / name).read_text())
        for name in (DOTCOM, GHEC)
    }
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, dict[str, Any]] = {}
    for src, path, method in _github_operations():
        try:
            op = docs[src]["paths"][path][method]
        except KeyError:
            raise SystemExit(f"{src} has no {method.upper()} {path}") from None
        op = _strip_examples(copy.deepcopy(op))
        op["x-subset-source"] = src
        closure = _closure(docs[src], [op])
        # Two sources may define one component name differently: keep both,
        # the ghec one under a suffixed name, and point ghec operations at it.
        renames: dict[str, str] = {}
        for ref, target in closure.items():
            _, _, kind, name = ref.split("/", 3)
            existing = components.get(kind, {}).get(name)
            if existing is not None and existing != target and src == GHEC:
                renames[ref] = f"#/components/{kind}/{name}--ghec"
        for ref, target in closure.items():
            new_ref = renames.get(ref, ref)
            _, _, kind, name = new_ref.split("/", 3)
            components.setdefault(kind, {})[name] = _rename_refs(target, renames)
        paths.setdefault(path, {})[method] = _rename_refs(op, renames)
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
        "paths": dict(sorted(paths.items())),
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }


# --- Google Cloud --------------------------------------------------------------

_GCP_METHODS = {
    # api: [(resource path, method name)]
    # A VM that is done leaves through its group: get (targetSize), deleteInstances or recreateInstances.
    "compute.v1": [(("regionInstanceGroupManagers",), name)
                   for name in ("listManagedInstances", "get", "deleteInstances", "recreateInstances")],
    "secretmanager.v1": [(("projects", "secrets", "versions"), "access")],
}


def _discovery_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= _discovery_refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _discovery_refs(value)
    return found


def _drop_descriptions(node: Any) -> Any:
    """Descriptions are prose; Compute's alone would be megabytes."""
    if isinstance(node, dict):
        return {
            k: _drop_descriptions(v)
            for k, v in node.items()
            if k not in ("description", "enumDescriptions", "enumDeprecated")
        }
    if isinstance(node, list):
        return [_drop_descriptions(v) for v in node]
    return node


def build_gcp_subset(gapi_dir: Path, version: str) -> dict[str, Any]:
    """Build the pruned discovery subset from an unpacked google-api-python-client."""
    apis: dict[str, Any] = {}
    for api, methods in _GCP_METHODS.items():
        doc = json.loads(
            (gapi_dir / "googleapiclient/discovery_cache/documents" / f"{api}.json").read_text()
        )
        picked: dict[str, Any] = {}
        for resource_path, name in methods:
            node: dict[str, Any] = doc
            for part in resource_path:
                node = node["resources"][part]
            picked[".".join((*resource_path, name))] = _drop_descriptions(node["methods"][name])
        todo = _discovery_refs(picked)
        schemas: dict[str, Any] = {}
        while todo:
            ref = todo.pop()
            if ref in schemas:
                continue
            schemas[ref] = _drop_descriptions(doc["schemas"][ref])
            todo |= _discovery_refs(schemas[ref]) - schemas.keys()
        apis[api] = {
            "rootUrl": doc["rootUrl"],
            "servicePath": doc["servicePath"],
            "revision": doc.get("revision"),
            "methods": picked,
            "schemas": dict(sorted(schemas.items())),
        }
    return {
        "x-source": {
            "package": GAPI_PACKAGE,
            "version": version,
            "files": [f"googleapiclient/discovery_cache/documents/{a}.json" for a in apis],
            "generator": "scripts/extract_openapi.py",
        },
        "apis": apis,
    }


# --- fetching --------------------------------------------------------------------


def fetch_octokit(version: str, workdir: Path) -> Path:
    """``npm pack`` the package and unpack only the two files we read (no node_modules)."""
    out = subprocess.run(
        ["npm", "pack", f"{OCTOKIT_PACKAGE}@{version}", "--json", "--pack-destination", str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=workdir,
    )
    tgz = workdir / json.loads(out.stdout)[0]["filename"]
    wanted = {f"package/generated/{DOTCOM}", f"package/generated/{GHEC}", "package/package.json"}
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if m.name in wanted]
        tar.extractall(workdir, members=members, filter="data")
    return workdir / "package"


def fetch_gapi(version: str, workdir: Path) -> Path:
    """``pip download`` the wheel and unpack only the discovery documents we read."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
         f"{GAPI_PACKAGE}=={version}", "-d", str(workdir)],
        check=True,
    )
    wheel = next(workdir.glob("google_api_python_client-*.whl"))
    dest = workdir / "gapi"
    with zipfile.ZipFile(wheel) as zf:
        for api in _GCP_METHODS:
            zf.extract(f"googleapiclient/discovery_cache/documents/{api}.json", dest)
    return dest


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Sorted, one key per line: reviewable diffs when the package is bumped.
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
    print(f"wrote {shown} ({path.stat().st_size // 1024} KiB)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--octokit-version", default=OCTOKIT_VERSION)
    parser.add_argument("--octokit-dir", type=Path, help="unpacked @octokit/openapi (skips npm)")
    parser.add_argument("--gapi-version", default=GAPI_VERSION)
    parser.add_argument("--gapi-dir", type=Path, help="unpacked google-api-python-client (skips pip)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        octokit_dir = args.octokit_dir or fetch_octokit(args.octokit_version, Path(tmp))
        pkg = json.loads((octokit_dir / "package.json").read_text())
        if pkg["version"] != args.octokit_version:
            raise SystemExit(f"{octokit_dir} is {pkg['version']}, expected {args.octokit_version}")
        _write(args.out_dir / "github-subset.json", build_github_subset(octokit_dir, pkg["version"]))

        gapi_dir = args.gapi_dir or fetch_gapi(args.gapi_version, Path(tmp))
        _write(args.out_dir / "gcp-subset.json", build_gcp_subset(gapi_dir, args.gapi_version))
    return 0


if __name__ == "__main__":
    sys.exit(main())

