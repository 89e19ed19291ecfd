"""Cut the runner off from the metadata endpoint before it starts.

Job code runs as the runner user; without this it could ask the metadata
server for the instance identity and read the GitHub credential with it.
AWS IMDS and the GCE metadata server (metadata.google.internal) share the
address 169.254.169.254. Containers reach it through the FORWARD path, which
Docker routes through the DOCKER-USER chain first.
"""

from __future__ import annotations

import subprocess

from .config import Config
from .http import AgentError
from .log import log

METADATA_IP = "169.254.169.254"


def _iptables(cfg: Config, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*cfg.iptables, *args], capture_output=True, check=False, timeout=60)


def _ensure(cfg: Config, chain: str, rule: list[str]) -> None:
    """Insert `rule` at the top of `chain` unless it is there already (the agent may restart)."""
    if _iptables(cfg, "-C", chain, *rule).returncode == 0:
        return
    done = _iptables(cfg, "-I", chain, "1", *rule)
    if done.returncode != 0:
        raise AgentError(f"iptables -I {chain} failed: {done.stderr.decode(errors='replace').strip()}; "
                         "not starting the runner without the metadata block")


# TCP only, and not port 53: on GCE the metadata address is also the VPC's DNS
# server, which Docker hands to containers; the credentials are served over
# HTTP (TCP), so blocking TCP cuts them off without breaking name resolution.
NOT_DNS = ["-p", "tcp", "!", "--dport", "53"]


def block_metadata(cfg: Config, uid: int) -> None:
    _ensure(cfg, "OUTPUT", ["-d", METADATA_IP, *NOT_DNS, "-m", "owner", "--uid-owner", str(uid), "-j", "REJECT"])
    if cfg.docker:
        # Docker creates DOCKER-USER when it starts and keeps rules already in it.
        if _iptables(cfg, "-n", "-L", "DOCKER-USER").returncode != 0:
            _iptables(cfg, "-N", "DOCKER-USER")
        _ensure(cfg, "DOCKER-USER", ["-d", METADATA_IP, *NOT_DNS, "-j", "REJECT"])
    log.info("metadata endpoint %s blocked for uid %d%s", METADATA_IP, uid, " and containers" if cfg.docker else "")
