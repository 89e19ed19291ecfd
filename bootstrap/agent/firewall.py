"""Cut the runner off from the metadata endpoint before it starts.

Job code runs as the runner user; without this it could ask the metadata
server for the instance identity and read the GitHub credential with it.

Covered, for TCP except DNS (port 53):
* the runner user's own sockets, by uid (OUTPUT, owner match), to the IPv4
  address AWS IMDS and the GCE metadata server share, 169.254.169.254
  (metadata.google.internal resolves to it), and, as a second layer, to their
  IPv6 addresses fd00:ec2::254 (AWS, Nitro instances with the IPv6 endpoint on)
  and fd20:ce::254 (GCE);
* with Docker, containers on Docker's bridge networks (FORWARD, through the
  DOCKER-USER chain Docker consults first; IPv4 only, as Docker's IPv6 is off
  by default).

Not covered: anything running as another uid on the host's own network stack:
root (which `sudo: true` or the docker group give the runner anyway), and
containers started with `--network host`, whose processes run as their own
uid (usually root) in the host's namespace. Those pools are root-equivalent;
the plan and README say so.
"""

from __future__ import annotations

import os
import subprocess

from .config import Config
from .http import AgentError
from .log import log

METADATA_IP = "169.254.169.254"
METADATA_IP6 = ("fd00:ec2::254", "fd20:ce::254")  # AWS IMDS, GCE metadata server


def _run(tool: list[str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*tool, *args], capture_output=True, check=False, timeout=60)


def _ensure(tool: list[str], chain: str, rule: list[str]) -> None:
    """Insert `rule` at the top of `chain` unless it is there already (the agent may restart)."""
    if _run(tool, "-C", chain, *rule).returncode == 0:
        return
    done = _run(tool, "-I", chain, "1", *rule)
    if done.returncode != 0:
        raise AgentError(f"{tool[0]} -I {chain} failed: {done.stderr.decode(errors='replace').strip()}; "
                         "not starting the runner without the metadata block")


# TCP only, and not port 53: on GCE the metadata address is also the VPC's DNS
# server, which Docker hands to containers; the credentials are served over
# HTTP (TCP), so blocking TCP cuts them off without breaking name resolution.
NOT_DNS = ["-p", "tcp", "!", "--dport", "53"]


def block_metadata(cfg: Config, uid: int) -> None:
    owner = ["-m", "owner", "--uid-owner", str(uid), "-j", "REJECT"]
    _ensure(cfg.iptables, "OUTPUT", ["-d", METADATA_IP, *NOT_DNS, *owner])
    if os.path.exists("/proc/net/if_inet6"):  # a kernel without IPv6 has nothing to block
        for address in METADATA_IP6:
            _ensure(cfg.ip6tables, "OUTPUT", ["-d", address, *NOT_DNS, *owner])
    if cfg.docker:
        # Docker creates DOCKER-USER when it starts and keeps rules already in it.
        if _run(cfg.iptables, "-n", "-L", "DOCKER-USER").returncode != 0:
            _run(cfg.iptables, "-N", "DOCKER-USER")
        _ensure(cfg.iptables, "DOCKER-USER", ["-d", METADATA_IP, *NOT_DNS, "-j", "REJECT"])
    log.info("metadata endpoint blocked for uid %d (IPv4 and IPv6)%s", uid, " and containers" if cfg.docker else "")
