"""The GCP resource graph of a release, as the upgrade test compares it.

A stack built by an earlier gh-runners has, per resource, a URN and the
inputs the provider diffs. `python -m tests.gcp.release_graph COMMIT` prints
that graph for UPGRADE_FILE, planned by the code checked out now; commit the
output as tests/gcp/release_graph_<COMMIT>.json when a release ships, and
tests/gcp/test_upgrade.py proves the next version moves such a stack in one
`pulumi up`. User data is left out (it changes with every agent release and
only ever rolls the template, which has no fixed name).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from plan.engine import Recording
from tests.providers.harness import run_file

# Every GCP shape the upgrade must carry: GCP-picked and pinned zones, a
# scheduled (autoscaled) pool, spot, another project and region, an existing
# network. Pool names are the URN keys.
UPGRADE_FILE = """\
version: 1
github: {repository: spigell/my-reforge-ai}
pools:
  - {name: plain, provider: gcp, size: {min: 1, max: 3}}
  - name: scheduled
    provider: gcp
    spot: true
    size: {min: 0, max: 6}
    schedules:
      - {cron: '0 8 * * *', desired: 4, time_zone: Europe/Berlin}
      - {cron: '0 20 * * *', desired: 0, time_zone: Europe/Berlin}
  - {name: pinned, provider: gcp, zones: [europe-west4-a, europe-west4-b], size: {min: 2, max: 4}}
  - {name: elsewhere, provider: gcp, project: other-project, region: us-east1, arch: arm64, ephemeral: false}
  - {name: shared, provider: gcp, network: {network: shared-vpc, subnetwork: runners}, iap_ssh: true}
"""
STACK = "prod"
DROPPED_INPUTS = ("metadata",)


def graph(recording: Recording) -> list[dict[str, Any]]:
    return [
        {
            "urn": record.urn,
            "type": record.type,
            "inputs": {k: v for k, v in sorted(record.inputs.items()) if k not in DROPPED_INPUTS},
        }
        for record in recording.resources
        if record.custom and record.type.startswith(("gcp:", "random:"))
    ]


def plan_upgrade_file() -> Recording:
    with tempfile.TemporaryDirectory() as tmp:
        return run_file(Path(tmp), UPGRADE_FILE, stack=STACK)


def main(argv: list[str]) -> int:
    commit = argv[0] if argv else "unknown"
    document = {"commit": commit, "stack": STACK, "file": UPGRADE_FILE, "resources": graph(plan_upgrade_file())}
    print(json.dumps(document, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
