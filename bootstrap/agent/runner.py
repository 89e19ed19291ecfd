"""The actions/runner binary: download and verify, configure, run as the runner user, stop."""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import signal
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from typing import Any

from .config import Config
from .github import GitHub
from .http import AgentError, NetworkError, Response
from .log import log

MARKER = ".runner-version"  # a prebaked image carries it to skip the download
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise AgentError(f"user {name!r} does not exist (cloud-init creates it)") from None


def run_setup_script(cfg: Config) -> None:
    """The pool's setup script, as root, once per boot, before the runner exists."""
    path = cfg.setup_script
    if not path or not os.path.exists(path):
        return
    done = os.path.join(cfg.state_dir, "setup-done")
    if os.path.exists(done):
        return
    log.info("running the pool's setup script %s", path)
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    code = subprocess.run([path], cwd="/", env=env, stdin=subprocess.DEVNULL, check=False).returncode
    if code != 0:
        raise AgentError(f"the pool's setup script {path} failed with exit code {code}")
    os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
    with open(done, "w", encoding="utf-8"):
        pass


# --- install -----------------------------------------------------------------


def expected_sha256(release: dict[str, Any], asset_name: str, platform: str) -> str:
    """The published digest: the asset's `digest`, else the marker in the release notes."""
    for asset in release.get("assets", []):
        digest = asset.get("digest") or ""
        if asset.get("name") == asset_name and digest.startswith("sha256:"):
            return str(digest.removeprefix("sha256:").lower())
    found = re.search(rf"<!-- BEGIN SHA {re.escape(platform)} -->\s*([0-9a-fA-F]{{64}})\s*<!-- END SHA "
                      rf"{re.escape(platform)} -->", release.get("body") or "")
    if not found:
        raise AgentError(f"release v{release.get('tag_name', '?')} publishes no sha256 for {asset_name}; refusing it")
    return found[1].lower()


def install(cfg: Config, gh: GitHub, user: pwd.struct_passwd) -> None:
    platform = f"linux-{cfg.arch}"
    stamp = f"{cfg.version} {platform}"
    marker = os.path.join(cfg.runner_dir, MARKER)
    if _read(marker) == stamp:
        log.info("runner %s already installed in %s", stamp, cfg.runner_dir)
        return
    name = f"actions-runner-{platform}-{cfg.version}.tar.gz"
    release = gh.release(cfg.version)
    asset = next((a for a in release.get("assets", []) if a.get("name") == name), None)
    if asset is None:
        raise AgentError(f"release v{cfg.version} has no asset {name}")
    want = expected_sha256(release, name, platform)
    os.makedirs(cfg.runner_dir, exist_ok=True)
    parent = os.path.dirname(os.path.abspath(cfg.runner_dir))
    with tempfile.NamedTemporaryFile(dir=parent, prefix=".runner-", suffix=".tar.gz") as tmp:
        log.info("downloading %s", name)
        url = asset["browser_download_url"]
        answer = gh.retry(f"download {name}", lambda: _download(url, tmp))
        if answer.status != 200:
            raise AgentError(f"download {name}: HTTP {answer.status}")
        got = answer.body.decode()
        if got != want:
            raise AgentError(f"{name}: sha256 {got} does not match the published {want}; refusing to install it")
        tmp.seek(0)
        with tarfile.open(fileobj=tmp, mode="r:gz") as tar:
            _extract(tar, cfg.runner_dir)
    _chown_tree(cfg.runner_dir, user)
    with open(marker, "w", encoding="utf-8") as f:
        f.write(stamp + "\n")
    log.info("installed runner %s (sha256 %s verified)", stamp, want)


def _download(url: str, out: Any) -> Response:
    """Stream to `out`, hashing as it goes; the answer's body is the hex digest."""
    out.seek(0)
    out.truncate()
    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "gh-runners-agent"})  # noqa: S310 - release URL
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 - https URL from the release
            while chunk := answer.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except urllib.error.HTTPError as error:
        error.close()
        return Response(error.code, b"")
    except (urllib.error.URLError, OSError) as error:
        raise NetworkError(f"GET {url}: {getattr(error, 'reason', error)}") from None
    out.flush()
    return Response(200, digest.hexdigest().encode())


