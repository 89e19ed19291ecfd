"""The rendered user data: valid for cloud-init, shellcheck-clean, deterministic, small enough for AWS."""

from __future__ import annotations

import ast
import hashlib
import json
import lzma
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap.cloud_config import (
    AGENT_DIR,
    AGENT_PATH,
    APT_CONF_PATH,
    AWS_USER_DATA_LIMIT,
    CONFIG_PATH,
    LOADER_PATH,
    SETUP_PATH,
    UNIT_NAME,
    AgentObject,
    agent_bytes,
    agent_key,
    agent_source,
    minify,
    render_user_data,
)
from schema.loader import load_file
from schema.models import AwsPool, GcpPool, GitHubTarget
from tests.judges.cloud_config import (
    SCHEMA_PATH,
    SOURCE,
    Verdict,
    real_cloud_init,
    schema_top_level_keys,
    schema_verdict,
)
from tests.judges.shellcheck import shellcheck

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = load_file(ROOT / "runners.yaml")
AWS_LOCATION = {"cloud": "aws", "secret": "/gh-runners/codex/github-credential", "region": "eu-central-1",
                "group": "codex-20240101abcdef", "lifecycle_hook": "codex-drain-20240101abcdef"}
GCP_LOCATION = {"cloud": "gcp", "secret": "projects/my-project-123/secrets/gh-runners-general",
                "region": "europe-west1", "group": "general-mig-1234567", "project": "my-project-123"}


def location(pool: AwsPool | GcpPool) -> dict[str, Any]:
    return dict(AWS_LOCATION if pool.provider == "aws" else GCP_LOCATION)


def aws_agent(region: str = "eu-central-1") -> AgentObject:
    """The agent object as the AWS backend passes it, with the widest bucket name S3 allows."""
    from providers.aws.agent_store import WIDEST_BUCKET

    return AgentObject(WIDEST_BUCKET, agent_key("aws"), region, hashlib.sha256(agent_bytes("aws")).hexdigest())


def rendered(pool: AwsPool | GcpPool, **kw: Any) -> str:
    """The user data as the pool's backend renders it: AWS fetches the agent (providers/aws/agent_store.py)."""
    agent = aws_agent(str(location(pool)["region"])) if pool.provider == "aws" else None
    return render_user_data(pool, EXAMPLE.github, location(pool), agent=agent, **kw)


def example_documents() -> list[tuple[str, str]]:
    return [(pool.name, rendered(pool)) for pool in EXAMPLE.pools]


def pool(provider: str = "aws", **fields: Any) -> AwsPool | GcpPool:
    data = {"name": "web", "provider": provider, **fields}
    return AwsPool.model_validate(data) if provider == "aws" else GcpPool.model_validate(data)


def files(document: str) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in yaml.safe_load(document)["write_files"]}


# --- third-party judges (tests/judges/) ---------------------------------------------

CUSTOM = {"plain": {}, "docker-sudo-persistent-setup": {"docker": True, "sudo": True, "ephemeral": False,
                                                       "setup_script": "apt-get install -y jq\n"}}
# One mistake each, and what cloud-init (22.4.2's schema) says about it: (valid, deprecated).
BROKEN = {
    "no header": ("runcmd: [[echo, hi]]\n", (False, False)),
    "not YAML": ("#cloud-config\nruncmd: [\n", (False, False)),
    "not a mapping": ("#cloud-config\n- runcmd\n", (False, False)),
    "runcmd not a list": ("#cloud-config\nruncmd: 5\n", (False, False)),
    "write_files entry without path": ("#cloud-config\nwrite_files:\n- content: hi\n", (False, False)),
    "octal permissions as a YAML int": ("#cloud-config\nwrite_files:\n- path: /x\n  permissions: 0644\n",
                                        (False, False)),
    "deprecated key": ("#cloud-config\napt_update: true\n", (True, True)),
    "deprecated value": ("#cloud-config\nusers:\n- name: x\n  sudo: false\n", (True, True)),
}


def judged_documents() -> list[tuple[str, str]]:
    """The example's user data and two custom pools covering every optional part."""
    return [*example_documents(), *((name, render_user_data(pool(**extra), EXAMPLE.github, AWS_LOCATION))
                                     for name, extra in CUSTOM.items())]


def test_cloud_init_schema_accepts_the_user_data_without_deprecations() -> None:
    for name, document in judged_documents():
        assert schema_verdict(document) == Verdict(()), name


