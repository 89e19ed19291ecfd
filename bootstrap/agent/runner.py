"""The actions/runner binary: resolve and verify, install root-owned, its dependencies, configure, run, stop.

The install belongs to root: every file of the release is root's and read-only
to the runner user, in a directory that is root's but sticky and writable by
the runner's group, so the runner can create its own files (`.runner`,
`_work`, `_diag`) but can neither change nor replace root's (a job cannot swap
config.sh, which receives the next registration token, or bin/). The runner
therefore cannot update itself; the agent installs the verified release the
pool asks for ("latest" is resolved at every boot) and, if GitHub asks a
runner to update anyway, installs that version itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from . import state
from .config import Config
from .http import AgentError, NetworkError, Response, Retry
from .log import log

MARKER = "runner-version"  # in root's own state directory: "<version> linux-<arch>"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Registration state the runner writes; since v2.323.0 also the migrated names, which count as "configured"
# too (actions/runner src/Runner.Common/ConfigurationStore.cs IsConfigured, HostContext.cs GetConfigFile).
RUNNER_FILES = (".runner", ".runner_migrated", ".credentials", ".credentials_migrated", ".credentials_rsaparams")
# What config.sh checks before it configures (src/Misc/layoutroot/config.sh): these .NET libraries'
# dependencies (ldd) and libicu (ldconfig).
CORE_LIBS = ("libcoreclr.so", "libSystem.Security.Cryptography.Native.OpenSsl.so", "libSystem.IO.Compression.Native.so")


def account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise AgentError(f"user {name!r} does not exist (cloud-init creates it)") from None


def wait_for_apt(cfg: Config) -> None:
    """Wait (bounded) until no apt or dpkg run holds its locks: on a first boot apt's daily jobs hold them
    for minutes, and an `apt-get update` in a setup script would fail at once."""
    deadline = time.monotonic() + cfg.apt_wait
    for path in cfg.apt_locks:
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # no such lock on this image
        try:
            while True:
                try:  # the fcntl write lock apt takes (apt-pkg GetLock): free when we can take it
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.lockf(fd, fcntl.LOCK_UN)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AgentError(f"{path} still held after {cfg.apt_wait:.0f}s") from None
                    log.info("waiting for %s (apt or dpkg is running)", path)
                    time.sleep(1)
        finally:
            os.close(fd)


def run_setup_script(cfg: Config) -> None:
    """The pool's setup script, as root, once per boot, before the runner exists."""
    path = cfg.setup_script
    if not path or not os.path.exists(path) or state.read(cfg.state_dir, "setup-done"):
        return
    wait_for_apt(cfg)
    log.info("running the pool's setup script %s", path)
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    code = subprocess.run([path], cwd="/", env=env, stdin=subprocess.DEVNULL, check=False).returncode
    if code != 0:
        raise AgentError(f"the pool's setup script {path} failed with exit code {code}")
    state.write(cfg.state_dir, "setup-done", "1")


# --- which release --------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    version: str
    url: str
    sha256: str


def expected_sha256(release: dict[str, Any], asset_name: str, platform: str) -> str:
    """The published digest: the asset's `digest`, else the marker in the release notes."""
    for asset in release.get("assets", []):
        digest = asset.get("digest") or ""
        if asset.get("name") == asset_name and digest.startswith("sha256:"):
            return str(digest.removeprefix("sha256:").lower())
    found = re.search(rf"<!-- BEGIN SHA {re.escape(platform)} -->\s*([0-9a-fA-F]{{64}})\s*<!-- END SHA "
                      rf"{re.escape(platform)} -->", release.get("body") or "")
    if not found:
        raise AgentError(f"release {release.get('tag_name', '?')} publishes no sha256 for {asset_name}; refusing it")
    return found[1].lower()


def release_of(doc: dict[str, Any], arch: str) -> Release:
    """The tarball for `arch` in a release's metadata, with its published digest."""
    version = str(doc.get("tag_name", "")).removeprefix("v")
    name = f"actions-runner-linux-{arch}-{version}.tar.gz"
    asset = next((a for a in doc.get("assets", []) if a.get("name") == name), None)
    if asset is None:
        raise AgentError(f"release v{version} has no asset {name}")
    return Release(version, str(asset["browser_download_url"]), expected_sha256(doc, name, f"linux-{arch}"))


def installed(cfg: Config) -> str:
    """The installed version, if the install is root's and intact."""
    stamp = state.read(cfg.lib_dir, MARKER)
    with contextlib.suppress(OSError):
        for path in (cfg.runner_dir, os.path.join(cfg.runner_dir, "bin")):
            st = os.lstat(path)
            if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != os.geteuid():
                return ""
        version, _, platform = stamp.partition(" ")
        return version if platform == f"linux-{cfg.arch}" else ""
    return ""


# --- install -----------------------------------------------------------------


