"""The committed JSON Schema and the pydantic models accept and reject the same files,
apart from rules JSON Schema cannot express (listed here with the reason)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from schema.loader import LoadError, load_file

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
SCHEMA = json.loads((ROOT / "schema" / "runners.schema.json").read_text())

# Invalid fixtures whose only problems are semantic: the JSON Schema accepts them.
SEMANTIC_ONLY = {
    "arch.yaml": "an instance/machine type's arch vs the pool's arch",
    "cron.yaml": "cron expressions and IANA time zones",
    "duplicate-names.yaml": "unique pool names across the list",
    "defaults.yaml": "defaults are validated after merging into each pool",
    "group-on-repo.yaml": "runner groups depend on the GitHub target's scope",
    "gcp-disk.yaml": "which disk types a GCP machine series takes",
}
# Not data at all: YAML syntax, duplicate keys, empty -- no JSON to validate.
NOT_DATA = {"syntax.yaml", "duplicate-key.yaml", "empty.yaml"}
FIXTURES = sorted((HERE / "valid").glob("*.yaml")) + sorted(
    p for p in (HERE / "invalid").glob("*.yaml") if p.name not in NOT_DATA
)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_json_schema_agrees_with_models(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    schema_ok = jsonschema.Draft202012Validator(SCHEMA).is_valid(data)
    try:
        load_file(path)
        models_ok = True
    except LoadError:
        models_ok = False
    if path.name in SEMANTIC_ONLY:
        assert schema_ok and not models_ok
    else:
        assert schema_ok == models_ok
