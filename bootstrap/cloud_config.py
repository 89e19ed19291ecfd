"""Render a pool's cloud-init user data: the same document for AWS and GCP.

It carries only non-secret configuration (user data is readable by anyone who
can describe the instance): where the credential lives, not the credential.
It writes

* /opt/gh-runners/agent.py  the VM agent: bootstrap/agent/ minified into one
  file (an import hook serving the package's modules from a dict), then xz and
  base85 (see agent_file for why not cloud-init's gz+b64); or, when the agent
  is an object in the cloud's storage (AWS: EC2's 16 KB of user data),
  /opt/gh-runners/loader.py, which fetches it pinned by its sha256 (bootstrap/loader.py);
* /etc/gh-runners/config.json  what the agent needs to know;
* /etc/gh-runners/setup.sh  the pool's setup script (root only), if any;
* /etc/apt/apt.conf.d/90gh-runners  apt-get waits for the dpkg lock instead of
  failing while apt's daily jobs hold it on a first boot;
* gh-runners-agent.service, started once cloud-init's final stage is done.

Same inputs give the same bytes (sorted files and keys, no timestamps), so an
unchanged pool never shows a user data diff.
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import io
import json
import lzma
import tokenize
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from bootstrap import runner_releases
from schema.models import AwsPool, GcpPool, GitHubTarget, Schedule

AGENT_DIR = Path(__file__).resolve().parent / "agent"
AGENT_PACKAGE = "gh_runners_agent"
AGENT_PATH = "/opt/gh-runners/agent.py"
LOADER_PATH = "/opt/gh-runners/loader.py"
LOADER_SOURCE = Path(__file__).resolve().parent / "loader.py"
# The unit's start timeout: the loader's deadline (240 s) and one last attempt (IMDS 3 x 5 s, curl 70 s).
LOADER_SECONDS = 360
CONFIG_PATH = "/etc/gh-runners/config.json"
SETUP_PATH = "/etc/gh-runners/setup.sh"
APT_CONF_PATH = "/etc/apt/apt.conf.d/90gh-runners"
# apt-get waits this long for the dpkg locks instead of failing at once (apt-pkg/deb/debsystem.cc reads
# DPkg::Lock::Timeout for lock-frontend and lock). The agent waits for the lists lock itself.
APT_CONF = 'DPkg::Lock::Timeout "900";\n'
UNIT_NAME = "gh-runners-agent.service"
RUNNER_USER = "runner"
AWS_USER_DATA_LIMIT = 16384
DEFAULT_DRAIN_SECONDS = 3000  # 50 minutes: inside the 1 hour default of an ASG lifecycle hook
REQUIRED_LOCATION = {
    "aws": ("cloud", "secret", "region", "group", "lifecycle_hook"),
    "gcp": ("cloud", "secret", "region", "group", "project"),
}
CREDENTIAL_STORE = {"aws": "aws-ssm-parameter", "gcp": "gcp-secret-manager"}


@dataclass(frozen=True)
class AgentObject:
    """Where the VM fetches its agent instead of carrying it in the user data: an S3 object holding
    `agent_source(cloud)` (bytes whose sha256 is `sha256`; the key names the digest: `agent_key`)."""

    bucket: str
    key: str
    region: str
    sha256: str


def render_user_data(pool: AwsPool | GcpPool, github: GitHubTarget, location: Mapping[str, str | int],
                     runner_group_id: int | None = None, agent: AgentObject | None = None) -> str:
    """The `#cloud-config` document for `pool`'s VMs.

    `runner_group_id`: the id of the pool's runner group when the stack knows it (it manages the group);
    the VM then registers without looking the group up. Repository targets always use the default group.
    `agent`: the object the VM fetches its agent from (a loader goes into the user data); None: inline.
    """
    cloud = str(location.get("cloud", ""))
    if cloud != pool.provider:
        raise ValueError(f"location cloud {cloud!r} does not match pool {pool.name}'s provider {pool.provider!r}")
    missing = [key for key in REQUIRED_LOCATION[cloud] if location.get(key) in (None, "")]
    if missing:
        raise ValueError(f"location for pool {pool.name} lacks {', '.join(missing)}")
    drain = int(location.get("drain_seconds", DEFAULT_DRAIN_SECONDS))

    files: list[dict[str, Any]] = [
        # cloud-init writes files root:root 0644 unless told otherwise.
        {"path": LOADER_PATH, "content": loader_file(agent)} if agent else
        {"path": AGENT_PATH, "content": agent_file(cloud)},
        {"path": CONFIG_PATH, "content": json.dumps(agent_config(pool, github, location, drain, runner_group_id),
                                                    sort_keys=True)},
        {"path": APT_CONF_PATH, "content": APT_CONF},
    ]
    if pool.setup_script:
        files.append({"path": SETUP_PATH, "permissions": "0700", "content": setup_script(pool.setup_script)})
    unit = systemd_unit(pool, drain, fetched=agent is not None)
    files.append({"path": f"/etc/systemd/system/{UNIT_NAME}", "content": unit})

    user: dict[str, Any] = {
        "name": RUNNER_USER,
        "gecos": "GitHub Actions runner",
        "shell": "/bin/bash",
        "lock_passwd": True,
    }
    if pool.sudo:
        user["sudo"] = "ALL=(ALL) NOPASSWD:ALL"

    doc: dict[str, Any] = {"users": ["default", user]}
    if pool.docker:
        doc["packages"] = ["docker.io"]
    doc["write_files"] = files
    # The unit orders itself after cloud-final, so --no-block: a blocking start
    # from inside cloud-final would wait for itself.
    doc["runcmd"] = [
        # Docker access is root access: only when the pool asks for it. Added
        # here, after the package created its (system) group: a group made
        # earlier by cloud-init's users module would break docker.io's postinst.
        *([["usermod", "-aG", "docker", RUNNER_USER]] if pool.docker else []),
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", UNIT_NAME],
        ["systemctl", "start", "--no-block", UNIT_NAME],
    ]
    header = f"#cloud-config\n# gh-runners pool {pool.name} ({cloud}): non-secret configuration only.\n"
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=1 << 20, allow_unicode=True)


def agent_config(pool: AwsPool | GcpPool, github: GitHubTarget, location: Mapping[str, str | int],
                 drain: int, runner_group_id: int | None = None) -> dict[str, Any]:
    """/etc/gh-runners/config.json (read by bootstrap/agent/config.py)."""
    cloud = str(location["cloud"])
    if github.scope == "repository":
        runner_group_id = REPOSITORY_GROUP_ID
    doc: dict[str, Any] = {
        "pool": pool.name,
        "cloud": cloud,
        "labels": pool.all_labels,
        "github": {"scope": github.scope, "target": github.target, "api_url": github.api_url,
                   "web_url": github.web_url},
        "runner_group": pool.group_name,
        "runner_prefix": runner_prefix(pool.name, location),
        "ephemeral": pool.ephemeral,
        "runner": {"version": pool.runner_version, "arch": pool.arch,
                   **runner_releases.known(pool.runner_version, pool.arch)},
        "credential": {"store": CREDENTIAL_STORE[cloud], "name": str(location["secret"])},
        "docker": pool.docker,
        "sudo": pool.sudo,
        "setup_script": SETUP_PATH if pool.setup_script else "",
        "drain_seconds": drain,
        "location": {key: location[key] for key in sorted(location)},
    }
    if runner_group_id is not None:
        doc["runner_group_id"] = runner_group_id
    if location.get("leave_seconds"):  # what a short window leaves for deregistering (agent default: 20 s)
        doc["leave_seconds"] = int(location["leave_seconds"])
    if pool.on_demand:  # fixed pools never leave on idle
        doc["idle_timeout"] = pool.idle_timeout_seconds
    if cloud == "gcp":
        doc["floor"] = {"min": pool.size.min, "schedules": [cron_sets(s) for s in pool.schedules]}
    return doc


# Repositories have only the default runner group, id 1 (GitHub's own example body for a repository's
# generate-jitconfig: @octokit/openapi api.github.com.json; docs.github.com/rest/actions/self-hosted-runners).
REPOSITORY_GROUP_ID = 1


def runner_prefix(pool: str, location: Mapping[str, str | int]) -> str:
    """`<pool>-<6 hex>`: the hash of where the pool's VM group is (cloud, project, region, group name,
    which already holds the project and stack), so two stacks or projects with a pool of the same name
    never share runner names, and a ghost sweep never takes another deployment's runners for its own."""
    where = "/".join(str(location.get(key, "")) for key in ("cloud", "project", "region", "group"))
    return f"{pool}-{hashlib.sha256(where.encode()).hexdigest()[:6]}"


