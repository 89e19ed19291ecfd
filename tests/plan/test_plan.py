"""`python -m plan`: golden text and JSON plans, warnings, and no secret in any of it.

Regenerate the golden files after an intended change with:
    UPDATE_GOLDEN=1 venv/bin/python -m pytest tests/plan
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from plan.__main__ import PLACEHOLDER_TOKEN, main
from plan.engine import working_directory

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
CASES = {
    "example": ROOT / "runners.yaml",
    "organization": ROOT / "tests" / "schema" / "valid" / "organization-groups.yaml",
}


def run_plan(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), working_directory(ROOT):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"plan changed: review, then UPDATE_GOLDEN=1 ({path})"


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_plan_matches_golden(case: str) -> None:
    code, out, err = run_plan(str(CASES[case].relative_to(ROOT)))
    assert code == 0, err
    check_golden(f"{case}.txt", out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_json_plan_matches_golden_and_is_sorted(case: str) -> None:
    code, out, err = run_plan(str(CASES[case].relative_to(ROOT)), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert out == json.dumps(document, indent=2, sort_keys=True) + "\n"
    check_golden(f"{case}.json", out)


def test_plan_is_stable_across_runs() -> None:
    first = run_plan("runners.yaml", "--json")[1]
    assert first == run_plan("runners.yaml", "--json")[1]


def test_plan_shows_no_secret_value() -> None:
    for args in (("runners.yaml",), ("runners.yaml", "--json")):
        code, out, _ = run_plan(*args)
        assert code == 0
        assert PLACEHOLDER_TOKEN not in out
        assert "[secret]" in out


def test_example_plan_has_every_pool_and_the_reviewer_warnings() -> None:
    document = json.loads(run_plan("runners.yaml", "--json")[1])
    pools = {pool["name"]: pool for pool in document["pools"]}
    assert set(pools) == {"codex", "general"}
    assert any("public repository" in w for w in pools["codex"]["warnings"])
    types = {r["type"] for r in pools["codex"]["resources"]}
    assert {
        "aws:autoscaling/group:Group",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:ssm/parameter:Parameter",
    } <= types
    assert pools["general"]["resources"], "the GCP pool builds resources"


def test_root_equivalent_and_persistent_pools_are_flagged() -> None:
    document = json.loads(run_plan(str(CASES["organization"].relative_to(ROOT)), "--json")[1])
    warnings = {pool["name"]: " ".join(pool["warnings"]) for pool in document["pools"]}
    assert "root-equivalent" in warnings["gpu-free"]
    assert "persistent" in warnings["gpu-free"]
    assert "root-equivalent" not in warnings["build-x64"]


def test_invalid_file_exits_1_with_located_messages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\ngithub: {repository: a/b}\npools:\n  - {name: x, provider: aws, size: {min: 2, max: 1}}\n"
    )
    code, out, err = run_plan(str(bad))
    assert code == 1 and not out
    assert err == f"{bad}:4:30: pools[0].size: min (2) is greater than max (1)\n"


def test_what_only_the_cloud_can_answer_is_said_to_be_unchecked() -> None:
    """Machine type availability per zone needs the cloud's answer: the offline
    plan says, for every pool, that it did not check it."""
    document = json.loads(run_plan("runners.yaml", "--json")[1])
    for pool in document["pools"]:
        assert any("machine types in its zones" in item for item in pool["not_checked_offline"])
    text = run_plan("runners.yaml")[1]
    assert text.count("? not checked offline: whether the cloud offers the pool's machine types") == len(
        document["pools"]
    )


def test_the_plan_shows_demand_scaling() -> None:
    """The receivers, their URLs, the webhooks (events, content type, never the
    secret), the +1 policy, the IAM statements, and what a reviewer must know."""
    document = json.loads(run_plan("runners.yaml", "--json")[1])
    shared = {(r["type"], r["name"]): r for r in document["shared"]}
    function = shared[("aws:lambda/function:Function", "aws-receiver-function")]["properties"]
    assert function["handler"] == "scaler.aws.handler"
    config = function["code"]["scaler.json"]
    assert [pool["name"] for pool in config["pools"]] == ["codex", "general"]
    assert function["code"]["scaler/"] == "the receiver's package (scaler/*.py), as source"
    url = shared[("aws:lambda/functionUrl:FunctionUrl", "aws-receiver-url")]["properties"]
    assert url["authorizationType"] == "NONE"
    policy = shared[("aws:iam/rolePolicy:RolePolicy", "aws-receiver-policy")]["properties"]["policy"]
    assert {s["Sid"] for s in policy["Statement"]} >= {"GrowOwnGroups", "ReadOwnSecrets"}
    for cloud in ("aws", "gcp"):
        hook = shared[("github:index/repositoryWebhook:RepositoryWebhook", f"webhook-{cloud}")]
        assert hook["properties"]["events"] == ["workflow_job"]
        assert hook["properties"]["configuration"]["contentType"] == "json"
        assert hook["properties"]["configuration"]["secret"] == "[secret]"
        assert hook["secrets"] == ["configuration.secret"]
        assert hook["properties"]["configuration"]["url"] == document["outputs"]["receivers"][cloud]
    codex = next(pool for pool in document["pools"] if pool["name"] == "codex")
    (scale_up,) = [r for r in codex["resources"] if r["type"] == "aws:autoscaling/policy:Policy"]
    assert scale_up["properties"]["scalingAdjustment"] == 1
    assert any("signature" in warning for warning in document["shared_warnings"])
    text = run_plan("runners.yaml")[1]
    assert "! AWS receiver: its Lambda function URL is public" in text
    assert "ghrunners:gcp:Receiver  gcp-receiver" in text


def test_the_plan_does_not_change_with_the_receivers_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The golden plans follow runners.yaml, not every edit of scaler/: the code
    archive shows its configuration, and its content digest as a placeholder."""
    import providers.scaling

    before = run_plan("runners.yaml", "--json")[1]
    package = tmp_path / "scaler"
    package.mkdir()
    for name in ("__init__.py", "config.py", "aws.py", "gcp.py", "new_module.py"):
        (package / name).write_text(f"# a different {name}\n")
    monkeypatch.setattr(providers.scaling, "SCALER_PACKAGE", package)
    after = run_plan("runners.yaml", "--json")[1]
    assert after == before
    assert "receiver-<content digest>.zip" in after
