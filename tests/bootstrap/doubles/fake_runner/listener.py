#!/usr/bin/env python3
"""Fake ``bin/Runner.Listener`` of the actions/runner tarball (stdlib only).

Installed by ``runner_tarball.build_runner_tarball`` next to fake ``config.sh``,
``run.sh``, ``run-helper.sh.template`` and ``env.sh`` that mirror the real
scripts. It honours the real runner's command line contract:

* commands ``configure`` / ``remove`` / ``run``; ``--flag`` and ``--arg value``
  parsing like ``CommandLineParser``; each command takes only its own flags and
  args (``validOptions`` in src/Runner.Listener/CommandSettings.cs: ``run``
  takes ``--once``, ``--jitconfig``, ``--startuptype``), anything else is
  refused with the real "Unrecognized command-line input arguments" error;
* every arg or flag may instead come from ``ACTIONS_RUNNER_INPUT_<NAME>``
  (flags parse as booleans), and those variables are removed from the
  environment, as ``CommandSettings`` does;
* ``configure`` refuses to run twice: the runner counts as configured when
  ``.runner`` *or* ``.runner_migrated`` exists (ConfigurationStore.cs
  ``IsConfigured``); it writes ``.runner`` (with the UTF-8 BOM the real one
  has), ``.credentials`` and ``.credentials_rsaparams``;
* when the service asks (``refresh_config``), a connected runner writes its
  settings again as ``.runner_migrated`` / ``.credentials_migrated``
  (RunnerConfigUpdater.cs), and later runs prefer them;
* ``run --jitconfig`` decodes the base64 JIT blob and writes each file into the
  runner directory, as Runner.cs does;
* an update message (the service's answer for an outdated runner) makes it
  update itself as SelfUpdater.cs does: new ``bin.<version>`` next to ``bin``,
  every root ``.sh`` deleted and copied again, ``bin`` swapped for a symlink
  (update.sh.template), then exit 3 (``RunnerUpdating``) or, for a run-once or
  ephemeral runner, 4 (``RunOnceRunnerUpdating``); run-helper.sh waits for
  ``update.finished`` and run.sh starts the new version. If a step fails (files
  it may not replace) it prints "Runner update failed" and keeps listening;
* like config.sh and .NET, it needs libicu: ``bin/fake-ldconfig`` stands for
  the VM's linker cache (a test may hide libicu from it), and without libicu
  ``run`` dies the way .NET does (exit 134);
* a second session for a connected runner is a conflict: exit 5
  (``SessionConflict``);
* SIGINT/SIGTERM end the listener; an interrupted job is cancelled;
* while a job runs there is a child process whose argv[0] is ``<install dir>/bin/Runner.Worker``, as the
  real listener starts one per job (src/Runner.Listener/JobDispatcher.cs: ``bin/Runner.Worker spawnclient
  <out> <in>``); the agent's idle check looks for it in /proc. It is ``sleep``, renamed, ended with the job;
* a deleted registration (404 from the service, also while it waits on a job:
  GitHub removes an ephemeral runner as its job completes) ends it with
  "Runner registration has been deleted" and TerminatedError, like the real one.

Instead of the Actions service it talks to the GitHub double's ``/_actions/``
endpoints (URL from the JIT config / registration, or ``control_url`` baked
into ``.fake_runner.json``), so a test sees the runner go online and busy and
decides when jobs arrive and end.

Every invocation and event is appended as a JSON line to the record file
(``$FAKE_RUNNER_RECORD``, else ``record`` in ``.fake_runner.json``, else
``_fake_runner/calls.jsonl`` in the install dir): argv, environment variable
*names* (never values), uid/gid, and what happened.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONF: dict[str, Any] = (
    json.loads((ROOT / ".fake_runner.json").read_text()) if (ROOT / ".fake_runner.json").exists() else {}
)
# After a self-update bin/ is bin.<version>/, which carries its own version.
_UPDATED = Path(__file__).resolve().parent / ".fake_version"
VERSION = _UPDATED.read_text().strip() if _UPDATED.exists() else CONF.get("version", "2.330.0")
ENV_PREFIX = "ACTIONS_RUNNER_INPUT_"
COMMANDS = {"configure", "remove", "run", "warmup"}
FLAGS = {"check", "commit", "disableupdate", "ephemeral", "generateserviceconfig", "help", "once",
         "replace", "runasservice", "unattended", "version", "no-default-labels", "local"}
ARGS = {"auth", "labels", "monitorsocketaddress", "name", "pat", "runnergroup", "startuptype", "token",
        "url", "username", "windowslogonaccount", "windowslogonpassword", "work", "jitconfig"}
# CommandSettings.cs: genericOptions for every command, validOptions per command.
GENERIC = {"help", "version", "commit", "check"}
VALID = {
    "configure": {"disableupdate", "ephemeral", "generateserviceconfig", "replace", "runasservice", "unattended",
                  "no-default-labels", "auth", "labels", "monitorsocketaddress", "name", "pat", "runnergroup",
                  "token", "url", "username", "windowslogonaccount", "windowslogonpassword", "work"},
    "remove": {"token", "pat", "local"},
    "run": {"once", "jitconfig", "startuptype"},
    "warmup": set(),
}
# Constants.Runner.ReturnCode
TERMINATED_ERROR, RUNNER_UPDATING, RUN_ONCE_RUNNER_UPDATING, SESSION_CONFLICT = 1, 3, 4, 5
CONFIG_FILES = (".runner", ".runner_migrated")  # HostContext.GetConfigFile: Runner, MigratedRunner
CREDENTIAL_FILES = (".credentials", ".credentials_migrated", ".credentials_rsaparams")


class Stop(Exception):
    """Raised from the signal handler to unwind whatever the listener is doing."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signal = signal.Signals(signum).name