# (low, high, names) of minute, hour, day of month, month, day of week
_CRON_FIELDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}),
    (1, 12, {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                         "nov", "dec"), 1)}),
    (0, 7, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)


def cron_sets(schedule: Schedule) -> dict[str, Any]:
    """A schedule with its cron fields expanded to value lists: the agent works out the floor without a
    cron parser (bootstrap/agent/gcp.py current_floor)."""
    fields = schedule.cron.lower().split()
    values = []
    for text, (low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        found: set[int] = set()
        for item in text.split(","):
            span, _, step = item.partition("/")
            bounds = [low, high] if span == "*" else [names[b] if b in names else int(b) for b in span.split("-")]
            last = bounds[-1] if len(bounds) == 2 or not step else high
            found.update(range(bounds[0], last + 1, int(step or 1)))
        values.append(sorted(found))
    minutes, hours, days, months, weekdays = values
    return {"minutes": minutes, "hours": hours, "days": days, "months": months,
            "weekdays": sorted({d % 7 for d in weekdays}), "desired": schedule.desired,
            "time_zone": schedule.time_zone,
            # Vixie cron: when both day fields are restricted, a day matching either fires.
            "either": not (fields[2].startswith("*") or fields[4].startswith("*"))}


def setup_script(script: str) -> str:
    """The pool's script as written, with a bash shebang if it has none."""
    body = script if script.endswith("\n") else script + "\n"
    return body if body.startswith("#!") else "#!/bin/bash\n" + body


def systemd_unit(pool: AwsPool | GcpPool, drain: int, fetched: bool = False) -> str:
    """The agent's unit. KillMode=mixed with SIGTERM: systemd signals the agent only, which drains and then
    stops the runner itself. WantedBy=cloud-init.target, not multi-user.target: cloud-final runs after
    multi-user.target and the unit after cloud-final, so that would be an ordering cycle on later boots.
    `fetched`: the loader puts the agent in place first (ExecStartPre, as root; a failed fetch fails the
    start and Restart= tries again), within a start timeout longer than systemd's default 90 s.
    (The reasons live here, not in the unit: EC2's 16 KB of user data are counted in bytes.)"""
    loader = (f"ExecStartPre=/usr/bin/python3 -I {LOADER_PATH}\nTimeoutStartSec={LOADER_SECONDS}\n"
              if fetched else "")
    after = "network-online.target cloud-final.service" + (" docker.service" if pool.docker else "")
    return f"""[Unit]
Description=gh-runners agent: GitHub Actions runner of pool {pool.name}
Wants=network-online.target
After={after}
StartLimitIntervalSec=0

[Service]
Type=exec
{loader}ExecStart=/usr/bin/python3 -I {AGENT_PATH}
KillMode=mixed
KillSignal=SIGTERM
TimeoutStopSec={drain + 600}
Restart=on-failure
RestartSec=30
StandardOutput=journal
StandardError=journal
SyslogIdentifier=gh-runners-agent

[Install]
WantedBy=cloud-init.target
"""


# --- the agent bundle -------------------------------------------------------------


def agent_source(cloud: str) -> str:
    """The whole agent as one Python file: an importer holding the package's minified modules.

    Only `cloud`'s module goes in (the agent imports it lazily): the other
    cloud's code would only cost user data bytes.
    """
    skip = {"__main__.py", *(f"{other}.py" for other in REQUIRED_LOCATION if other != cloud)}
    modules = []
    for path in sorted(AGENT_DIR.glob("*.py")):
        if path.name not in skip:
            source = minify(path.read_text(encoding="utf-8"))
            if "'''" in source or source.endswith("\\"):
                raise ValueError(f"{path.name} cannot be bundled in a raw triple-quoted string")
            modules.append(f"{path.stem!r}:r'''{source}'''")
    return _LOADER.replace("MODULES", ",\n".join(modules))


# Runs the package from the dict `S` (module name -> source) via a meta path finder.
_LOADER = f"""import importlib.abc,importlib.util,sys
S={{MODULES}}
P="{AGENT_PACKAGE}"
def _mod(name):
 return "__init__" if name==P else name[len(P)+1:] if name.startswith(P+".") else None
class _Finder(importlib.abc.MetaPathFinder,importlib.abc.Loader):
 def find_spec(self,name,path=None,target=None):
  if _mod(name) in S:
   return importlib.util.spec_from_loader(name,self,is_package=name==P)
 def exec_module(self,module):
  exec(compile(S[_mod(module.__name__)],module.__name__,"exec"),module.__dict__)
sys.meta_path.insert(0,_Finder())
from {AGENT_PACKAGE}.main import main
sys.exit(main())
"""


@functools.cache
def agent_bytes(cloud: str) -> bytes:
    """What an agent object holds: the minified bundle as the VM runs it."""
    return agent_source(cloud).encode()


@functools.cache
def agent_sha256(cloud: str) -> str:
    """The digest the loader pins."""
    return hashlib.sha256(agent_bytes(cloud)).hexdigest()


def agent_key(cloud: str) -> str:
    """The object key, named after the content: a changed agent is a new object, never an overwrite of
    the one booting VMs may be fetching."""
    return f"agent/{agent_sha256(cloud)}.py"


_LOADER_OBJECT = 'OBJECT = {"bucket": "", "key": "", "region": "", "sha256": ""}\n'


@functools.cache
def loader_source() -> str:
    """bootstrap/loader.py minified, once per program run. Providers call it before any `apply`
    renders user data: `ast.parse` inside Pulumi's apply callbacks has tripped CPython 3.11's
    "AST constructor recursion depth mismatch" SystemError here."""
    source = minify(LOADER_SOURCE.read_text(encoding="utf-8"))
    if source.count(_LOADER_OBJECT) != 1:
        raise ValueError("bootstrap/loader.py lost its OBJECT line")
    return source


def loader_file(agent: AgentObject) -> str:
    """/opt/gh-runners/loader.py: bootstrap/loader.py, minified, with the object it fetches filled in."""
    return loader_source().replace(_LOADER_OBJECT, f"OBJECT = {json.dumps(asdict(agent))}\n")


@functools.cache  # the bundle depends only on the cloud: build it once per program run, not per pool
def agent_file(cloud: str) -> str:
    """/opt/gh-runners/agent.py: the bundle, xz-compressed and base85-encoded.

    AWS takes 16 KB of user data. Written with cloud-init's `gz+b64` the agent
    alone would take ~16 KB; xz (-5%) in base85 (+25% instead of base64's
    +33%) brings the whole document to ~15.9 KB for the example pools.
    base85's alphabet has no quote or backslash, so it sits in a plain literal.
    """
    # The agent is ~40 KB: a 1 MiB dictionary compresses it as well as the
    # preset's 64 MiB one, and the VM then needs 1 MiB, not 65 MiB, to unpack it.
    # lc=3, pb=0: literal context and no position bits suit text (a few dozen bytes off the default).
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 20, "lc": 3, "pb": 0}]
    payload = lzma.compress(agent_source(cloud).encode(), format=lzma.FORMAT_XZ, filters=filters)
    return ("# gh-runners agent (bootstrap/agent/), xz+base85\n"
            "import base64,lzma\n"
            f'exec(compile(lzma.decompress(base64.b85decode("{base64.b85encode(payload).decode()}")),'
            f'"{AGENT_PATH}","exec"))\n')