def _extract(tar: tarfile.TarFile, dest: str) -> None:
    """Extract refusing absolute paths, device files and anything (links too) pointing out of `dest`."""
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    # Pythons without extraction filters (Debian 12's 3.11.2): the same checks by hand.
    root = os.path.realpath(dest)
    for member in tar.getmembers():
        paths = [os.path.join(dest, member.name)]
        if member.issym():
            paths.append(os.path.join(dest, os.path.dirname(member.name), member.linkname))
        elif member.islnk():
            paths.append(os.path.join(dest, member.linkname))
        for path in paths:
            if os.path.commonpath([root, os.path.realpath(path)]) != root or member.isdev():
                raise AgentError(f"runner tarball member {member.name!r} points out of {dest}; refusing it")
    tar.extractall(dest)  # noqa: S202 - members checked above


def _chown_tree(path: str, user: pwd.struct_passwd) -> None:
    for top, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(top, name), user.pw_uid, user.pw_gid)
    os.chown(path, user.pw_uid, user.pw_gid)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return ""


# --- configure and run ---------------------------------------------------------


def _env(user: pwd.struct_passwd, extra: dict[str, str]) -> dict[str, str]:
    """A clean environment: nothing of the agent's (and so nothing secret) leaks in."""
    return {
        "HOME": user.pw_dir,
        "USER": user.pw_name,
        "LOGNAME": user.pw_name,
        "SHELL": user.pw_shell or "/bin/bash",
        "PATH": PATH,
        "LANG": "C.UTF-8",
        **extra,
    }


def _as_user(user: pwd.struct_passwd) -> dict[str, Any]:
    # extra_groups must be explicit: otherwise the child keeps root's supplementary groups.
    return {
        "user": user.pw_uid,
        "group": user.pw_gid,
        "extra_groups": os.getgrouplist(user.pw_name, user.pw_gid),
        "umask": 0o022,
    }


def configure(cfg: Config, user: pwd.struct_passwd, name: str, token: str) -> None:
    """Persistent pools: config.sh with a registration token (passed in the environment, not argv)."""
    for stale in (".runner", ".credentials", ".credentials_rsaparams"):
        # A previous boot's registration: --replace re-registers under the same name.
        path = os.path.join(cfg.runner_dir, stale)
        if os.path.exists(path):
            os.remove(path)
    argv = [os.path.join(cfg.runner_dir, "config.sh"), "--unattended", "--replace", "--url", cfg.runner_url,
            "--name", name, "--labels", ",".join(cfg.labels), "--work", "_work"]
    if cfg.scope != "repository":
        argv += ["--runnergroup", cfg.runner_group]
    log.info("configuring runner %s for %s", name, cfg.runner_url)
    code = subprocess.run(argv, cwd=cfg.runner_dir, env=_env(user, {"ACTIONS_RUNNER_INPUT_TOKEN": token}),
                          stdin=subprocess.DEVNULL, check=False, **_as_user(user)).returncode
    if code != 0:
        raise AgentError(f"config.sh failed with exit code {code}")


def start(cfg: Config, user: pwd.struct_passwd, extra_env: dict[str, str]) -> subprocess.Popen[bytes]:
    """run.sh as the runner user, in its own process group (so stop() reaches the listener)."""
    return subprocess.Popen([os.path.join(cfg.runner_dir, "run.sh")], cwd=cfg.runner_dir,
                            env=_env(user, extra_env), stdin=subprocess.DEVNULL, start_new_session=True,
                            **_as_user(user))


def stop(proc: subprocess.Popen[bytes], grace: float) -> int:
    """SIGINT to the runner's group (what Ctrl-C does), SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning("runner did not stop within %.0fs; killing it", grace)
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
    return proc.returncode


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
