"""Validate traffic against the providers' published API descriptions.

The subsets in tests/bootstrap/openapi/ are produced by scripts/extract_openapi.py
from GitHub's OpenAPI description and Google's discovery documents. This module
turns them into jsonschema validators and a router from (method, path) to the
operation, so a double can check every request it receives and every response
it serves.

Two deliberate tightenings over the published documents, both aimed at bugs in
*our* code rather than at GitHub's behaviour:

* objects that list their ``properties`` reject unknown ones
  (``additionalProperties: false``): a misspelt field in an agent request body
  or in a double's response is a violation, not silently ignored;
* unknown query parameters are violations too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

OPENAPI_DIR = Path(__file__).resolve().parent.parent / "openapi"
GITHUB_SUBSET = OPENAPI_DIR / "github-subset.json"
GCP_SUBSET = OPENAPI_DIR / "gcp-subset.json"

_FORMATS = jsonschema.Draft4Validator.FORMAT_CHECKER


def _schema_to_draft4(schema: Any) -> Any:
    """An OpenAPI 3.0 schema object is draft 4 plus ``nullable``: say that in draft 4.

    Also closes objects that declare properties (see the module docstring).
    """
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    nullable = out.pop("nullable", False)
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _schema_to_draft4(v) for k, v in out["properties"].items()}
        out.setdefault("additionalProperties", False)
    elif isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _schema_to_draft4(out["additionalProperties"])
    for key in ("items", "not"):
        if key in out:
            out[key] = _schema_to_draft4(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [_schema_to_draft4(v) for v in out[key]]
    return {"anyOf": [out, {"type": "null"}]} if nullable is True else out


def _oas30_to_draft4(document: dict[str, Any]) -> dict[str, Any]:
    """Convert every schema object of an OpenAPI 3.0 document (under ``schema`` keys
    and in ``components/schemas``); everything else is copied as is."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _schema_to_draft4(v) if k == "schema" else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out = walk(document)
    schemas = document.get("components", {}).get("schemas", {})
    out.setdefault("components", {})["schemas"] = {k: _schema_to_draft4(v) for k, v in schemas.items()}
    return out


def _errors(validator: jsonschema.Draft4Validator, instance: Any) -> list[str]:
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]


