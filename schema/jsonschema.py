"""The JSON Schema editors and check-jsonschema use, generated from the models."""

from __future__ import annotations

from typing import Any

from schema.models import RunnersFile


def runners_json_schema() -> dict[str, Any]:
    schema = RunnersFile.model_json_schema()
    for definition in schema["$defs"].values():
        group = definition.get("properties", {}).get("runner_group")
        if group is not None:  # the `runner_group: NAME` shorthand
            group["anyOf"].insert(0, {"type": "string", "minLength": 1, "maxLength": 100})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/spigell/gh-runners/schema/runners.schema.json",
        **schema,
        "title": "gh-runners runners.yaml",
        "description": "Pools of GitHub Actions self-hosted runners on AWS and GCP. "
        "Regenerate with `python -m schema jsonschema > schema/runners.schema.json`.",
    }
