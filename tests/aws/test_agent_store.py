"""The AWS agent out of the user data: one private bucket per region, the bundle keyed by its digest."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest
from parliament import analyze_policy_string

from bootstrap.cloud_config import AGENT_PATH, LOADER_PATH, agent_bytes
from providers.aws import agent_store
from tests.aws.test_aws import plan, policy_of, user_data_of
from tests.aws.test_replacement_audit import RULES
from tests.providers.replacement_audit import audit, replaced_resources

POOLS = "  - {name: a, provider: aws}\n  - {name: b, provider: aws}\n  - {name: c, provider: aws, region: us-west-2}\n"
STORE = "agents-eu-central-1"


def test_one_private_bucket_per_region_holds_the_agent_by_its_digest(tmp_path: Path) -> None:
    recording = plan(tmp_path, POOLS)
    buckets = recording.of_type("aws:s3/bucket:Bucket")
    assert sorted(b.name for b in buckets) == [STORE, "agents-us-west-2"]
    bucket = recording.named(STORE)
    assert "bucket" not in bucket.inputs, "auto-named: no fixed name to collide with"
    assert bucket.inputs["forceDestroy"] is True, "destroy empties it"
    name = bucket.outputs["bucket"]
    block = recording.named(f"{STORE}-private").inputs
    assert block["bucket"] == name
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    ownership = recording.named(f"{STORE}-ownership").inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    (deny,) = json.loads(recording.named(f"{STORE}-tls-only").inputs["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]

    # One bucket setting after the other (S3: 409 OperationAborted on concurrent ones), the object last.
    chain = [f"{STORE}-private", f"{STORE}-ownership", f"{STORE}-tls-only", f"{STORE}-aws"]
    for first, then in itertools.pairwise(chain):
        assert recording.named(first).urn in recording.named(then).dependencies, (first, then)
    agent = recording.named(f"{STORE}-aws").inputs
    digest = hashlib.sha256(agent["content"].encode()).hexdigest()
    assert agent["content"].encode() == agent_bytes("aws")
    assert agent["bucket"] == name and agent["key"] == f"agent/{digest}.py"


def test_the_user_data_carries_a_pinned_loader_and_waits_for_the_object(tmp_path: Path) -> None:
    recording = plan(tmp_path, POOLS)
    name = recording.named(STORE).outputs["bucket"]
    agent = recording.named(f"{STORE}-aws")
    files = {f["path"]: f["content"] for f in user_data_of(recording, "a")["write_files"]}
    assert AGENT_PATH not in files, "the agent no longer rides in the user data"
    digest = hashlib.sha256(agent_bytes("aws")).hexdigest()
    loader = files[LOADER_PATH]
    assert f'"bucket": "{name}"' in loader and f'"sha256": "{digest}"' in loader
    assert '"region": "eu-central-1"' in loader
    unit = next(text for path, text in files.items() if path.endswith(".service"))
    assert f"ExecStartPre=/usr/bin/python3 -I {LOADER_PATH}\n" in unit
    # The launch template's user data is built from the object: the engine uploads it first.
    assert agent.urn in recording.named("a-template").dependencies
    # us-west-2 pools fetch from their own region's bucket.
    west = {f["path"]: f["content"] for f in user_data_of(recording, "c")["write_files"]}[LOADER_PATH]
    assert recording.named("agents-us-west-2").outputs["bucket"] in west and '"region": "us-west-2"' in west


def test_the_role_may_read_the_agent_objects_and_nothing_else_of_the_bucket(tmp_path: Path) -> None:
    recording = plan(tmp_path, POOLS)
    name = recording.named(STORE).outputs["bucket"]
    policy = policy_of(recording, "a")
    s3 = [s for s in policy["Statement"] if any(a.startswith("s3:") for a in s["Action"])]
    assert s3 == [{"Sid": "FetchTheAgent", "Effect": "Allow", "Action": ["s3:GetObject"],
                   "Resource": [f"arn:aws:s3:::{name}/agent/*"]}]
    assert analyze_policy_string(json.dumps(policy)).findings == []
    west = recording.named("agents-us-west-2").outputs["bucket"]
    assert [s["Resource"] for s in policy_of(recording, "c")["Statement"] if s["Sid"] == "FetchTheAgent"] == [
        [f"arn:aws:s3:::{west}/agent/*"]
    ]


def test_a_new_agent_is_a_new_object_before_the_templates_move_and_nothing_collides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "before").mkdir()
    (tmp_path / "after").mkdir()
    before = plan(tmp_path / "before", POOLS)
    changed = agent_bytes("aws") + b"# a newer agent\n"
    monkeypatch.setattr(agent_store, "agent_bytes", lambda cloud: changed)
    monkeypatch.setattr(agent_store, "agent_key",
                        lambda cloud: f"agent/{hashlib.sha256(changed).hexdigest()}.py")
    after = plan(tmp_path / "after", POOLS)
    assert audit(before, after, RULES) == []
    replaced = replaced_resources(before, after, RULES)
    assert {f"{STORE}-aws", "agents-us-west-2-aws"} <= set(replaced)
    assert not [n for n in replaced if n.endswith(("-asg", "-template")) or (n.startswith("agents-") and
                not n.endswith("-aws"))], replaced
    old = before.named("a-template").inputs["userData"]
    assert after.named("a-template").inputs["userData"] != old, "a new template version: an instance refresh"