def install(cfg: Config, release: Release, user: pwd.struct_passwd, retry: Retry) -> None:
    if installed(cfg) == release.version:
        log.info("runner %s already installed in %s", release.version, cfg.runner_dir)
        return
    name = release.url.rsplit("/", 1)[-1]
    parent = os.path.dirname(os.path.abspath(cfg.runner_dir))
    fresh = f"{cfg.runner_dir}.new"
    with tempfile.NamedTemporaryFile(dir=parent, prefix=".runner-", suffix=".tar.gz") as tmp:
        log.info("downloading %s", name)
        answer = retry(f"download {name}", lambda: _download(release.url, tmp))
        if answer.status != 200:
            raise AgentError(f"download {name}: HTTP {answer.status}")
        got = answer.body.decode()
        if got != release.sha256:
            raise AgentError(f"{name}: sha256 {got} does not match the published {release.sha256}; "
                             "refusing to install it")
        tmp.seek(0)
        shutil.rmtree(fresh, ignore_errors=True)
        os.mkdir(fresh, 0o700)  # nobody else sees it until it is complete
        with tarfile.open(fileobj=tmp, mode="r:gz") as tar:
            _extract(tar, fresh)
    _own(fresh)
    os.chown(fresh, 0, user.pw_gid)
    # Sticky: the runner's group may add files, only their owner may remove them.
    os.chmod(fresh, 0o1775)  # noqa: S103 - group write is the point, the sticky bit what makes it safe
    state.remove(cfg.lib_dir, MARKER)
    shutil.rmtree(cfg.runner_dir, ignore_errors=True)  # never follows a symlink the runner left in it
    os.rename(fresh, cfg.runner_dir)
    state.write(cfg.lib_dir, MARKER, f"{release.version} linux-{cfg.arch}")
    log.info("installed runner %s (sha256 %s verified)", release.version, release.sha256)


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


def _own(path: str) -> None:
    """Everything below `path` root's, and writable by root only."""
    for top, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            full = os.path.join(top, name)
            os.lchown(full, 0, 0)
            if not os.path.islink(full):
                os.chmod(full, os.lstat(full).st_mode & 0o755)


def update_request(cfg: Config) -> str:
    """The newer version GitHub told the runner to update to: it creates `bin.<version>` next to root's
    bin/ (actions/runner src/Runner.Listener/SelfUpdater.cs CopyLatestRunnerToRoot) and cannot go further.
    Only a newer release counts (a job cannot make root install an older one)."""
    current = [int(n) for n in installed(cfg).split(".") if n.isdigit()]
    with contextlib.suppress(OSError), os.scandir(cfg.runner_dir) as entries:
        for entry in entries:
            found = re.fullmatch(r"bin\.(\d+)\.(\d+)\.(\d+)", entry.name)
            if found and entry.stat(follow_symlinks=False).st_uid != os.geteuid() \
                    and [int(n) for n in found.groups()] > current:
                return entry.name[4:]
    return ""


# --- dependencies --------------------------------------------------------------


def missing_dependencies(cfg: Config) -> list[str]:
    """What config.sh would report missing, checked the same way (ldd on .NET's libraries, ldconfig)."""
    missing = []
    for lib in CORE_LIBS:
        path = os.path.join(cfg.runner_dir, "bin", lib)
        if os.path.exists(path) and "not found" in _output(["ldd", path]):
            missing.append(lib)
    if "libicu" not in _output(["ldconfig", "-NXv"]):
        missing.append("libicu")
    return missing


def ensure_dependencies(cfg: Config) -> None:
    """Install the runner's dependencies with its own bin/installdependencies.sh, only if any is missing."""
    missing = missing_dependencies(cfg)
    if not missing:
        return
    log.info("the runner's dependencies are missing (%s): running bin/installdependencies.sh", ", ".join(missing))
    wait_for_apt(cfg)
    env = {"PATH": PATH, "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    code = subprocess.run([os.path.join(cfg.runner_dir, "bin", "installdependencies.sh")], cwd=cfg.runner_dir,
                          env=env, stdin=subprocess.DEVNULL, check=False).returncode
    still = missing_dependencies(cfg)
    if code != 0 or still:
        raise AgentError(f"bin/installdependencies.sh exited with {code}; still missing: {', '.join(still) or '-'}")


def _output(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr


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
    for stale in RUNNER_FILES:
        # A previous boot's registration, migrated or not: --replace re-registers under the same name.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(cfg.runner_dir, stale))
    # --disableupdate: the runner cannot replace root's files; the agent installs new releases itself.
    argv = [os.path.join(cfg.runner_dir, "config.sh"), "--unattended", "--replace", "--disableupdate", "--url",
            cfg.runner_url, "--name", name, "--labels", ",".join(cfg.labels), "--work", "_work"]
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


def busy(cfg: Config, uid: int) -> bool:
    """A job runs: the listener runs each job in a child `<runner>/bin/Runner.Worker spawnclient ...`, as the
    runner user (actions/runner src/Runner.Listener/JobDispatcher.cs: processInvoker.ExecuteAsync with
    fileName Path.Combine(bin directory, "Runner.Worker")). Read from /proc: no GitHub call."""
    worker = f"{cfg.runner_dir}/bin/Runner.Worker".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        # /proc/<pid>/ files belong to the process's user; a process may end meanwhile.
        with contextlib.suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
            if os.fstat(f.fileno()).st_uid == uid and f.read().split(b"\0")[0] == worker:
                return True
    return False
