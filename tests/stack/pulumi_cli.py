"""The Pulumi CLI's checks of Pulumi.yaml and a stack's config, done before the program runs.

The CLI can't be installed here, so its rules are restated from its source
(pulumi/pulumi, sdk/go/common/workspace/):

* project.go `ValidateProject`: the project file against the project JSON
  Schema (`project.json`, vendored in tests/stack/pulumi/ by
  scripts/vendor_pulumi_project_schema.py), after the shorthand rewrites
  `RewriteConfigPathIntoStackConfigDir` / `RewriteShorthandConfigValues`;
* project.go `Project.Validate`: default vs value, arrays need `items`, a
  default must have the declared type, keys of other namespaces take only a
  `value`;
* config.go `mergeConfig`: every key declared in the project's own namespace
  that the stack does not set and that has neither `default` nor `value` is
  "missing configuration" -- the whole command fails;
* config.go `validateStackConfigValues` / `validateStackConfigValue`: a key
  declared `secret` must be stored encrypted; a typed key must hold its type
  (project.go `ValidateConfigValue`).

Everything is plain data in, an error message out, worded as the CLI words it.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_DIR = Path(__file__).parent / "pulumi"


class CliError(Exception):
    """What the CLI would print before refusing to run the program."""


def vendored_schemas() -> dict[str, dict[str, Any]]:
    """Every vendored project.json, by file name (one per pulumi/pulumi commit)."""
    return {path.name: json.loads(path.read_text()) for path in sorted(SCHEMA_DIR.glob("project-*.json"))}


def load_project(text: str) -> dict[str, Any]:
    """Pulumi.yaml as the CLI reads it: YAML, then the two shorthand rewrites."""
    project = yaml.safe_load(text)
    if not isinstance(project, dict):
        raise CliError(f"expected project to be an object, was '{type(project).__name__}'")
    project = copy.deepcopy(project)
    config = project.get("config")
    if isinstance(config, str):  # RewriteConfigPathIntoStackConfigDir
        if "stackConfigDir" in project:
            raise CliError("Should not use both config and stackConfigDir to define the stack directory.")
        project["stackConfigDir"], project["config"] = config, None
    if isinstance(project.get("config"), dict):  # RewriteShorthandConfigValues
        name = str(project.get("name", ""))
        for key, value in project["config"].items():
            if isinstance(value, (str, int, bool, list)):
                field = "default" if _own_namespace(name, key) else "value"
                project["config"][key] = {field: value}
    return project


def validate_project(project: dict[str, Any], schema: dict[str, Any]) -> None:
    """project.go ValidateProject (the JSON Schema) and Project.Validate (the rest)."""
    name = project.get("name")
    if not isinstance(name, str) or not name:
        raise CliError("project is missing a non-empty string 'name' attribute")
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(project), key=lambda e: list(e.path))
    if errors:
        raise CliError("; ".join(f"#/{'/'.join(map(str, e.path))}: {e.message}" for e in errors))
    for key, declared in (project.get("config") or {}).items():
        if "default" in declared and "value" in declared:
            raise CliError(f"project config '{key}' cannot have both a 'default' and 'value' attribute")
        typed = "type" in declared
        if _own_namespace(name, key):
            if typed and declared["type"] == "array" and "items" not in declared:
                raise CliError(
                    f"The configuration key '{key}' declares an array "
                    "but does not specify the underlying type via the 'items' attribute"
                )
            if (
                typed
                and "default" in declared
                and not type_holds(declared["type"], declared.get("items"), declared["default"])
            ):
                raise CliError(
                    f"The default value specified for configuration key '{key}' is not of the expected type "
                    f"'{declared['type']}'"
                )
        else:
            if typed:
                raise CliError(
                    f"Configuration key '{key}' is not namespaced by the project and should not define a type"
                )
            if "default" in declared:
                raise CliError(
                    f"Configuration key '{key}' is not namespaced by the project and should not define a default value."
                )
            if "value" not in declared:
                raise CliError(f"Configuration key '{key}' is namespaced and must provide an attribute 'value'")


def check_stack(project: dict[str, Any], stack_name: str, stack_config: dict[str, Any]) -> dict[str, Any]:
    """config.go mergeConfig + validateStackConfigValues on a Pulumi.<stack>.yaml `config:` map.

    Returns the merged config (project defaults applied), keyed `namespace:key`.
    """
    name = str(project["name"])
    merged = dict(stack_config)
    missing = []
    for key in sorted(project.get("config") or {}):
        declared = project["config"][key]
        full = _full_key(name, key)
        found = full in merged
        has_default, has_value = declared.get("default") is not None, declared.get("value") is not None
        if not found and not has_value and not has_default and full.split(":", 1)[0] == name:
            missing.append(key)
            continue
        if not found and (has_value or has_default):
            merged[full] = declared["default"] if has_default else declared["value"]
    if missing:
        values = "value" if len(missing) == 1 else "values"
        raise CliError(f"Stack '{stack_name}' is missing configuration {values} {_format_missing(missing)}")
    for key in sorted(project.get("config") or {}):
        declared = project["config"][key]
        if "type" not in declared:
            continue
        full = _full_key(name, key)
        stored = merged.get(full)
        if declared.get("secret") and not _secure(stored):
            raise CliError(f"Stack '{stack_name}' with configuration key '{key}' must be encrypted as it's secret")
        if not type_holds(declared["type"], declared.get("items"), _decrypted(stored)):
            raise CliError(f"Stack '{stack_name}' with configuration key '{key}' must be of type '{declared['type']}'")
    return merged


def type_holds(type_name: str, items: dict[str, Any] | None, value: Any) -> bool:
    """project.go ValidateConfigValue."""
    if type_name == "string":
        return isinstance(value, str)
    if type_name == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return value == math.trunc(value)
        if isinstance(value, str):
            try:
                int(value)
            except ValueError:
                return False
            return True
        return False
    if type_name == "boolean":
        return value in ("true", "false") or isinstance(value, bool)
    if type_name == "object":
        return isinstance(value, dict)
    if not isinstance(value, list) or items is None:
        return False
    return all(type_holds(items["type"], items.get("items"), item) for item in value)


def _own_namespace(project: str, key: str) -> bool:
    return ":" not in key or key.startswith(f"{project}:")


def _full_key(project: str, key: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _format_missing(keys: list[str]) -> str:
    if len(keys) == 1:
        return f"'{keys[0]}'"
    keys = sorted(keys)
    return ", ".join(f"'{k}'" for k in keys[:-2]) + (", " if len(keys) > 2 else "") + f"'{keys[-2]}' and '{keys[-1]}'"


def _secure(value: Any) -> bool:
    """config.Value.Secure: a `{secure: ...}` value, or an object holding one."""
    if isinstance(value, dict):
        return set(value) == {"secure"} or any(_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_secure(v) for v in value)
    return False


def _decrypted(value: Any) -> Any:
    """The value validateStackConfigValue checks: an object's JSON content, or the scalar's text."""
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return "decrypted"
        return {k: _decrypted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decrypted(v) for v in value]
    if isinstance(value, bool):
        return str(value).lower()
    return None if value is None else str(value)
