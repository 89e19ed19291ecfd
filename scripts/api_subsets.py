"""What extract_openapi.py and extract_webhooks.py share: cut a published API description down to the
operations a component meets, keep every component they reference, and fetch the packages they come from.

GitHub's descriptions are OpenAPI (npm ``@octokit/openapi``, ``@octokit/openapi-webhooks``: local
``#/components/<kind>/<name>`` refs); Google's are discovery documents (PyPI
``google-api-python-client``: refs are schema names). Outputs are sorted JSON, one key per line, so a
package bump reads as a reviewable diff.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DOTCOM, GHEC = "api.github.com.json", "ghec.json"
DISCOVERY_DIR = "googleapiclient/discovery_cache/documents"
# Prose in discovery documents: Compute's alone would be megabytes.
DISCOVERY_PROSE = ("description", "enumDescriptions", "enumDeprecated")
# {api, e.g. "compute.v1": [(resource path, method name)]}
Methods = dict[str, list[tuple[tuple[str, ...], str]]]


def refs(node: Any) -> set[str]:
    """All ``$ref`` targets below ``node``."""
    found: set[str] = set()
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def drop(node: Any, keys: tuple[str, ...]) -> Any:
    """``node`` without any mapping entry named in ``keys``, at any depth."""
    if isinstance(node, dict):
        return {k: drop(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [drop(v, keys) for v in node]
    return node


def rename_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: rename_refs(v, renames) for k, v in node.items()}
        if isinstance(out.get("$ref"), str) and out["$ref"] in renames:
            out["$ref"] = renames[out["$ref"]]
        return out
    if isinstance(node, list):
        return [rename_refs(v, renames) for v in node]
    return node


def closure(doc: dict[str, Any], roots: list[Any]) -> dict[str, Any]:
    """Every OpenAPI component (by ``#/components/...`` ref) reachable from ``roots``, without its media-type
    ``examples`` (most of the bytes, and they validate nothing)."""
    todo, seen = set().union(*(refs(r) for r in roots)), {}
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        if not ref.startswith("#/components/"):
            raise SystemExit(f"unexpected non-local $ref {ref!r}")
        _, _, kind, name = ref.split("/", 3)
        seen[ref] = drop(doc["components"][kind][name], ("examples",))
        todo |= refs(seen[ref]) - seen.keys()
    return seen


def grouped(found: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{ref: value} as OpenAPI's {kind: {name: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for ref, value in found.items():
        _, _, kind, name = ref.split("/", 3)
        out.setdefault(kind, {})[name] = value
    return out


def rest_subset(docs: dict[str, dict[str, Any]], operations: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """``paths`` and ``components`` of the (source file, path, method) operations, merged from GitHub's
    api.github.com and ghec descriptions. Both may define one component name differently (descriptions
    drift): both are kept, the ghec one under a ``--ghec`` suffix that its operations point at."""
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, dict[str, Any]] = {}
    for src, path, method in operations:
        try:
            op = drop(copy.deepcopy(docs[src]["paths"][path][method]), ("examples",))
        except KeyError:
            raise SystemExit(f"{src} has no {method.upper()} {path}") from None
        op["x-subset-source"] = src
        found = closure(docs[src], [op])
        renames = {}
        for ref, value in found.items():
            _, _, kind, name = ref.split("/", 3)
            if src == GHEC and components.get(kind, {}).get(name, value) != value:
                renames[ref] = f"#/components/{kind}/{name}--ghec"
        for ref, value in found.items():
            _, _, kind, name = renames.get(ref, ref).split("/", 3)
            components.setdefault(kind, {})[name] = rename_refs(value, renames)
        paths.setdefault(path, {})[method] = rename_refs(op, renames)
    return {"paths": dict(sorted(paths.items())),
            "components": {k: dict(sorted(v.items())) for k, v in sorted(components.items())}}


def discovery_subset(gapi_dir: Path, methods: Methods,
                     keep_method_descriptions: bool = False) -> dict[str, Any]:
    """The named methods of each Google API (e.g. ``compute.v1``) and every schema they reference, without
    prose; ``keep_method_descriptions`` keeps a method's own description (the semantics a double models)."""
    apis: dict[str, Any] = {}
    for api, wanted in methods.items():
        doc = json.loads((gapi_dir / DISCOVERY_DIR / f"{api}.json").read_text())
        picked: dict[str, Any] = {}
        for resource_path, name in wanted:
            node: dict[str, Any] = doc
            for part in resource_path:
                node = node["resources"][part]
            method = drop(node["methods"][name], DISCOVERY_PROSE)
            if keep_method_descriptions:
                method["description"] = node["methods"][name].get("description", "")
            picked[".".join((*resource_path, name))] = method
        todo, schemas = refs(picked), {}
        while todo:
            ref = todo.pop()
            if ref in schemas:
                continue
            schemas[ref] = drop(doc["schemas"][ref], DISCOVERY_PROSE)
            todo |= refs(schemas[ref]) - schemas.keys()
        apis[api] = {"rootUrl": doc["rootUrl"], "servicePath": doc["servicePath"], "revision": doc.get("revision"),
                     "methods": picked, "schemas": dict(sorted(schemas.items()))}
    return apis


# --- fetching ------------------------------------------------------------------------------------


def npm_unpack(package: str, version: str, workdir: Path, files: Iterable[str] = ()) -> Path:
    """``npm pack`` one package into ``workdir`` and unpack it (only ``files``, relative to the package, when
    given; never an install, never node_modules). Returns the package directory; checks its version."""
    out = subprocess.run(["npm", "pack", f"{package}@{version}", "--json", "--pack-destination", str(workdir)],
                         check=True, capture_output=True, text=True, cwd=workdir)
    tgz = workdir / json.loads(out.stdout)[0]["filename"]
    dest = workdir / package.replace("/", "+")
    wanted = {f"package/{name}" for name in (*files, "package.json")} if files else None
    with tarfile.open(tgz) as tar:
        members = [m for m in tar.getmembers() if wanted is None or m.name in wanted]
        tar.extractall(dest, members=members, filter="data")
    return check_version(dest / "package", package, version)


def check_version(package_dir: Path, package: str, version: str) -> Path:
    found = json.loads((package_dir / "package.json").read_text())["version"]
    if found != version:
        raise SystemExit(f"{package_dir} is {package}@{found}, expected {version}")
    return package_dir


def gapi_unpack(package: str, version: str, apis: Iterable[str], workdir: Path) -> Path:
    """``pip download`` the google-api-python-client wheel and unpack only the discovery documents of
    ``apis``."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", f"{package}=={version}",
                    "-d", str(workdir)], check=True)
    wheel = next(workdir.glob("google_api_python_client-*.whl"))
    dest = workdir / "gapi"
    with zipfile.ZipFile(wheel) as zf:
        for api in apis:
            zf.extract(f"{DISCOVERY_DIR}/{api}.json", dest)
    return dest


def write(path: Path, doc: dict[str, Any], root: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"wrote {path.relative_to(root) if path.is_relative_to(root) else path} "
          f"({path.stat().st_size // 1024} KiB)")