def record_path() -> Path:
    explicit = os.environ.get("FAKE_RUNNER_RECORD") or CONF.get("record")
    return Path(explicit) if explicit else ROOT / "_fake_runner" / "calls.jsonl"


def record(event: str, **data: Any) -> None:
    path = record_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"event": event, "time": time.time(), "pid": os.getpid(), **data}
    with open(path, "a") as fh:  # one write per line: O_APPEND keeps concurrent writers apart
        fh.write(json.dumps(line) + "\n")


def log(message: str) -> None:
    """Print like the real listener and copy into _diag/Runner_*.log."""
    print(message, flush=True)
    diag = ROOT / "_diag"
    diag.mkdir(exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    with open(diag / f"Runner_{time.strftime('%Y%m%d', time.gmtime())}-utc.log", "a") as fh:
        fh.write(f"[{stamp} INFO Runner] {message}\n")


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())


class Settings:
    """Command line + ACTIONS_RUNNER_INPUT_* environment, like CommandSettings."""

    def __init__(self, argv: list[str]) -> None:
        self.commands: list[str] = []
        self.flags: set[str] = set()
        self.args: dict[str, str] = {}
        scope: str | None = None
        for arg in argv:
            if arg.startswith("--"):
                scope = arg[2:].lower()
                self.flags.add(scope)
            elif scope is not None:
                self.args[scope] = arg
                self.flags.discard(scope)
                scope = None
            else:
                self.commands.append(arg.lower())
        self.env: dict[str, str] = {}
        self.env_names: list[str] = []
        for key in list(os.environ):
            if key.upper().startswith(ENV_PREFIX):
                self.env_names.append(key)
                value = os.environ.pop(key).strip()  # the real runner scrubs them too
                if value:
                    self.env[key[len(ENV_PREFIX):].lower()] = value

    def unknown(self) -> list[str]:
        command = (self.commands or ["run"])[0]
        valid = GENERIC | VALID.get(command, set())
        return ([c for c in self.commands if c not in COMMANDS] + [f for f in self.flags if f not in valid]
                + [a for a in self.args if a not in valid])

    def get(self, name: str) -> str | None:
        return self.args.get(name) or self.env.get(name)

    def flag(self, name: str) -> bool:
        return name in self.flags or self.env.get(name, "").lower() == "true"

    def source(self, name: str) -> str | None:
        """Where an input came from, for assertions: "argv", "env" or None."""
        return "argv" if name in self.args or name in self.flags else "env" if name in self.env else None