def test_every_top_level_key_is_one_cloud_init_defines() -> None:
    # cloud-init's schema allows unknown top-level keys and cloud-init ignores them: a typo would be dropped silently.
    known = schema_top_level_keys()
    for name, document in judged_documents():
        assert set(yaml.safe_load(document)) <= known, f"{name}: {set(yaml.safe_load(document)) - known}"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_schema_judge_rejects_mistakes(case: str) -> None:
    document, (valid, deprecated) = BROKEN[case]
    verdict = schema_verdict(document)
    assert (verdict.valid, bool(verdict.deprecations)) == (valid, deprecated), verdict


def test_the_vendored_schema_is_the_recorded_one() -> None:
    import hashlib

    assert hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest() == SOURCE["schema_sha256"], \
        "edit nothing by hand: scripts/judges.sh refresh-schema"
    assert SOURCE["package"] == "cloud-init" and SOURCE["version"] in SOURCE["from"]


def test_cloud_init_itself_agrees_with_the_schema_judge(tmp_path: Path) -> None:
    judge = real_cloud_init()
    if isinstance(judge, str):
        pytest.skip(judge)
    cases = [*judged_documents(), *((name, document) for name, (document, _) in BROKEN.items())]
    with ThreadPoolExecutor(4) as workers:
        answers = list(workers.map(lambda case: judge.verdict(case[1], tmp_path), cases))
    for (name, document), (accepted, deprecated, output) in zip(cases, answers, strict=True):
        ours = schema_verdict(document)
        assert (accepted, deprecated) == (ours.valid, bool(ours.deprecations)), (
            f"{name}: cloud-init {judge.version} said:\n{output}\n"
            f"the schema of cloud-init {SOURCE['version']} said: {ours}")
    assert all(accepted and not deprecated for accepted, deprecated, _ in answers[:len(judged_documents())])


def test_every_shell_snippet_passes_shellcheck() -> None:
    no_shebang = render_user_data(pool(setup_script="set -eu\necho hello\n"), EXAMPLE.github, AWS_LOCATION)
    documents = [*example_documents(), ("no-shebang", no_shebang)]
    checked = 0
    for name, document in documents:
        doc = yaml.safe_load(document)
        # Commands are argv lists, never shell strings: nothing for a shell to mis-parse.
        for command in doc.get("runcmd", []) + doc.get("bootcmd", []):
            assert isinstance(command, list), f"{name}: shell string in runcmd/bootcmd: {command!r}"
        for entry in doc["write_files"]:
            if entry["content"].startswith("#!/bin/") and "sh" in entry["content"].splitlines()[0]:
                done = shellcheck(entry["content"])
                assert done.returncode == 0, f"{name} {entry['path']}:\n{done.stdout}"
                checked += 1
    assert checked == 2  # the codex pool's script and the custom one


# --- content -----------------------------------------------------------------------------


# What the example's AWS pool may grow by (setup script, labels...) before EC2's 16 KB: with the agent
# in S3 the user data is the configuration and a loader, ~2.6 KB gzipped (it was ~15.6 KB with the agent).
SETUP_SCRIPT_BUDGET = 12 * 1024


