"""Vendor the Pulumi CLI's project JSON Schema, which tests check Pulumi.yaml against.

The CLI validates Pulumi.yaml against `sdk/go/common/workspace/project.json`
of pulumi/pulumi (embedded with go:embed, used by `ValidateProject` in
project.go) before it runs anything. The file changes between CLI releases
(`type: object` config, for one, is refused by older ones), so the tests keep
one copy per upstream commit in tests/stack/pulumi/project-<commit[:12]>.json,
byte for byte, and Pulumi.yaml must pass every copy.

The copies here were taken from pulumi/pulumi at the commits in COMMITS. To
check them against GitHub, or to add the newest one (network access to
raw.githubusercontent.com required):

    venv/bin/python scripts/vendor_pulumi_project_schema.py --check
    venv/bin/python scripts/vendor_pulumi_project_schema.py --ref master   # writes project-<sha>.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import urllib.request
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "stack" / "pulumi"
PATH = "sdk/go/common/workspace/project.json"
RAW = "https://raw.githubusercontent.com/pulumi/pulumi/{ref}/" + PATH
COMMIT_API = "https://api.github.com/repos/pulumi/pulumi/commits/{ref}"
# Upstream commit -> sha256 of the file at that commit, as vendored.
COMMITS = {
    # Config types string/integer/boolean/array; a declaration must have a `type`.
    "0498be116be896fa28b5af4746ad197666167d85": "2002d197ef67648db8f92982012421d285459b3c14d135a5743abab0429eca93",
    # Adds `value` (project-level values for other namespaces) and shorthand arrays.
    "5351d868b25dea431a1cddd35ccf1a41d0985a81": "0d38fe476849a2a3afbbc29fdb85b5b83c5a8a4cc0271eeeb82e9cac9c2fc148",
}


def target(commit: str) -> Path:
    return OUT_DIR / f"project-{commit[:12]}.json"


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - fixed https URL
        return bytes(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare the vendored copies with GitHub")
    parser.add_argument("--ref", help="vendor the file at this branch, tag or commit as well")
    args = parser.parse_args(argv)
    status = 0
    for commit, digest in COMMITS.items():
        local = target(commit).read_bytes()
        if hashlib.sha256(local).hexdigest() != digest:
            print(f"{target(commit).name}: differs from the vendored digest", file=sys.stderr)
            status = 1
        if args.check and fetch(RAW.format(ref=commit)) != local:
            print(f"{target(commit).name}: differs from pulumi/pulumi@{commit}", file=sys.stderr)
            status = 1
    if args.ref:
        commit = json.loads(fetch(COMMIT_API.format(ref=args.ref)))["sha"]
        content = fetch(RAW.format(ref=commit))
        json.loads(content)  # refuse anything that is not JSON
        target(commit).write_bytes(content)
        print(f"wrote {target(commit)}; add {commit!r}: {hashlib.sha256(content).hexdigest()!r} to COMMITS")
    return status


if __name__ == "__main__":
    sys.exit(main())