def http(method: str, url: str, body: Any = None, token: str | None = None, timeout: float = 30) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", "User-Agent": f"fake-runner/{VERSION}"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw) if raw else None
        except ValueError:
            return err.code, {"message": raw.decode(errors="replace")}


def control_url(fallback_url: str | None) -> str:
    if CONF.get("control_url"):
        return str(CONF["control_url"]).rstrip("/") + "/_actions/"
    if fallback_url:
        parts = fallback_url.split("/")
        return "/".join(parts[:3]) + "/_actions/"
    raise SystemExit("fake runner: no control_url in .fake_runner.json and no --url to derive it from")


def missing(settings: Settings, name: str) -> int:
    """The real runner prompts; unattended it gives up."""
    if settings.flag("unattended"):
        log(f"Invalid configuration provided for {name}. Terminating unattended configuration.")
    else:
        log(f"Enter {name}: (fake runner cannot prompt)")
    record("error", reason=f"missing {name}", unattended=settings.flag("unattended"))
    return TERMINATED_ERROR


def configured() -> bool:
    """ConfigurationStore.IsConfigured: `.runner` or `.runner_migrated`."""
    return any((ROOT / name).exists() for name in CONFIG_FILES)


def has_libicu() -> bool:
    """config.sh's check (`ldconfig -NXv ... | grep libicu`), through the fake linker cache."""
    done = subprocess.run([str(ROOT / "bin" / "fake-ldconfig"), "-NXv"], capture_output=True, text=True)
    return "libicu" in done.stdout + done.stderr


def configure(settings: Settings) -> int:
    if configured():
        log("Cannot configure the runner because it is already configured. To reconfigure the runner, "
            "run 'config.cmd remove' or './config.sh remove' first.")
        record("error", reason="already configured")
        return TERMINATED_ERROR
    url = settings.get("url")
    if not url or not url.startswith(("http://", "https://")):
        return missing(settings, "url")
    token = settings.get("token")
    if not token:
        return missing(settings, "token")
    labels = [label for label in (settings.get("labels") or "").split(",") if label]
    body = {
        "url": url, "token": token, "name": settings.get("name") or socket.gethostname(),
        "labels": labels, "runner_group": settings.get("runnergroup") or "default",
        "work": settings.get("work") or "_work", "ephemeral": settings.flag("ephemeral"),
        "replace": settings.flag("replace"), "no_default_labels": settings.flag("no-default-labels"),
        "disable_update": settings.flag("disableupdate"), "arch": {"arm64": "ARM64"}.get(CONF.get("arch", ""), "X64"),
    }
    status, answer = http("POST", control_url(url) + "register", body)
    if status != 200:
        log(f"Http response code: {status} from 'POST {url}': {answer and answer.get('message')}")
        record("error", reason="registration failed", status=status, message=answer and answer.get("message"))
        return TERMINATED_ERROR
    run = answer["runner"]
    runner_file = {
        "agentId": run["id"], "agentName": run["name"], "poolId": run["runner_group_id"],
        "poolName": answer["pool_name"], "serverUrl": answer["server_url"], "gitHubUrl": answer["github_url"],
        "workFolder": body["work"], "ephemeral": body["ephemeral"], "disableUpdate": body["disable_update"],
    }
    # The real .runner is written with a UTF-8 byte order mark: readers must cope.
    (ROOT / ".runner").write_text(json.dumps(runner_file, indent=2), encoding="utf-8-sig")
    for name, content in ((".credentials", {"scheme": "OAuth", "data": {"clientId": answer["credential"]}}),
                          (".credentials_rsaparams", {"d": "ZmFrZQ==", "exponent": "AQAB"})):
        path = ROOT / name
        path.write_text(json.dumps(content))
        path.chmod(0o600)
    log("√ Connected to GitHub\n\n# Runner Registration\n\n√ Runner successfully added\n"
        "√ Runner connection is good\n\n# Runner settings\n\n√ Settings Saved.")
    record("configured", runner_id=run["id"], name=run["name"], labels=run["labels"],
           ephemeral=body["ephemeral"], runner_group=body["runner_group"], url=url)
    return 0