@dataclass
class Operation:
    """One (method, path template) of an API description, with its validators."""

    api: OpenApi
    method: str
    template: str
    spec: dict[str, Any]
    pointer: str  # JSON pointer of the operation object in the document

    @property
    def operation_id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))

    @cached_property
    def parameters(self) -> list[dict[str, Any]]:
        return [self.api.deref(p) for p in self.spec.get("parameters", [])]

    def _validator(self, pointer: str) -> jsonschema.Draft4Validator:
        return self.api.validator(pointer)

    def check_path_params(self, params: dict[str, str]) -> list[str]:
        problems = []
        for p in self.parameters:
            if p["in"] == "path" and p["name"] in params:
                schema = p.get("schema", {})
                value = _coerce(params[p["name"]], schema)
                errors = _errors(self.api.schema_validator(schema), value)
                problems += [f"path parameter {p['name']}: {e}" for e in errors]
        return problems

    def check_query(self, query: dict[str, list[str]]) -> list[str]:
        """Query parameters: known names only, values of the declared type."""
        declared = {p["name"]: p for p in self.parameters if p["in"] == "query"}
        problems = [f"unknown query parameter {name!r}" for name in query if name not in declared]
        for name, values in query.items():
            if name in declared:
                schema = declared[name].get("schema", {})
                for value in values:
                    problems += [
                        f"query parameter {name}: {e}"
                        for e in _errors(self.api.schema_validator(schema), _coerce(value, schema))
                    ]
        return problems

    def check_request_body(self, body: bytes, content_type: str | None) -> list[str]:
        """The JSON body against ``requestBody``; an absent optional body is fine."""
        rb = self.spec.get("requestBody")
        if rb is None:
            return [] if not body else [f"{self.operation_id} takes no request body"]
        rb = self.api.deref(rb)
        if not body:
            return ["request body is required"] if rb.get("required") else []
        if content_type and "json" not in content_type:
            return [f"request Content-Type {content_type!r} is not JSON"]
        try:
            instance = json.loads(body)
        except ValueError as exc:
            return [f"request body is not JSON: {exc}"]
        return _errors(self._validator(f"{self.pointer}/requestBody/content/application~1json/schema"), instance)

    def check_response(self, status: int, body: Any) -> list[str]:
        """A served response against the documented one for ``status``."""
        responses = self.spec.get("responses", {})
        key = str(status) if str(status) in responses else "default" if "default" in responses else None
        if key is None:
            return [f"status {status} is not documented for {self.operation_id}"]
        resp = self.api.deref(responses[key])
        schema_ptr = None
        if "$ref" in responses[key]:
            name = responses[key]["$ref"].rsplit("/", 1)[1]
            base = f"/components/responses/{_escape(name)}"
        else:
            base = f"{self.pointer}/responses/{key}"
        if "application/json" in resp.get("content", {}):
            schema_ptr = f"{base}/content/application~1json/schema"
        if schema_ptr is None:
            return [] if body is None else [f"status {status} of {self.operation_id} has no body"]
        return _errors(self._validator(schema_ptr), body)


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _coerce(raw: str, schema: dict[str, Any]) -> Any:
    """Query/path values are strings on the wire; compare them as their declared type."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw)
        if kind == "boolean" and raw in ("true", "false"):
            return raw == "true"
    except ValueError:
        pass
    return raw


class OpenApi:
    """An OpenAPI 3.0 document: routing plus draft-4 validators with ``$ref`` support."""

    URI = "urn:gh-runners:openapi"

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.converted = _oas30_to_draft4(document)
        self.registry: Registry = Registry().with_resource(
            self.URI, Resource(contents=self.converted, specification=DRAFT4)
        )
        self._validators: dict[str, jsonschema.Draft4Validator] = {}
        self.operations: list[Operation] = []
        for template, item in document["paths"].items():
            for method, spec in item.items():
                if method in ("get", "put", "post", "delete", "patch", "head"):
                    self.operations.append(
                        Operation(self, method.upper(), template, spec, f"/paths/{_escape(template)}/{method}")
                    )
        # Literal segments beat parameters: /runners/generate-jitconfig is not /runners/{runner_id}.
        self._routes = sorted(
            ((self._compile(op), op) for op in self.operations),
            key=lambda r: -len(re.sub(r"\{[^}]+\}", "", r[1].template)),
        )

    @classmethod
    def load(cls, path: Path = GITHUB_SUBSET) -> OpenApi:
        return cls(json.loads(path.read_text()))

    def _compile(self, op: Operation) -> re.Pattern[str]:
        multi = {p["name"] for p in op.parameters if p.get("x-multi-segment")}
        pattern = re.sub(
            r"\\\{([^}]+)\\\}",
            lambda m: f"(?P<{m.group(1).replace('-', '_')}>{'.+' if m.group(1) in multi else '[^/]+'})",
            re.escape(op.template),
        )
        return re.compile(f"^{pattern}$")

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation serving ``method path``, and its decoded path parameters."""
        for regex, op in self._routes:
            if op.method != method:
                continue
            m = regex.match(path)
            if m:
                return op, {k: unquote(v) for k, v in m.groupdict().items()}
        return None

    def deref(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.resolve(node["$ref"])
        return node

    def resolve(self, ref: str) -> dict[str, Any]:
        target: Any = self.document
        for token in ref.lstrip("#/").split("/"):
            target = target[token.replace("~1", "/").replace("~0", "~")]
        return target

    def validator(self, pointer: str) -> jsonschema.Draft4Validator:
        """A validator for the schema at JSON ``pointer`` of the document."""
        if pointer not in self._validators:
            self._validators[pointer] = jsonschema.Draft4Validator(
                {"$ref": f"{self.URI}#{pointer}"}, registry=self.registry, format_checker=_FORMATS
            )
        return self._validators[pointer]

    def schema_validator(self, schema: dict[str, Any]) -> jsonschema.Draft4Validator:
        return jsonschema.Draft4Validator(_schema_to_draft4(schema), format_checker=_FORMATS)

    def component(self, name: str) -> jsonschema.Draft4Validator:
        """Validator for ``#/components/schemas/<name>``."""
        return self.validator(f"/components/schemas/{_escape(name)}")


# --- Google discovery documents ------------------------------------------------


def _discovery_to_draft4(schema: Any, closed: bool) -> Any:
    """A discovery schema is JSON-Schema-like; make it draft 4.

    ``$ref: "Name"`` becomes a pointer into ``schemas``; ``format: int64`` stays a
    string (that is how Google encodes 64-bit integers in JSON). Response objects
    are closed: Google never adds undeclared fields, so an extra one is our typo.
    """
    if not isinstance(schema, dict):
        return schema
    if isinstance(schema.get("$ref"), str):
        return {"$ref": f"#/schemas/{schema['$ref']}"}
    out = {k: v for k, v in schema.items() if k not in ("id", "readOnly", "annotations")}
    if out.get("type") == "any":
        out.pop("type")
    if isinstance(out.get("properties"), dict):
        out["properties"] = {k: _discovery_to_draft4(v, closed) for k, v in out["properties"].items()}
        if closed:
            out.setdefault("additionalProperties", False)
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _discovery_to_draft4(out["additionalProperties"], closed)
    if "items" in out:
        out["items"] = _discovery_to_draft4(out["items"], closed)
    return out


@dataclass
class DiscoveryApi:
    """One API (e.g. ``compute.v1``) of the GCP subset."""

    name: str
    doc: dict[str, Any]
    _validators: dict[str, jsonschema.Draft4Validator] = field(default_factory=dict)

    def response_errors(self, method_id: str, body: Any) -> list[str]:
        """Check ``body`` against the response schema of method ``method_id``."""
        method = self.doc["methods"][method_id]
        ref = method["response"]["$ref"]
        if ref not in self._validators:
            schemas = {k: _discovery_to_draft4(v, closed=True) for k, v in self.doc["schemas"].items()}
            root = {"$ref": f"#/schemas/{ref}", "schemas": schemas}
            self._validators[ref] = jsonschema.Draft4Validator(root, format_checker=_FORMATS)
        return _errors(self._validators[ref], body)

    def request_errors(self, method_id: str, body: Any) -> list[str]:
        """Check a request body against the method's request schema; closed, as Google's JSON parser
        refuses unknown fields ("Invalid JSON payload received. Unknown name")."""
        ref = self.doc["methods"][method_id]["request"]["$ref"]
        key = f"request:{ref}"
        if key not in self._validators:
            schemas = {k: _discovery_to_draft4(v, closed=True) for k, v in self.doc["schemas"].items()}
            self._validators[key] = jsonschema.Draft4Validator({"$ref": f"#/schemas/{ref}", "schemas": schemas},
                                                               format_checker=_FORMATS)
        return _errors(self._validators[key], body)

    def check_query(self, method_id: str, query: dict[str, list[str]]) -> list[str]:
        """Query parameters must be declared for the method (plus Google's system ones)."""
        declared = {
            k for k, v in self.doc["methods"][method_id].get("parameters", {}).items() if v.get("location") == "query"
        }
        system = {"alt", "fields", "key", "prettyPrint", "quotaUser", "access_token", "$.xgafv", "callback",
                  "uploadType", "upload_protocol"}
        return [f"unknown query parameter {k!r}" for k in query if k not in declared | system]


def load_gcp(path: Path = GCP_SUBSET) -> dict[str, DiscoveryApi]:
    """All APIs in the GCP subset, by name (``compute.v1``, ``secretmanager.v1``)."""
    data = json.loads(path.read_text())
    return {name: DiscoveryApi(name, doc) for name, doc in data["apis"].items()}
