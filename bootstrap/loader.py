"""The AWS VM's agent loader: fetch the agent from the stack's S3 bucket, pinned by its sha256.

EC2 takes 16 KB of user data and the agent alone is ~14.5 KB of it, so on AWS
the user data carries this file instead (bootstrap/cloud_config.py renders it,
with OBJECT filled in, into /opt/gh-runners/loader.py). The agent's unit runs
it as root before the agent (ExecStartPre). It

* does nothing when the agent file already has the pinned digest (a restart,
  a reboot);
* reads the instance role's keys from IMDSv2 (link-local, no proxy);
* GETs the object with curl, SigV4-signed by curl's --aws-sigv4 like the
  agent's own calls (bootstrap/agent/aws.py `signed`): the keys reach curl on
  stdin (`-K -`), never on its command line;
* writes the agent only if its sha256 is the pinned one: the VM runs no other
  bytes, whoever can write to the bucket;
* retries within a bounded time, then fails: systemd starts the unit again.

Standard library and curl only (no pip on the VM). GH_RUNNERS_IMDS_URL,
GH_RUNNERS_S3_URL (a path-style endpoint), GH_RUNNERS_AGENT_PATH, GH_RUNNERS_RETRY_BASE
and GH_RUNNERS_LOADER_SECONDS exist for the tests, as in the agent's config.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request

OBJECT = {"bucket": "", "key": "", "region": "", "sha256": ""}  # filled in by cloud_config.loader_file
AGENT_PATH = os.environ.get("GH_RUNNERS_AGENT_PATH") or "/opt/gh-runners/agent.py"
IMDS = (os.environ.get("GH_RUNNERS_IMDS_URL") or "http://169.254.169.254").rstrip("/")
S3_URL = (os.environ.get("GH_RUNNERS_S3_URL") or "").rstrip("/")
RETRY_BASE = float(os.environ.get("GH_RUNNERS_RETRY_BASE") or 1)
DEADLINE_SECONDS = float(os.environ.get("GH_RUNNERS_LOADER_SECONDS") or 240)  # < the unit's TimeoutStartSec
# S3 wants x-amz-content-sha256 on every SigV4 request; curl 7.88 does not add it for s3 by itself, and
# signs it when given (SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token). Newer
# curl adds its own only when the request has none (curl/curl lib/http_aws_sigv4.c, Curl_output_aws_sigv4:
# parse_content_sha_hdr first, calc_s3_payload_hash otherwise): the same header on curl 8.5 (Ubuntu 24.04).
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # IMDS is link-local: never a proxy


class Failed(Exception):
    pass


def digest(path: str) -> str:
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return ""


def imds(path: str, token: str = "") -> str:
    # IMDSv2: a session token (PUT), then the path with it. http by design: link-local.
    if token:
        url, method, headers = f"{IMDS}/latest/meta-data/{path}", "GET", {"X-aws-ec2-metadata-token": token}
    else:
        url, method, headers = f"{IMDS}/latest/api/token", "PUT", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    request = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310 - the IMDS URL
    try:
        with _DIRECT.open(request, timeout=5) as answer:
            return str(answer.read().decode())
    except OSError as error:
        raise Failed(f"IMDS {path or 'token'}: {error}") from None


def object_url() -> str:
    """Virtual-hosted style on S3's regional endpoint (what AWS documents for every region, GovCloud
    included); a test endpoint takes the path style."""
    if S3_URL:
        return f"{S3_URL}/{OBJECT['bucket']}/{OBJECT['key']}"
    return f"https://{OBJECT['bucket']}.s3.{OBJECT['region']}.amazonaws.com/{OBJECT['key']}"


def _quote(value: str) -> str:
    """A double-quoted value in curl's config syntax."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fetch() -> None:
    token = imds("")
    role = imds("iam/security-credentials/", token).split()[0]
    keys = json.loads(imds(f"iam/security-credentials/{role}", token))
    config = (f"user = {_quote(keys['AccessKeyId'] + ':' + keys['SecretAccessKey'])}\n"
              f"header = {_quote('X-Amz-Security-Token: ' + keys['Token'])}\n")
    url, partial = object_url(), f"{AGENT_PATH}.part"
    argv = ["curl", "-sS", "--proto", "=http,https" if S3_URL else "=https", "--max-time", "60",
            "--aws-sigv4", f"aws:amz:{OBJECT['region']}:s3", "-K", "-",
            "-H", f"x-amz-content-sha256: {EMPTY_SHA256}", "-o", partial, "-w", "%{http_code}", url]
    try:
        done = subprocess.run(argv, input=config.encode(), capture_output=True, timeout=70, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Failed(f"GET {url}: {type(error).__name__}") from None
    del config, keys
    status = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or status != "200":
        raise Failed(f"GET {url}: curl exit {done.returncode}, HTTP {status or '-'}: "
                     f"{done.stderr.decode(errors='replace').strip()[:200]}")
    found = digest(partial)
    if found != OBJECT["sha256"]:
        os.unlink(partial)
        raise Failed(f"GET {url}: sha256 {found}, expected {OBJECT['sha256']}: refused")
    os.chmod(partial, 0o644)
    os.replace(partial, AGENT_PATH)


def main() -> int:
    if digest(AGENT_PATH) == OBJECT["sha256"]:
        return 0
    os.makedirs(os.path.dirname(AGENT_PATH), exist_ok=True)
    deadline, attempt = time.monotonic() + DEADLINE_SECONDS, 0
    while True:
        try:
            fetch()
            print(f"gh-runners loader: agent {OBJECT['sha256'][:12]} in place", file=sys.stderr)
            return 0
        except Failed as error:
            print(f"gh-runners loader: {error}", file=sys.stderr)
        pause = min(RETRY_BASE * 2**attempt, 30 * RETRY_BASE)
        attempt += 1
        if time.monotonic() + pause > deadline:
            print("gh-runners loader: giving up; systemd starts the unit again", file=sys.stderr)
            return 1
        time.sleep(pause)


if __name__ == "__main__":
    sys.exit(main())