def remove(settings: Settings) -> int:
    log("\n# Runner removal\n")
    if not configured():
        log("Does not exist. Skipping Removing runner from the server\nDoes not exist. Skipping Removing "
            ".credentials\nDoes not exist. Skipping Removing .runner")
        record("removed", configured=False)
        return 0
    token = settings.get("token") or settings.get("pat")
    if not token:
        return missing(settings, "token")
    runner_file = json.loads(settings_file().read_text(encoding="utf-8-sig"))
    status, answer = http("POST", control_url(runner_file["serverUrl"].split("/_actions")[0]) + "unregister",
                          {"token": token, "runner_id": runner_file["agentId"]})
    if status != 204:
        log(f"Failed: Removing runner from the server: {answer and answer.get('message')}")
        record("error", reason="remove failed", status=status)
        return TERMINATED_ERROR
    for name in (*CREDENTIAL_FILES, *CONFIG_FILES):  # DeleteCredential / DeleteSettings: both names
        (ROOT / name).unlink(missing_ok=True)
    log("√ Runner removed successfully\n√ Removed .credentials\n√ Removed .runner")
    record("removed", configured=True, runner_id=runner_file["agentId"])
    return 0


def settings_file() -> Path:
    """The migrated settings when there are any (BrokerMessageListener prefers them), else `.runner`."""
    migrated = ROOT / ".runner_migrated"
    return migrated if migrated.exists() else ROOT / ".runner"


def load_identity(settings: Settings) -> tuple[dict[str, Any], str] | None:
    """(.runner content, runner credential) from --jitconfig or the files on disk."""
    jit = settings.get("jitconfig")
    if jit:
        files = json.loads(base64.b64decode(jit))
        for name, content in files.items():  # Runner.cs writes every file of the JIT config
            (ROOT / name).write_bytes(base64.b64decode(content))
        runner_file = json.loads(base64.b64decode(files[".runner"]))
        creds = json.loads(base64.b64decode(files[".credentials"]))
        return {"serverUrl": runner_file["ServerUrl"], "agentName": runner_file["AgentName"],
                "agentId": runner_file["AgentId"], "ephemeral": runner_file["Ephemeral"]}, creds["Data"]["ClientId"]
    if not configured():
        return None
    runner_file = json.loads(settings_file().read_text(encoding="utf-8-sig"))
    migrated = ROOT / ".credentials_migrated"
    creds = json.loads((migrated if migrated.exists() else ROOT / ".credentials").read_text())
    return runner_file, creds["data"]["clientId"]


def migrate(runner_file: dict[str, Any], credential: str) -> None:
    """RunnerConfigUpdater: refreshed settings and credentials saved under the migrated names."""
    (ROOT / ".runner_migrated").write_text(json.dumps(runner_file, indent=2), encoding="utf-8-sig")
    path = ROOT / ".credentials_migrated"
    path.write_text(json.dumps({"scheme": "OAuth", "data": {"clientId": credential}}))
    path.chmod(0o600)
    record("migrated", name=runner_file.get("agentName"))


