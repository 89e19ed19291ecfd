"""Replacement audit: would a real engine apply a runners.yaml edit in one `pulumi up`?

Mocks record a graph; a real engine diffs it against the last one. An input the
provider marks ForceNew replaces the resource, **create-before-delete**: the
new one is created while the old one still exists and is deleted at the end of
the update. A resource with a fixed physical name (or any other thing it holds
exclusively: a subnet's CIDR in its VPC, the Elastic IP of a NAT gateway) then
collides with itself -- 409 / AlreadyExists -- unless the name changes with
what forces the replacement. The same holds when a resource moves to a new URN
(renamed pool) and the old URN is deleted after the new one is created.

The audit compares two recordings of the real program -- before and after one
edit -- and reports every such collision. It is cloud-neutral; a cloud plugs in
a table of `Rule`s (one per resource type its program registers, ForceNew
inputs cited from the provider's schema source) and a list of `Mutation`s (one
or more per runners.yaml field).

API
---
`Rule(type, source, force_new=(), names=(), claims=(), scope=..., delete_first="")`
    `force_new`: top-level wire (camelCase) input names the provider marks
    ForceNew; `source` cites where (repository and path). `names`: inputs that
    together are the resource's physical name, unique within `scope(record)`
    (for example the provider, i.e. the region); empty means the name is
    generated (Pulumi autonaming or the cloud's id), and the audit then fails if
    the program passes a `name` anyway. `claims`: inputs whose values the
    resource holds exclusively while it exists, each a tuple of inputs held
    together (a subnet holds its CIDR within its VPC); checked like names. `scope`:
    where names and claims must be unique (default: the resource's provider).
    `delete_first`: only for a resource that may be replaced delete-before-create
    without losing capacity -- why; the program must then set
    `delete_before_replace` on it. `fold_case`: names compare case-insensitively.
    Resource options are honoured too:
    `replace_on_changes`, `replacement_trigger` and a change of provider
    (another region or project) also replace.

`Mutation(field, change, why="")`
    `field` is a dotted runners.yaml path of a pool ("network.cidr") or of the
    file ("github.url"); `change(pool_dict) -> pool_dict | None` edits one pool
    as loaded from YAML (None: not applicable to this pool). File fields get
    the whole document instead.

`audit(before, after, rules) -> list[str]`
    Findings for applying `after` over a stack built from `before`: a type with
    no rule, a generated name passed explicitly, a replaced or re-created
    resource whose name or claim stays the same, a delete-first replacement
    without a reason, two resources with one name. Values that come from a
    replaced resource (its id, ARN, generated name) count as new, as they are
    on a real cloud, although the mocks repeat them.

`mutate(text, mutation) -> str | None` applies a mutation to the first pool it
fits; `uncovered(fields, mutations)` lists fields without a mutation;
`pool_fields(model)` lists a pool model's fields (nested models dotted), so a
new runners.yaml field without a mutation fails the cloud's test.

`snapshot(recording)` / `load_snapshot(document)` turn a recording into JSON
and back, so the graph an earlier release built can be kept as a fixture and
audited against the current program (an upgrade is an update too);
`record_program(checkout, runners_text)` records an old checkout's program
under today's recording engine, in a subprocess so its modules stay its own.

A cloud's test (tests/aws/test_replacement_audit.py is the first):

    RULES = {rule.type: rule for rule in [...]}
    MUTATIONS = [Mutation("size.max", lambda p: {**p, "size": {...}}), ...]

    def test_every_field_is_mutated(): assert not uncovered(pool_fields(AwsPool), MUTATIONS)

    @pytest.mark.parametrize("mutation", MUTATIONS, ids=...)
    def test_one_up_applies(tmp_path, mutation):
        before = run_file(...BASE...); after = run_file(...mutate(BASE, mutation)...)
        assert audit(before, after, RULES) == []
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from plan.engine import Recorded, Recording

Scope = Callable[[Recorded], tuple[Any, ...]]


def by_provider(record: Recorded) -> tuple[Any, ...]:
    """Unique per provider instance: a region (AWS) or project and region (GCP)."""
    return (_provider_urn(record.provider),)


def global_scope(record: Recorded) -> tuple[Any, ...]:
    """Unique per account or organization, whatever the region (IAM, GitHub)."""
    return ()


@dataclass(frozen=True)
class Rule:
    type: str
    source: str  # repository + path of the provider schema the ForceNew list comes from
    force_new: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    claims: tuple[tuple[str, ...], ...] = ()  # each a set of inputs held together
    scope: Scope = by_provider
    delete_first: str = ""  # why a delete-before-create replacement loses no capacity
    fold_case: bool = False  # names compare case-insensitively (GitHub)


@dataclass(frozen=True)
class Mutation:
    field: str
    change: Callable[[dict[str, Any]], dict[str, Any] | None]
    why: str = ""  # what the edit exercises, when not obvious

    @property
    def id(self) -> str:
        return f"{self.field}{'-' + self.why if self.why else ''}"


@dataclass
class _Pair:
    old: Recorded | None
    new: Recorded | None


# --- the audit ------------------------------------------------------------------------


def audit(before: Recording, after: Recording, rules: Mapping[str, Rule]) -> list[str]:
    findings: list[str] = []
    olds = {r.urn: r for r in _audited(before)}
    news = list(_audited(after))
    for record in news:
        rule = rules.get(record.type)
        if rule is None:
            findings.append(f"{record.type} ({record.name}): no rule -- list its ForceNew inputs and its names")
            continue
        if not rule.names and "name" in record.inputs:
            findings.append(
                f"{record.type} {record.name}: the rule says its name is generated, but the program sets one"
            )
        if record.delete_before_replace and not rule.delete_first:
            findings.append(
                f"{record.type} {record.name}: delete_before_replace without a reason that capacity is kept"
            )
    if findings:
        return findings

    pairs = _pair(olds, news)
    replaced, fresh = _replacements(pairs, rules)
    findings += _unique_within(after, rules)
    held = {  # what stays claimed until the end of the update: every old resource
        key: pair.old
        for pair in pairs
        if pair.old is not None
        for key in _identities(pair.old, rules[pair.old.type], frozenset())
    }
    for pair in pairs:
        new = pair.new
        if new is None:
            continue
        rule = rules[new.type]
        if pair.old is not None and new.urn not in replaced:
            continue  # updated in place (or unchanged): keeps its name
        if pair.old is not None and new.delete_before_replace:
            continue  # delete first: the old name is free again (rule.delete_first says why that is safe)
        for key in _identities(new, rule, fresh):
            owner = held.get(key)
            if owner is not None:
                how = "is replaced" if pair.old is not None else "is created"
                findings.append(
                    f"{new.type} {new.name} {how} create-before-delete while {owner.name} still holds "
                    f"{_describe(key)}: the cloud refuses the duplicate ({rule.source})"
                )
    return findings


def replaced_resources(before: Recording, after: Recording, rules: Mapping[str, Rule]) -> list[str]:
    """Names of the resources a real engine would replace (for reports and tests)."""
    pairs = _pair({r.urn: r for r in _audited(before)}, list(_audited(after)))
    replaced, _ = _replacements(pairs, rules)
    return sorted(p.new.name for p in pairs if p.new is not None and p.new.urn in replaced)


def _audited(recording: Recording) -> Iterator[Recorded]:
    return (r for r in recording.resources if r.custom and not r.type.startswith("pulumi:providers:"))


def _pair(olds: dict[str, Recorded], news: list[Recorded]) -> list[_Pair]:
    pairs, matched = [], set()
    for new in news:
        old = next((olds[u] for u in (new.urn, *new.aliases) if u in olds and u not in matched), None)
        if old is not None:
            matched.add(old.urn)
        pairs.append(_Pair(old, new))
    pairs += [_Pair(old, None) for urn, old in olds.items() if urn not in matched]
    return pairs


def _replacements(pairs: list[_Pair], rules: Mapping[str, Rule]) -> tuple[set[str], frozenset[str]]:
    """URNs replaced, and every value that is new on a real cloud (ids, ARNs and
    generated names of replaced or created resources), to a fixed point: a
    replaced VPC gets a new id, which replaces its subnets, and so on."""
    replaced: set[str] = set()
    created = [p.new for p in pairs if p.old is None and p.new is not None]
    while True:
        fresh = frozenset(
            v
            for r in [*created, *(p.new for p in pairs if p.new and p.new.urn in replaced)]
            for v in _generated(r, rules)
        )
        grown = False
        for pair in pairs:
            old, new = pair.old, pair.new
            if old is None or new is None or new.urn in replaced:
                continue
            rule = rules[new.type]
            watched = {*rule.force_new, *new.replace_on_changes}
            if (
                _provider_urn(old.provider) != _provider_urn(new.provider)
                or any(_differs(old.inputs.get(k), new.inputs.get(k), fresh) for k in watched)
                or _differs(old.replacement_trigger, new.replacement_trigger, fresh)
            ):
                replaced.add(new.urn)
                grown = True
        if not grown:
            return replaced, fresh


def _generated(record: Recorded, rules: Mapping[str, Rule]) -> Iterator[str]:
    """Values a replacement makes new: the ARN always (AWS puts a unique id in some);
    the id and generated name only when the program does not choose the name (a
    named resource's id is its name, which stays when the name does)."""
    arn = record.outputs.get("arn")
    if isinstance(arn, str) and arn:
        yield arn
    if not rules[record.type].names:
        yield from (v for v in (record.id, record.outputs.get("name")) if isinstance(v, str) and v)


def _differs(old: Any, new: Any, fresh: frozenset[str]) -> bool:
    return old != new or any(leaf in fresh for leaf in _leaves(new))


def _identities(record: Recorded, rule: Rule, fresh: frozenset[str]) -> list[tuple[Any, ...]]:
    """(type, what, scope..., value...) for its name and each claim; a value taken
    from a replaced or created resource is new, so it gets a unique marker."""
    found = []
    for what, keys in (("name", rule.names), *((f"claim {'+'.join(c)}", c) for c in rule.claims)):
        if not keys:
            continue
        values = tuple(_canonical(record.inputs.get(k)) for k in keys)
        if rule.fold_case:
            values = tuple(v.lower() for v in values)
        if any(leaf in fresh for value in values for leaf in _leaves(json.loads(value))):
            continue  # built from a new resource's id: cannot equal anything that exists
        found.append((record.type, what, *rule.scope(record), *values))
    return found


def _unique_within(recording: Recording, rules: Mapping[str, Rule]) -> list[str]:
    seen: dict[tuple[Any, ...], str] = {}
    findings = []
    for record in _audited(recording):
        for key in _identities(record, rules[record.type], frozenset()):
            if key in seen:
                findings.append(f"{record.type} {record.name} and {seen[key]} both hold {_describe(key)}")
            seen[key] = record.name
    return findings


def _describe(key: tuple[Any, ...]) -> str:
    return f"{key[1]} {', '.join(str(v) for v in key[2:])}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _provider_urn(reference: str) -> str:
    """`<provider urn>::<provider id>` -> the provider's URN (which names its region)."""
    return reference.rsplit("::", 1)[0] if reference else ""


# --- mutations and coverage --------------------------------------------------------------


def mutate(text: str, mutation: Mutation) -> str | None:
    """The runners.yaml text with `mutation` applied to the first pool it fits (or to
    the file, for `github.*` fields); None when it fits nothing here."""
    document = yaml.safe_load(text)
    if mutation.field.startswith("github."):
        changed = mutation.change(document)
        return None if changed is None else yaml.safe_dump(changed, sort_keys=False)
    for i, pool in enumerate(document["pools"]):
        edited = mutation.change(dict(pool))
        if edited is not None:
            if edited == pool:
                raise AssertionError(f"mutation {mutation.id} changed nothing in pool {pool['name']}")
            document["pools"][i] = edited
            return yaml.safe_dump(document, sort_keys=False)
    return None


def pool_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every field of a pool model; nested models (size, disk, network, runner_group)
    contribute their own fields, dotted."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = [t for t in _types_of(info.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
        if nested:
            for sub in nested:
                found |= pool_fields(sub, f"{path}.")
        else:
            found.add(path)
    return found


def uncovered(fields: Iterable[str], mutations: Iterable[Mutation]) -> list[str]:
    covered = {m.field for m in mutations}
    return sorted(set(fields) - covered)


def _types_of(annotation: Any) -> Iterator[Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        for arg in typing.get_args(annotation):
            yield from _types_of(arg)
    elif origin is None:
        yield annotation


# --- snapshots of a graph ------------------------------------------------------------------

_LONG = 512  # user data and other blobs: kept as a digest, the audit never reads them


def snapshot(recording: Recording) -> dict[str, Any]:
    """The recording as JSON, blobs reduced to their digest, in a stable order (for fixtures)."""
    resources = []
    for record in sorted(recording.resources, key=lambda r: r.urn):
        entry = asdict(record)
        entry["dependencies"] = sorted(entry["dependencies"])
        entry["inputs"] = _shrunk(entry["inputs"])
        entry["shown"] = {}
        entry["outputs"] = {k: v for k, v in entry["outputs"].items() if k in ("arn", "name", "id")}
        entry["component_outputs"] = {}
        resources.append(entry)
    return {"resources": resources}


def record_program(checkout: Path, runners_text: str, *, local_zone: bool = False) -> dict[str, Any]:
    """The snapshot of another checkout's program (an earlier release) for
    `runners_text`, run by this checkout's engine and mocks with stack `dev`."""
    engine_file = Path(__file__).resolve().parents[2] / "plan" / "engine.py"
    script = f"""
import dataclasses, importlib.util, json, sys
spec = importlib.util.spec_from_file_location("audit_engine", {str(engine_file)!r})
engine = importlib.util.module_from_spec(spec)
sys.modules["audit_engine"] = engine
spec.loader.exec_module(engine)
config = {{"aws:region": "eu-central-1", "gh-runners:runnersFile": sys.argv[1], "gh-runners:githubToken": "t"}}
recording = engine.run_project(engine.Path({str(checkout)!r}), stack="dev", config=config,
    secret_keys=["gh-runners:githubToken"], mocks=engine.CloudMocks(local_zone={local_zone!r}))
print(json.dumps([dataclasses.asdict(r) for r in recording.resources]))
"""
    with tempfile.TemporaryDirectory() as tmp:
        runners = Path(tmp) / "runners.yaml"
        runners.write_text(runners_text)
        result = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", script, str(runners)],
            cwd=checkout,
            env={"PYTHONPATH": str(checkout), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    records = [Recorded(**entry) for entry in json.loads(result.stdout.splitlines()[-1])]
    return snapshot(Recording(records, {}, {}))


def load_snapshot(document: Mapping[str, Any]) -> Recording:
    known = set(Recorded.__dataclass_fields__)
    records = [Recorded(**{k: v for k, v in entry.items() if k in known}) for entry in document["resources"]]
    return Recording(records, {}, {})


def _shrunk(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _LONG:
        return "sha256:" + hashlib.sha256(value.encode()).hexdigest()
    if isinstance(value, dict):
        return {k: _shrunk(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shrunk(v) for v in value]
    return value


__all__ = [
    "Mutation",
    "Rule",
    "audit",
    "by_provider",
    "global_scope",
    "load_snapshot",
    "mutate",
    "pool_fields",
    "record_program",
    "replaced_resources",
    "snapshot",
    "uncovered",
]