def minify(source: str) -> str:
    """Drop comments, docstrings, blank lines and what only mypy reads: the bundle is for the VM, the
    repo keeps them.

    Docstrings, annotations inside functions and `if TYPE_CHECKING:` blocks
    are found with `ast`, comments with `tokenize`, so a `#` inside a string is
    left alone. The tests run the minified bundle.
    """
    lines = source.splitlines(keepends=True)
    drop: set[int] = set()  # 1-based line numbers
    cuts: list[tuple[int, int, int]] = []  # (line, start col, end col) of function annotations
    tree = ast.parse(source)
    for statement in tree.body:
        # `if TYPE_CHECKING:` never runs. `from __future__ import annotations` is not needed once the
        # annotations left are a class body's (dataclass fields), which Python 3.10 evaluates fine.
        type_checking = isinstance(statement, ast.If) and isinstance(statement.test, ast.Name) \
            and statement.test.id == "TYPE_CHECKING" and not statement.orelse
        future = isinstance(statement, ast.ImportFrom) and statement.module == "__future__"
        if type_checking or future:
            drop.update(range(statement.lineno, (statement.end_lineno or statement.lineno) + 1))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str) and first.end_lineno is not None:
                drop.update(range(first.lineno, first.end_lineno + 1))
                if len(node.body) == 1:  # the block must not end up empty
                    lines[first.lineno - 1] = " " * first.col_offset + "pass\n"
                    drop.discard(first.lineno)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # Annotations are for mypy, not for the VM: `x: T` -> `x`, `) -> T:` -> `):`.
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None and arg.annotation is not None and arg.lineno == arg.annotation.end_lineno:
                    cuts.append((arg.lineno, arg.col_offset + len(arg.arg), arg.annotation.end_col_offset or 0))
            ret = node.returns
            if ret is not None and ret.lineno == ret.end_lineno:
                arrow = lines[ret.lineno - 1].rfind("->", 0, ret.col_offset)
                if arrow >= 0:
                    cuts.append((ret.lineno, arrow, ret.end_col_offset or 0))
            # `self.x: T = v` -> `self.x = v` (a class body's annotations stay: dataclasses need them).
            for inner in ast.walk(node):
                if isinstance(inner, ast.AnnAssign) and inner.value is not None \
                        and inner.target.end_lineno == inner.annotation.end_lineno == inner.lineno:
                    cuts.append((inner.lineno, inner.target.end_col_offset or 0, inner.annotation.end_col_offset or 0))
    inside_strings: set[int] = set()  # blank lines there are part of a value
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        (row, col), end_row = token.start, token.end[0]
        if token.type == tokenize.COMMENT:  # before the cuts: `col` counts in the original line
            lines[row - 1] = lines[row - 1][:col].rstrip() + "\n"
        elif end_row > row and token.type != tokenize.NL:
            inside_strings.update(range(row + 1, end_row + 1))
    for row, start, end in sorted(cuts, reverse=True):  # right to left keeps columns valid
        line = lines[row - 1]
        lines[row - 1] = line[:start].rstrip() + line[end:]
    out = []
    for number, line in enumerate(lines, start=1):
        if number in drop:
            continue
        if number in inside_strings:
            out.append(line)
        elif line.strip():
            # One space per level of four: logical lines are indented in fours,
            # continuation lines (inside brackets) may take any indentation.
            depth = len(line) - len(line.lstrip(" "))
            out.append(" " * ((depth + 3) // 4) + line[depth:])
    return "".join(out)


# libyaml's emitter when present (16x faster per pool); output is byte-identical
# to the pure-Python one (tests/bootstrap/test_cloud_config.py checks).
_DumperBase: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_DumperBase):
    """Literal blocks for multi-line strings, so the unit and script stay readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
