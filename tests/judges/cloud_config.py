"""Two judges of cloud-config user data, both applying cloud-init's own rules.

``schema_verdict``: cloud-init's JSON Schema for cloud-config, vendored from its Debian
package (``cloud-init-schema/source.json`` records the version; ``scripts/judges.sh
refresh-schema`` refreshes it), applied the way ``cloud-init schema --config-file`` applies
it in that version (cloudinit/config/schema.py: ``validate_cloudconfig_file`` and
``get_jsonschema_validator``): the ``#cloud-config`` header, YAML that is a mapping, JSON
Schema draft 4 with bytes accepted as strings, and the schema's ``deprecated`` annotations
reported apart from errors (``cloud-init schema`` prints them and still says "Valid").
Pure Python: it runs wherever the tests run.

``real_cloud_init``: the ``cloud-init schema`` command itself, from the Debian package that
``make judges`` unpacks (never installs) into .cache/judges/cloud-init where apt exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker, ValidationError, validators

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = Path(__file__).resolve().parent / "cloud-init-schema"
SCHEMA_PATH = SCHEMA_DIR / "schema-cloud-config-v1.json"
SOURCE = json.loads((SCHEMA_DIR / "source.json").read_text())
CACHE = ROOT / ".cache" / "judges" / "cloud-init"
HEADER = "#cloud-config"


class Deprecated(ValidationError):
    """A key or value the schema marks ``deprecated``: reported, not an error."""


@dataclass(frozen=True)
class Verdict:
    errors: tuple[str, ...]
    deprecations: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.errors


def _deprecated(validator: Any, deprecated: bool, instance: Any, schema: dict[str, Any]) -> Iterator[ValidationError]:
    if deprecated:
        yield Deprecated(f"DEPRECATED: {schema.get('description', '')}".strip())


def _split(validator: Any, branches: list[Any], instance: Any) -> list[tuple[list[ValidationError], list[Deprecated]]]:
    """Each branch's (errors, deprecations): a deprecated branch still matches."""
    results = []
    for index, branch in enumerate(branches):
        found = list(validator.descend(instance, branch, schema_path=index))
        results.append(([e for e in found if not isinstance(e, Deprecated)],
                        [e for e in found if isinstance(e, Deprecated)]))
    return results


def _any_of(validator: Any, branches: list[Any], instance: Any, schema: Any) -> Iterator[ValidationError]:
    results = _split(validator, branches, instance)
    matching = [deprecations for errors, deprecations in results if not errors]
    if not matching:
        yield ValidationError(f"{instance!r} is not valid under any of the given schemas",
                              context=[e for errors, _ in results for e in errors])
    elif all(matching):  # only deprecated ways to say it
        yield from matching[0]


def _one_of(validator: Any, branches: list[Any], instance: Any, schema: Any) -> Iterator[ValidationError]:
    results = _split(validator, branches, instance)
    matching = [deprecations for errors, deprecations in results if not errors]
    if not matching:
        yield ValidationError(f"{instance!r} is not valid under any of the given schemas",
                              context=[e for errors, _ in results for e in errors])
    elif len(matching) > 1:
        yield ValidationError(f"{instance!r} is valid under each of {len(matching)} of the given schemas")
    else:
        yield from matching[0]


@cache
def _validator() -> Any:
    # Bytes are strings too: cloud-config may carry `content: !!binary ...`.
    types = Draft4Validator.TYPE_CHECKER.redefine("string", lambda _, value: isinstance(value, (str, bytes)))
    cls = validators.extend(Draft4Validator, {"deprecated": _deprecated, "anyOf": _any_of, "oneOf": _one_of},
                            type_checker=types)
    return cls(json.loads(SCHEMA_PATH.read_text()), format_checker=FormatChecker())


def schema_top_level_keys() -> set[str]:
    """Every top-level key some module of the vendored schema defines."""
    schema = json.loads(SCHEMA_PATH.read_text())
    return {key for part in schema["$defs"].values() for key in part.get("properties", {})}


def schema_verdict(document: str) -> Verdict:
    if not document.startswith(HEADER):
        return Verdict((f"format-l1.c1: the document must begin with {HEADER!r}",))
    try:
        config = yaml.safe_load(document)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"format-l{mark.line + 1}.c{mark.column + 1}" if mark else "format-l1.c1"
        return Verdict((f"{where}: not valid YAML: {error}",))
    if not isinstance(config, dict):
        return Verdict(("the cloud-config is not a YAML mapping",))
    errors, deprecations = [], []
    for error in sorted(_validator().iter_errors(config), key=lambda e: [str(p) for p in e.path]):
        line = f"{'.'.join(str(p) for p in error.path) or '<top>'}: {error.message}"
        (deprecations if isinstance(error, Deprecated) else errors).append(line)
    return Verdict(tuple(errors), tuple(deprecations))


# --- cloud-init itself ----------------------------------------------------------------


@dataclass(frozen=True)
class CloudInit:
    """``cloud-init schema`` from the unpacked Debian package, run by this interpreter."""

    root: Path
    version: str

    def verdict(self, document: str, workdir: Path) -> tuple[bool, bool, str]:
        """(accepted, reported a deprecation, its output) for one document."""
        path = workdir / f"user-data-{hashlib.sha256(document.encode()).hexdigest()[:16]}.yaml"
        path.write_text(document)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": str(workdir),
               "PYTHONPATH": str(self.root / "usr" / "lib" / "python3" / "dist-packages")}
        done = subprocess.run([sys.executable, str(self.root / "usr" / "bin" / "cloud-init"), "schema",
                               "--config-file", str(path)], capture_output=True, text=True, env=env, timeout=60,
                              check=False)
        output = done.stdout + done.stderr
        # "Valid cloud-config: PATH" (22.4), "Valid schema PATH" (23.1 on: cloudinit/config/schema.py)
        accepted = done.returncode == 0 and re.search(r"^Valid (cloud-config|schema)", done.stdout, re.M) is not None
        # "Cloud config schema deprecations: KEY: ..." (the header is printed empty next to errors)
        return accepted, re.search(r"(?i)deprecat\w*:[ \t]*\S", output) is not None, output


def real_cloud_init() -> CloudInit | str:
    """The unpacked cloud-init, or one line saying why there is none."""
    if (CACHE / "root" / "usr" / "bin" / "cloud-init").exists():
        return CloudInit(CACHE / "root", (CACHE / "version").read_text().strip())
    why = (CACHE / "unavailable").read_text().strip() if (CACHE / "unavailable").exists() else "not unpacked yet"
    return f"cloud-init's Debian package is not in .cache/judges ({why}; `make judges`)"