def test_example_aws_user_data_fits_the_16_kb_limit_with_room_for_setup_scripts() -> None:
    """EC2 takes 16 KB of user data; the AWS backend sends it gzipped (cloud-init unpacks it). The agent is
    an S3 object, so the example's pools leave 12 KB (gzipped) to a setup script."""
    from providers.aws.group import packed_user_data

    aws = [(name, document) for name, document in example_documents() if "ExecStartPre" in document]
    assert aws, "the example has AWS pools"
    for name, document in aws:
        size = len(packed_user_data(document))
        assert size < AWS_USER_DATA_LIMIT - SETUP_SCRIPT_BUDGET, f"{name}: {size} bytes"
        assert AGENT_PATH not in files(document) and LOADER_PATH in files(document)
    # A 12 KB script of random text (it hardly compresses) still fits.
    noise = hashlib.shake_256(b"setup").hexdigest(SETUP_SCRIPT_BUDGET // 2 - 400)
    big = rendered(pool(setup_script=f"echo {noise}\n"))
    assert len(packed_user_data(big)) < AWS_USER_DATA_LIMIT


def test_output_is_deterministic_across_processes() -> None:
    code = ("import sys; sys.path.insert(0, '.'); from tests.bootstrap.test_cloud_config import example_documents;"
            "import json; print(json.dumps(example_documents()))")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                           env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"}).stdout for seed in ("1", "2")]
    assert runs[0] == runs[1] == json.dumps(example_documents()) + "\n"


def test_agent_config_carries_the_pool_and_where_the_secret_is() -> None:
    codex = EXAMPLE.pools[0]
    config = json.loads(files(render_user_data(codex, EXAMPLE.github, AWS_LOCATION))[CONFIG_PATH]["content"])
    assert config == {
        "pool": "codex", "cloud": "aws", "labels": ["self-hosted", "linux", "x64", "codex"],
        "github": {"scope": "repository", "target": "spigell/my-reforge-ai", "api_url": "https://api.github.com",
                   "web_url": "https://github.com"},
        "runner_group": "Default", "runner_group_id": 1, "runner_prefix": config["runner_prefix"],
        "ephemeral": True, "runner": {"version": "latest", "arch": "x64"},
        "credential": {"store": "aws-ssm-parameter", "name": "/gh-runners/codex/github-credential"},
        "docker": False, "sudo": False, "setup_script": SETUP_PATH, "drain_seconds": 3000,
        "location": AWS_LOCATION, "idle_timeout": 600,  # a demand pool, the default 10m
    }
    assert re.fullmatch(r"codex-[0-9a-f]{6}", config["runner_prefix"])


def test_runner_names_are_unique_per_deployment_of_a_pool() -> None:
    """Two stacks or projects with a pool of the same name have different groups (their names hold the
    project and stack): their runner names differ, so neither's ghost sweep matches the other's runners."""
    def prefix(**where: str) -> str:
        document = render_user_data(pool(), EXAMPLE.github, {**AWS_LOCATION, **where})
        return str(json.loads(files(document)[CONFIG_PATH]["content"])["runner_prefix"])

    first = prefix(group="ghr-proj-dev-web")
    assert first.startswith("web-") and first == prefix(group="ghr-proj-dev-web")  # stable across renders
    others = {prefix(group="ghr-proj-prod-web"), prefix(group="ghr-other-dev-web"), prefix(region="us-east-1")}
    assert first not in others and len(others) == 3
    assert all(len(f"{p}-i-0123456789abcdef0") <= 64 for p in (first, *others))


def test_a_backend_can_set_the_leave_budget_for_its_window() -> None:
    document = render_user_data(pool("gcp"), EXAMPLE.github, {**GCP_LOCATION, "leave_seconds": "8"})
    assert json.loads(files(document)[CONFIG_PATH]["content"])["leave_seconds"] == 8
    default = json.loads(files(render_user_data(pool("gcp"), EXAMPLE.github, GCP_LOCATION))[CONFIG_PATH]["content"])
    assert "leave_seconds" not in default


def test_the_runner_group_id_reaches_the_config_when_known() -> None:
    org = GitHubTarget(organization="acme")
    known = json.loads(files(render_user_data(pool(runner_group="linux"), org, AWS_LOCATION, runner_group_id=42))
                       [CONFIG_PATH]["content"])
    looked_up = json.loads(files(render_user_data(pool(runner_group="linux"), org, AWS_LOCATION))
                           [CONFIG_PATH]["content"])
    assert known["runner_group_id"] == 42 and "runner_group_id" not in looked_up
    # A repository has only the default group, id 1: never looked up.
    repo = json.loads(files(render_user_data(pool(), EXAMPLE.github, AWS_LOCATION))[CONFIG_PATH]["content"])
    assert repo["runner_group_id"] == 1


def test_a_pinned_release_in_the_table_carries_its_url_and_digest(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from bootstrap import runner_releases

    table = tmp_path / "runner_releases.json"
    table.write_text(json.dumps({"2.331.0": {"linux-x64": "ab" * 32, "linux-arm64": "cd" * 32}}))
    monkeypatch.setattr(runner_releases, "TABLE", table)
    monkeypatch.setattr(runner_releases.known, "__defaults__", (table,))

    def runner(**fields: Any) -> dict[str, Any]:
        document = render_user_data(pool(**fields), EXAMPLE.github, AWS_LOCATION)
        return dict(json.loads(files(document)[CONFIG_PATH]["content"])["runner"])

    assert runner(runner_version="2.331.0", instance_types=["m7g.large"], arch="arm64") == {
        "version": "2.331.0", "arch": "arm64", "sha256": "cd" * 32,
        "url": "https://github.com/actions/runner/releases/download/v2.331.0/actions-runner-linux-arm64-2.331.0.tar.gz"}
    assert runner(runner_version="2.330.0") == {"version": "2.330.0", "arch": "x64"}  # not listed: looked up
    assert runner() == {"version": "latest", "arch": "x64"}


def test_the_gcp_floor_carries_min_and_the_schedules_as_value_sets() -> None:
    gcp = pool("gcp", size={"min": 1, "max": 4}, schedules=[
        {"cron": "0 7 * * mon-fri", "desired": 3, "time_zone": "Europe/Berlin"},
        {"cron": "*/30 20 1,15 * *", "desired": 1}])
    config = json.loads(files(render_user_data(gcp, EXAMPLE.github, GCP_LOCATION))[CONFIG_PATH]["content"])
    first, second = config["floor"]["schedules"]
    assert config["floor"]["min"] == 1
    assert first == {"minutes": [0], "hours": [7], "days": list(range(1, 32)), "months": list(range(1, 13)),
                     "weekdays": [1, 2, 3, 4, 5], "desired": 3, "time_zone": "Europe/Berlin", "either": False}
    assert second["minutes"] == [0, 30] and second["days"] == [1, 15] and second["weekdays"] == list(range(7))
    assert "floor" not in json.loads(files(render_user_data(pool(), EXAMPLE.github, AWS_LOCATION))[CONFIG_PATH]
                                     ["content"])


def test_apt_waits_for_the_dpkg_lock() -> None:
    written = files(render_user_data(pool(), EXAMPLE.github, AWS_LOCATION))
    assert written[APT_CONF_PATH]["content"] == 'DPkg::Lock::Timeout "900";\n'
    assert "permissions" not in written[APT_CONF_PATH]  # 0644: apt reads it as any user


def test_enterprise_server_and_organization_groups_reach_the_config() -> None:
    github = GitHubTarget(organization="acme", url="https://ghe.example.com")
    config = json.loads(files(render_user_data(pool("gcp", runner_group="linux", arch="arm64",
                                                     machine_type="t2a-standard-4"), github,
                                                GCP_LOCATION))[CONFIG_PATH]["content"])
    assert config["github"] == {"scope": "organization", "target": "acme",
                                "api_url": "https://ghe.example.com/api/v3", "web_url": "https://ghe.example.com"}
    assert config["runner_group"] == "linux" and config["runner"]["arch"] == "arm64"
    assert config["credential"] == {"store": "gcp-secret-manager", "name": GCP_LOCATION["secret"]}


def test_runner_user_gets_sudo_and_docker_only_when_asked() -> None:
    plain = yaml.safe_load(render_user_data(pool(), EXAMPLE.github, AWS_LOCATION))
    runner = plain["users"][1]
    assert plain["users"][0] == "default" and runner["name"] == "runner"
    assert "sudo" not in runner and "groups" not in runner and "packages" not in plain
    both = yaml.safe_load(render_user_data(pool(docker=True, sudo=True), EXAMPLE.github, AWS_LOCATION))
    assert both["users"][1]["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert "groups" not in both["users"][1] and both["packages"] == ["docker.io"]
    # The docker group comes from the package; the runner joins it afterwards, in runcmd.
    assert both["runcmd"][0] == ["usermod", "-aG", "docker", "runner"]


def test_setup_script_is_root_only_and_keeps_its_own_shebang() -> None:
    written = files(render_user_data(pool(setup_script="#!/usr/bin/env python3\nprint(1)"), EXAMPLE.github,
                                     AWS_LOCATION))
    assert written[SETUP_PATH]["permissions"] == "0700" and "owner" not in written[SETUP_PATH]  # root:root
    assert written[SETUP_PATH]["content"] == "#!/usr/bin/env python3\nprint(1)\n"
    assert SETUP_PATH not in files(render_user_data(pool(), EXAMPLE.github, AWS_LOCATION))


def test_systemd_unit_drains_before_it_is_killed() -> None:
    document = render_user_data(pool(), EXAMPLE.github, {**AWS_LOCATION, "drain_seconds": 1200})
    unit = files(document)[f"/etc/systemd/system/{UNIT_NAME}"]["content"]
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["ExecStart"] == f"/usr/bin/python3 -I {AGENT_PATH}"
    assert settings["KillMode"] == "mixed" and settings["KillSignal"] == "SIGTERM"
    assert int(settings["TimeoutStopSec"]) > 1200 + 60  # drain + the runner's own stop
    assert settings["StandardOutput"] == "journal" and settings["Restart"] == "on-failure"
    assert json.loads(files(document)[CONFIG_PATH]["content"])["drain_seconds"] == 1200
    assert yaml.safe_load(document)["runcmd"][-1] == ["systemctl", "start", "--no-block", UNIT_NAME]


def test_location_must_match_the_pool() -> None:
    with pytest.raises(ValueError, match="does not match pool web's provider 'aws'"):
        render_user_data(pool(), EXAMPLE.github, GCP_LOCATION)
    with pytest.raises(ValueError, match="lacks lifecycle_hook"):
        render_user_data(pool(), EXAMPLE.github, {k: v for k, v in AWS_LOCATION.items() if k != "lifecycle_hook"})


# --- the agent bundle -------------------------------------------------------------


def _normalized(tree: ast.Module) -> str:
    """The AST without docstrings, annotations inside functions, `if TYPE_CHECKING:` blocks and the
    `__future__` import: what minify() may drop."""
    tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and isinstance(n.test, ast.Name)
                                              and n.test.id == "TYPE_CHECKING")
                 and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    for function in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        for parent in ast.walk(function):
            for name, value in ast.iter_fields(parent):
                if isinstance(value, list):
                    setattr(parent, name, [ast.Assign(targets=[v.target], value=v.value, lineno=0)
                                           if isinstance(v, ast.AnnAssign) and v.value is not None else v
                                           for v in value])
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                        node.args.kwarg]:
                if arg is not None:
                    arg.annotation = None
    return ast.dump(tree)


@pytest.mark.parametrize("module", sorted(p.name for p in AGENT_DIR.glob("*.py")))
def test_minify_changes_no_code(module: str) -> None:
    source = (AGENT_DIR / module).read_text()
    small = minify(source)
    assert "#" not in "".join(line.split('"')[0].split("'")[0] for line in small.splitlines())  # no comments left
    assert _normalized(ast.parse(source)) == _normalized(ast.parse(small))


def test_the_bundle_carries_only_the_pools_cloud() -> None:
    aws, gcp = agent_source("aws"), agent_source("gcp")
    assert "'aws':" in aws and "'gcp':" not in aws
    assert "'gcp':" in gcp and "'aws':" not in gcp
    agent = files(render_user_data(pool(), EXAMPLE.github, AWS_LOCATION))[AGENT_PATH]
    payload = re.search(r'b85decode\("([^"]+)"\)', agent["content"])
    assert payload is not None and "permissions" not in agent  # 0644
    assert lzma.decompress(__import__("base64").b85decode(payload[1])).decode() == aws


def test_nothing_secret_shaped_is_in_the_user_data() -> None:
    for _, document in example_documents():
        assert not re.search(r"gh[pousr]_|github_pat_|PRIVATE KEY|\"token\"", document)


def test_libyaml_emitter_matches_the_pure_python_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast C emitter is only a speed-up: both give the same bytes."""
    import bootstrap.cloud_config as cloud_config

    fast = [text for _, text in example_documents()]

    class PureDumper(yaml.SafeDumper):
        pass

    PureDumper.add_representer(str, cloud_config._str)
    monkeypatch.setattr(cloud_config, "_Dumper", PureDumper)
    assert [text for _, text in example_documents()] == fast
    assert hasattr(yaml, "CSafeDumper"), "libyaml is expected in the venv (PyYAML wheels ship it)"


# --- the AWS loader ---------------------------------------------------------------


def test_a_fetched_agent_is_loaded_before_the_agent_starts() -> None:
    written = files(rendered(pool()))
    unit = written[f"/etc/systemd/system/{UNIT_NAME}"]["content"]
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line)
    assert settings["ExecStartPre"] == f"/usr/bin/python3 -I {LOADER_PATH}"
    assert settings["ExecStart"] == f"/usr/bin/python3 -I {AGENT_PATH}"
    # The loader's own deadline (bootstrap/loader.py) fits in the start timeout; systemd's default is 90 s.
    import bootstrap.loader as loader

    assert int(settings["TimeoutStartSec"]) >= loader.DEADLINE_SECONDS + 3 * 5 + 70  # + a last IMDS and curl
    assert settings["Restart"] == "on-failure"
    loader_text = written[LOADER_PATH]["content"]
    assert "permissions" not in written[LOADER_PATH]  # root's 0644: nothing secret in it
    assert json.dumps(aws_agent().sha256) in loader_text and agent_key("aws") in loader_text
    assert "ExecStartPre" not in rendered(pool("gcp")), "GCP keeps the agent inline"


def test_minify_changes_no_loader_code() -> None:
    source = (AGENT_DIR.parent / "loader.py").read_text()
    assert _normalized(ast.parse(source)) == _normalized(ast.parse(minify(source)))