def self_update(target: str, run_once: bool) -> int | None:
    """SelfUpdater.cs + update.sh.template; the exit code to leave with, or None if the update failed."""
    record("update_message", current=VERSION, target=target)
    log("Runner update in progress, do not shutdown runner.")
    log(f"Downloading {target} runner")
    try:
        # CopyLatestRunnerToRoot: bin.<version>/ and externals.<version>/ under the root...
        new_bin = ROOT / f"bin.{target}"
        new_bin.mkdir(exist_ok=True)
        for item in (ROOT / "bin").iterdir():
            if item.is_file():
                (new_bin / item.name).write_bytes(item.read_bytes())
                (new_bin / item.name).chmod(item.stat().st_mode & 0o777)
        (new_bin / ".fake_version").write_text(target + "\n")
        (ROOT / f"externals.{target}").mkdir(exist_ok=True)
        # ...then every root .sh is deleted and copied again ("works around permissions issues").
        for script in sorted(ROOT.glob("*.sh")):
            data, mode = script.read_bytes(), script.stat().st_mode & 0o777
            script.unlink()
            script.write_bytes(data)
            script.chmod(mode)
        # update.sh.template, once the listener has exited: bin -> bin.<version>.
        (ROOT / "bin").rename(ROOT / f"bin.{VERSION}")
        (ROOT / "bin").symlink_to(new_bin)
    except OSError as error:
        log(f"Runner update failed: {error}")  # SelfUpdater: the exception is caught, the listener goes on
        record("self_update", ok=False, target=target, error=type(error).__name__)
        return None
    Path("update.finished").touch()  # what run-helper.sh waits for (relative to the runner's cwd)
    record("self_update", ok=True, target=target)
    log("Runner will exit shortly for update, should be back online within 10 seconds.")
    return RUN_ONCE_RUNNER_UPDATING if run_once else RUNNER_UPDATING


def run_job(job: dict[str, Any]) -> None:
    """What the fake job does: probe URLs and run a command, as this (runner) user."""
    for probe in job.get("probe_urls") or []:
        method, _, url = probe.partition(" ") if " " in probe else ("GET", "", probe)
        try:
            req = urllib.request.Request(url, method=method, headers={"X-aws-ec2-metadata-token-ttl-seconds": "60",
                                                                     "Metadata-Flavor": "Google"})
            with urllib.request.urlopen(req, timeout=2) as resp:
                record("probe", url=url, method=method, ok=True, status=resp.status)
        except urllib.error.HTTPError as err:
            record("probe", url=url, method=method, ok=True, status=err.code)
        except OSError as err:
            record("probe", url=url, method=method, ok=False, error=repr(err))
    if job.get("command"):
        done = subprocess.run(["bash", "-c", job["command"]], capture_output=True, text=True, timeout=60)
        record("command", command=job["command"], returncode=done.returncode, stdout=done.stdout,
               stderr=done.stderr)


def start_worker() -> subprocess.Popen[bytes]:
    """The job's Runner.Worker: only its argv[0] matters (``sleep`` ignores it)."""
    return subprocess.Popen([str(ROOT / "bin" / "Runner.Worker"), "infinity"], executable="sleep")


