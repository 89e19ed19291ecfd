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
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

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
DOTCOM, GHEC = "api.github.com.json", "ghec.json"
REST_OPERATIONS = [
    (DOTCOM, "/repos/{owner}/{repo}/actions/runs", "get"),
    (DOTCOM, "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "get"),
    (DOTCOM, "/repos/{owner}/{repo}/actions/runners", "get"),
    (DOTCOM, "/orgs/{org}/actions/runners", "get"),
    (GHEC, "/enterprises/{enterprise}/actions/runners", "get"),
    (DOTCOM, "/orgs/{org}/repos", "get"),
    (DOTCOM, "/app/installations/{installation_id}/access_tokens", "post"),
]
GCP_METHODS = {
    "compute.v1": [
        (("regionInstanceGroupManagers",), name)
        for name in ("get", "listManagedInstances", "createInstances", "deleteInstances", "resize")
    ],
    "secretmanager.v1": [(("projects", "secrets", "versions"), "access")],
}


# --- JSON reference closure (OpenAPI: "#/components/..."; discovery: schema names) ---------------


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _drop(node: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _drop(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [_drop(v, keys) for v in node]
    return node


def _components(doc: dict[str, Any], roots: list[Any], rename: dict[str, str] | None = None) -> dict[str, Any]:
    """Every ``#/components/<kind>/<name>`` reachable from ``roots``, as {kind: {name: value}}."""
    out: dict[str, dict[str, Any]] = {}
    todo, seen = set().union(*(_refs(r) for r in roots)), set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, kind, name = ref.split("/", 3)
        value = _drop(doc["components"][kind][name], ("examples",))
        out.setdefault(kind, {})[name] = value
        todo |= _refs(value) - seen
    return out


def _rename(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rename(v, renames) for k, v in node.items()}
        if isinstance(out.get("$ref"), str) and out["$ref"] in renames:
            out["$ref"] = renames[out["$ref"]]
        return out
    if isinstance(node, list):
        return [_rename(v, renames) for v in node]
    return node


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
    hooks = {name: _drop(copy.deepcopy(doc["webhooks"][name]), ("examples",)) for name in WEBHOOKS}
    return {
        "openapi": doc["openapi"],
        "info": {"title": "GitHub webhooks subset met by the gh-runners receiver", "version": doc["info"]["version"],
                 "x-source": {"package": "@octokit/openapi-webhooks",
                              "version": PACKAGES["@octokit/openapi-webhooks"], "file": f"generated/{DOTCOM}",
                              "generator": "scripts/extract_webhooks.py"}},
        "webhooks": hooks,
        "components": _components(doc, list(hooks.values())),
    }


def build_rest(openapi_dir: Path) -> dict[str, Any]:
    docs = {name: json.loads((openapi_dir / "generated" / name).read_text()) for name in (DOTCOM, GHEC)}
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    for src, path, method in REST_OPERATIONS:
        op = _drop(copy.deepcopy(docs[src]["paths"][path][method]), ("examples",))
        op["x-subset-source"] = src
        found = _components(docs[src], [op])
        # Both files may define one component name differently (descriptions drift):
        # keep both, the ghec one suffixed, and point the ghec operation at it.
        renames = {
            f"#/components/{kind}/{name}": f"#/components/{kind}/{name}--ghec"
            for kind, items in found.items()
            for name, value in items.items()
            if src == GHEC and components.get(kind, {}).get(name, value) != value
        }
        for kind, items in found.items():
            for name, value in items.items():
                new_name = renames.get(f"#/components/{kind}/{name}", f"#/components/{kind}/{name}").rsplit("/", 1)[1]
                components.setdefault(kind, {})[new_name] = _rename(value, renames)
        paths.setdefault(path, {})[method] = _rename(op, renames)
    return {
        "openapi": docs[DOTCOM]["openapi"],
        "info": {"title": "GitHub REST subset called by the gh-runners reconcile",
                 "version": docs[DOTCOM]["info"]["version"],
                 "x-source": {"package": "@octokit/openapi", "version": PACKAGES["@octokit/openapi"],
                              "files": [f"generated/{DOTCOM}", f"generated/{GHEC}"],
                              "generator": "scripts/extract_webhooks.py"}},
        "paths": dict(sorted(paths.items())),
        "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }


# --- Google ---------------------------------------------------------------------------------------


def build_gcp(gapi_dir: Path) -> dict[str, Any]:
    apis: dict[str, Any] = {}
    for api, methods in GCP_METHODS.items():
        doc = json.loads((gapi_dir / "googleapiclient/discovery_cache/documents" / f"{api}.json").read_text())
        picked: dict[str, Any] = {}
        for resource_path, name in methods:
            node: dict[str, Any] = doc
            for part in resource_path:
                node = node["resources"][part]
            method = copy.deepcopy(node["methods"][name])
            # The method's own description states the semantics the double models: keep it.
            described = method.get("description", "")
            method = _drop(method, ("description", "enumDescriptions", "enumDeprecated"))
            method["description"] = described
            picked[".".join((*resource_path, name))] = method
        todo, schemas = _refs(picked), {}
        while todo:
            ref = todo.pop()
            if ref in schemas:
                continue
            schemas[ref] = _drop(doc["schemas"][ref], ("description", "enumDescriptions", "enumDeprecated"))
            todo |= _refs(schemas[ref]) - schemas.keys()
        apis[api] = {"rootUrl": doc["rootUrl"], "servicePath": doc["servicePath"], "revision": doc.get("revision"),
                     "methods": picked, "schemas": dict(sorted(schemas.items()))}
    return {"x-source": {"package": GAPI_PACKAGE, "version": GAPI_VERSION,
                         "files": [f"googleapiclient/discovery_cache/documents/{a}.json" for a in apis],
                         "generator": "scripts/extract_webhooks.py"},
            "apis": apis}


# --- fetching ---------------------------------------------------------------------------------------


def npm_unpack(package: str, version: str, workdir: Path) -> Path:
    """``npm pack`` one package into ``workdir`` and unpack it (no install, no node_modules)."""
    out = subprocess.run(["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(workdir)],
                         check=True, capture_output=True, text=True, cwd=workdir)
    tgz = workdir / json.loads(out.stdout)[0]["filename"]
    dest = workdir / package.replace("/", "+")
    with tarfile.open(tgz) as tar:
        tar.extractall(dest, filter="data")
    return dest / "package"


def gapi_unpack(workdir: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    f"{GAPI_PACKAGE}=={GAPI_VERSION}", "-d", str(workdir)], check=True)
    wheel = next(workdir.glob("google_api_python_client-*.whl"))
    dest = workdir / "gapi"
    with zipfile.ZipFile(wheel) as zf:
        for api in GCP_METHODS:
            zf.extract(f"googleapiclient/discovery_cache/documents/{api}.json", dest)
    return dest


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
          f"({path.stat().st_size // 1024} KiB)")


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
            unpacked[package] = found if found and found.is_dir() else npm_unpack(package, version, Path(tmp))
            meta = json.loads((unpacked[package] / "package.json").read_text())
            if meta["version"] != version:
                raise SystemExit(f"{unpacked[package]} is {package}@{meta['version']}, expected {version}")
        _write(args.out_dir / "webhook-examples.json", build_examples(unpacked["@octokit/webhooks-examples"]))
        _write(args.out_dir / "webhook-schemas.json", build_webhook_schemas(unpacked["@octokit/openapi-webhooks"]))
        _write(args.out_dir / "github-reconcile.json", build_rest(unpacked["@octokit/openapi"]))
        _write(args.out_dir / "gcp-groups.json", build_gcp(args.gapi_dir or gapi_unpack(Path(tmp))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
