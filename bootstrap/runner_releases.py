"""Digests of pinned actions/runner releases, known before a VM boots.

A pool that pins `runner_version` to a release listed in runner_releases.json
gets the tarball's URL and sha256 in its user data: the VM downloads it from
its first second, verifies it, and never asks GitHub's API which release that
is. That matters most for GitHub Enterprise Server and ghe.com targets, whose
token is not good for api.github.com: unauthenticated lookups share 60 an hour
per address, i.e. per NAT gateway. `latest` and pins not listed here are looked
up at boot.

Add a release (reads the digests GitHub publishes for its assets; network):

    venv/bin/python -m bootstrap.runner_releases 2.331.0

and commit runner_releases.json with the pin.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

TABLE = Path(__file__).resolve().parent / "runner_releases.json"
DOWNLOAD = "https://github.com/actions/runner/releases/download/v{version}/actions-runner-linux-{arch}-{version}.tar.gz"
ARCHES = ("x64", "arm64")


def known(version: str, arch: str, table: Path = TABLE) -> dict[str, str]:
    """{"url", "sha256"} of a listed release's tarball for `arch`, else {}."""
    digest = json.loads(table.read_text()).get(version, {}).get(f"linux-{arch}")
    return {"url": DOWNLOAD.format(version=version, arch=arch), "sha256": digest} if digest else {}


def fetch(version: str) -> dict[str, str]:
    """The published sha256 of each Linux tarball of release `version` (asset `digest`)."""
    request = urllib.request.Request(
        f"https://api.github.com/repos/actions/runner/releases/tags/v{version}",
        headers={"Accept": "application/vnd.github+json", "User-Agent": "gh-runners"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - fixed https URL
        assets = {a["name"]: a.get("digest") or "" for a in json.load(answer)["assets"]}
    digests = {}
    for arch in ARCHES:
        digest = assets.get(f"actions-runner-linux-{arch}-{version}.tar.gz", "")
        if not digest.startswith("sha256:"):
            raise SystemExit(f"release v{version} publishes no sha256 digest for linux-{arch}")
        digests[f"linux-{arch}"] = digest.removeprefix("sha256:")
    return digests


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    table = json.loads(TABLE.read_text())
    for version in argv:
        table[version] = fetch(version)
    TABLE.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
