"""Run the real program (`__main__.py`) on a runners.yaml text under the recording engine."""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from plan.engine import CloudMocks, Recording, run_project

ROOT = Path(__file__).resolve().parents[2]
SENTINEL_TOKEN = "ghp_SENTINEL0credential0must0never0leak0x"  # a fake PAT that tests hunt for
SENTINEL_KEY = "-----BEGIN RSA PRIVATE KEY-----\nSENTINELKEYMATERIAL0must0never0leak\n-----END RSA PRIVATE KEY-----\n"


def run_file(
    tmp_path: Path,
    text: str,
    *,
    app: bool = False,
    config: dict[str, Any] | None = None,
    stack: str = "test",
    project: str = "gh-runners",
    mocks: CloudMocks | None = None,
) -> Recording:
    path = tmp_path / "runners.yaml"
    path.write_text(text)
    settings: dict[str, Any] = {
        "aws:region": "eu-central-1",
        "gcp:project": "ci-project",
        "gcp:region": "europe-west4",
        f"{project}:runnersFile": str(path),
        **(config or {}),
    }
    if app:
        settings[f"{project}:githubApp"] = {"appId": "12345", "installationId": "678", "privateKey": SENTINEL_KEY}
        secret = [f"{project}:githubApp"]
    else:
        settings[f"{project}:githubToken"] = SENTINEL_TOKEN
        secret = [f"{project}:githubToken"]
    return run_project(ROOT, config=settings, secret_keys=secret, stack=stack, project=project, mocks=mocks)


def decoded_strings(value: Any) -> Iterator[str]:
    """Every string in `value`, plus what base64 / gzip+base64 / cloud-config inside it decodes to."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from decoded_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from decoded_strings(item)
    elif isinstance(value, str):
        yield value
        yield from _decodings(value)
    elif value is not None:
        yield str(value)


def _decodings(text: str) -> Iterator[str]:
    if text.startswith("#cloud-config"):
        document = yaml.safe_load(text)
        yield from decoded_strings(document)
        return
    compact = "".join(text.split())
    if len(compact) < 16 or len(compact) % 4:
        return
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        decoded = raw.decode()
    except UnicodeDecodeError:
        return
    yield decoded
    yield from _decodings(decoded)


def everything_shown(recording: Recording) -> Iterator[str]:
    """What state, previews and outputs would show: inputs, outputs and exports, secrets redacted."""
    for record in recording.resources:
        yield from decoded_strings(record.shown)
        yield from decoded_strings(record.component_outputs)
        yield from decoded_strings(_redacted_outputs(record))
    yield from decoded_strings(recording.stack_outputs_shown)


def _redacted_outputs(record: Any) -> Any:
    # Mock outputs echo inputs; the inputs' secret paths are redacted in `shown`,
    # so compare outputs only for keys that were not secret inputs.
    # Outputs a resource declares secret (additional_secret_outputs, e.g.
    # pulumi-random's results) are encrypted in state too.
    secret_keys = {path.split(".")[0].split("[")[0] for path in record.secret_paths} | set(record.secret_outputs)
    return {k: v for k, v in record.outputs.items() if k not in secret_keys}


def json_of(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