def run(settings: Settings) -> int:
    if not has_libicu():
        # What .NET does without ICU (the runner is a .NET program): abort before anything else.
        print("Process terminated. Couldn't find a valid ICU package installed on the system. Set the "
              "configuration flag System.Globalization.Invariant to true if you want to run with no "
              "globalization support.", flush=True)
        record("error", reason="no libicu")
        return 134
    identity = load_identity(settings)
    if identity is None:
        log("Not configured. Run config.(sh/cmd) to configure the runner.")
        record("error", reason="not configured")
        return TERMINATED_ERROR
    runner_file, credential = identity
    service = runner_file["serverUrl"]
    job: dict[str, Any] | None = None
    connected = False
    try:
        status, answer = http("POST", service + "sessions", {"version": VERSION}, credential)
        if status == 404:
            log("Runner registration has been deleted from the server, please re-configure.")
            record("error", reason="registration deleted")
            return TERMINATED_ERROR
        if status == 409:
            log(f"Failed to create a session. {answer and answer.get('message')}")
            record("error", reason="session conflict")
            return SESSION_CONFLICT
        if status != 200:
            log(f"Failed to create a session: {answer and answer.get('message')}")
            record("error", reason="session refused", status=status)
            return TERMINATED_ERROR
        connected = True
        log(f"\n√ Connected to GitHub\n\nCurrent runner version: '{VERSION}'\n{now()}: Listening for Jobs")
        record("connected", name=runner_file["agentName"], runner_id=runner_file["agentId"], version=VERSION)
        if answer.get("refresh_config"):
            migrate(runner_file, credential)
        while True:
            status, message = http("GET", service + "message?wait=5", token=credential, timeout=15)
            if status == 204:
                continue
            if status == 404:
                log("Runner registration has been deleted from the server, please re-configure.")
                record("error", reason="registration deleted")
                return TERMINATED_ERROR
            if message.get("type") == "update":
                code = self_update(message["target_version"], bool(runner_file.get("ephemeral"))
                                   or settings.flag("once"))
                if code is not None:
                    return code
                continue
            job = message
            http("POST", f"{service}jobs/{job['job_id']}/start", {}, credential)  # acknowledge: now busy
            log(f"{now()}: Running job: {job['name']}")
            record("job_started", job_id=job["job_id"], name=job["name"])
            worker = start_worker()
            try:
                run_job(job)
                while True:
                    status, state = http("GET", f"{service}jobs/{job['job_id']}/wait?wait=5", token=credential,
                                         timeout=15)
                    if status == 200 and state["state"] == "completed":
                        break
                    if status == 404:
                        # GitHub removes an ephemeral runner as soon as its job completes: if that happened
                        # between two polls the registration is gone, and the runner leaves like the real one.
                        log("Runner registration has been deleted from the server, please re-configure.")
                        record("error", reason="registration deleted", job_id=job["job_id"])
                        job = None  # nothing left to cancel
                        return TERMINATED_ERROR
            finally:
                worker.kill()
                worker.wait()
            result = (state.get("result") or "succeeded").capitalize()
            log(f"{now()}: Job {job['name']} completed with result: {result}")
            record("job_completed", job_id=job["job_id"], name=job["name"], result=result)
            job = None
            if runner_file.get("ephemeral") or settings.flag("once"):
                return 0
    except Stop as stop:
        record("signal", signal=stop.signal, busy=job is not None)
        if job is not None:
            http("POST", f"{service}jobs/{job['job_id']}/cancel", {}, credential)
            log(f"{now()}: Job {job['name']} completed with result: Canceled")
        log("Exiting...")
        return 0
    finally:
        if connected:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            http("DELETE", service + "sessions", token=credential, timeout=5)


def main(argv: list[str]) -> int:
    settings = Settings(argv)
    internal = ("_FAKE_RUNNER_", "FAKE_RUNNER_")
    record(
        "invoke", entry=os.environ.pop("_FAKE_RUNNER_ENTRY", "bin/Runner.Listener"), argv=argv,
        command=(settings.commands or [None])[0],
        env_names=sorted(k for k in os.environ if not k.startswith(internal)),
        inputs_from_env=sorted(settings.env_names), uid=os.getuid(), gid=os.getgid(), euid=os.geteuid(),
        cwd=os.getcwd(), ppid=os.getppid(),
        inputs={name: settings.source(name) for name in sorted(ARGS | FLAGS) if settings.source(name)},
    )
    unknown = settings.unknown()
    if unknown:
        log(f"Unrecognized command-line input arguments: '{', '.join(unknown)}'. "
            "For usage refer to: .\\config.cmd --help or ./config.sh --help")
        record("error", reason="unrecognized", unknown=unknown)
        return TERMINATED_ERROR
    if settings.flag("version"):
        print(VERSION)
        return 0

    def on_signal(signum: int, _frame: Any) -> None:
        raise Stop(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    command = (settings.commands or ["run"])[0]
    try:
        code = {"configure": configure, "remove": remove}.get(command, run)(settings)
    except Stop as stop:
        record("signal", signal=stop.signal, busy=False)
        code = 0
    record("exit", command=command, code=code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
