"""What the benchmark subprocesses run: `python -m bench.child MODE ...`, one JSON line on stdout.

Modes:
  real FILE [DUMP]   the project's __main__.py on FILE under the recording engine (optionally dump the recording)
  real-memo FILE     the same with bootstrap.cloud_config.agent_file memoized (the suggested fix, simulated)
  floor DUMP         the floor program: re-register a dumped recording through pulumi.CustomResource directly
  profile FILE [WARM]  the real program under cProfile (after an unprofiled run on WARM): where its time goes
  render FILE        render_user_data per pool: as is, agent_file memoized, + libyaml emitter
  import-cost SDK[:SUB,SUB] ...   time `import SDK` and the first use of each subpackage, in a fresh process
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before any other import: the child's own clock starts here

import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bench.common import PLAN_CONFIG, RESULT_MARK, ROOT, SECRET_KEYS  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _report(result: dict[str, Any]) -> None:
    print(RESULT_MARK + json.dumps(result), flush=True)


def _watch_first_resource(marks: dict[str, float]) -> None:
    """Note when the engine sees the first resource (the time to first resource)."""
    from plan import engine

    original = engine.RecordingMonitor.RegisterResource

    def register(self: engine.RecordingMonitor, request: Any) -> Any:
        if "first_resource" not in marks and request.type != "pulumi:pulumi:Stack":
            marks["first_resource"] = time.perf_counter() - STARTED
        return original(self, request)

    engine.RecordingMonitor.RegisterResource = register  # type: ignore[method-assign]


SDKS = ("pulumi_aws", "pulumi_gcp", "pulumi_github")


def _is_lazy(module: Any) -> bool:
    """A lazily imported module not executed yet (pulumi._utils._LazyModule or importlib's); `type()` never loads it."""
    return type(module).__name__ == "_LazyModule"


def sdk_modules() -> dict[str, dict[str, Any]]:
    """Per provider SDK: modules really executed, lazy placeholders never touched, subpackages used.

    The SDKs register every subpackage with a lazy loader: it sits in
    sys.modules as a `_LazyModule` until its first attribute access.
    """
    found: dict[str, dict[str, Any]] = {}
    for sdk in SDKS:
        names = [name for name in sys.modules if name == sdk or name.startswith(sdk + ".")]
        if not names:
            continue
        lazy = [n for n in names if _is_lazy(sys.modules[n])]
        loaded = [n for n in names if n not in lazy]
        subpackages = sorted(
            n.split(".")[1]
            for n in loaded
            if n.count(".") == 1 and not n.split(".")[1].startswith("_")
            and "__path__" in types.ModuleType.__getattribute__(sys.modules[n], "__dict__")
        )
        found[sdk] = {"loaded": len(loaded), "lazy": len(lazy), "subpackages": subpackages}
    return found


def real(file: str, dump: str | None) -> None:
    warnings.simplefilter("ignore", DeprecationWarning)  # as plan/__main__.py does
    from plan.engine import run_project

    ready = time.perf_counter() - STARTED
    marks: dict[str, float] = {}
    _watch_first_resource(marks)
    config = {**PLAN_CONFIG, "gh-runners:runnersFile": str(Path(file).resolve())}
    begin = time.perf_counter()
    recording = run_project(ROOT, config=config, secret_keys=SECRET_KEYS, stack="bench")
    evaluation = time.perf_counter() - begin
    peak = _peak_rss_mb()
    total = time.perf_counter() - STARTED
    if dump:
        records = [
            {
                "urn": r.urn,
                "type": r.type,
                "name": r.name,
                "parent": r.parent,
                "custom": r.custom,
                "provider": r.provider,
                "inputs": r.inputs,
                "secret_keys": sorted({path.split(".")[0].split("[")[0] for path in r.secret_paths}),
                "component_outputs": r.component_outputs,
            }
            for r in recording.resources
        ]
        Path(dump).write_text(json.dumps({"resources": records, "stack_outputs": recording.stack_outputs}))
    types: dict[str, int] = {}
    for r in recording.resources:
        types[r.type] = types.get(r.type, 0) + 1
    _report(
        {
            "ready": ready,
            "evaluation": evaluation,
            "total": total,
            "first_resource": marks.get("first_resource"),
            "peak_rss_mb": peak,
            "resources": len(recording.resources),
            "types": types,
            "sdks": sdk_modules(),
        }
    )


def floor(dump: str) -> None:
    """The least any program can do for the same resources under the same engine.

    Same types, names, parents, providers and inputs as the real program
    registered, through `pulumi.CustomResource` / `ProviderResource` /
    `ComponentResource` directly: no schema, no backend dispatch, no user
    data rendering, no provider SDK (so none of its imports either).
    """
    data = json.loads(Path(dump).read_text())
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi

    from plan.engine import run

    ready = time.perf_counter() - STARTED

    def program() -> None:
        made: dict[str, pulumi.Resource] = {}
        for record in data["resources"]:
            props: dict[str, Any] = {
                key: pulumi.Output.secret(value) if key in record["secret_keys"] else value
                for key, value in record["inputs"].items()
            }
            provider_urn = record["provider"].rsplit("::", 1)[0] if record["provider"] else ""
            opts = pulumi.ResourceOptions(
                parent=made.get(record["parent"]),
                provider=made.get(provider_urn),  # type: ignore[arg-type]
            )
            kind: str = record["type"]
            made_resource: pulumi.Resource
            if kind.startswith("pulumi:providers:"):
                made_resource = pulumi.ProviderResource(kind.rsplit(":", 1)[1], record["name"], props, opts)
            elif record["custom"]:
                made_resource = pulumi.CustomResource(kind, record["name"], props, opts)
            else:
                component = pulumi.ComponentResource(kind, record["name"], None, opts)
                component.register_outputs(record["component_outputs"])
                made_resource = component
            made[record["urn"]] = made_resource
        pulumi.export("pools", data["stack_outputs"].get("pools"))

    begin = time.perf_counter()
    recording = run(program, config=PLAN_CONFIG, secret_keys=SECRET_KEYS, stack="bench")
    evaluation = time.perf_counter() - begin
    peak = _peak_rss_mb()
    if len(recording.resources) != len(data["resources"]):
        raise SystemExit(f"floor registered {len(recording.resources)} resources, real {len(data['resources'])}")
    _report(
        {
            "ready": ready,
            "evaluation": evaluation,
            "total": time.perf_counter() - STARTED,
            "peak_rss_mb": peak,
            "resources": len(recording.resources),
        }
    )


def profile(file: str, warm_up: str | None) -> None:
    """cProfile of the program on `file`, after one unprofiled run on `warm_up` (imports, lazy SDK
    subpackages): what is left is the per-pool work."""
    import cProfile
    import pstats

    warnings.simplefilter("ignore", DeprecationWarning)
    from plan.engine import run_project

    if warm_up:
        config = {**PLAN_CONFIG, "gh-runners:runnersFile": str(Path(warm_up).resolve())}
        run_project(ROOT, config=config, secret_keys=SECRET_KEYS, stack="bench")
    config = {**PLAN_CONFIG, "gh-runners:runnersFile": str(Path(file).resolve())}
    profiler = cProfile.Profile()
    profiler.enable()
    run_project(ROOT, config=config, secret_keys=SECRET_KEYS, stack="bench")
    profiler.disable()
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in raw.values())
    ours = []
    for (filename, line, function), (_calls, ncalls, _tottime, cumtime, _callers) in raw.items():
        path = Path(filename)
        if ROOT in path.parents and "venv" not in path.parts and "bench" not in path.parts:
            ours.append({"where": f"{path.relative_to(ROOT)}:{line} {function}", "calls": ncalls, "cumtime": cumtime})
    ours.sort(key=lambda entry: -entry["cumtime"])
    _report({"total": total, "functions": ours[:40]})


def render(file: str) -> None:
    """render_user_data per pool: as is, with agent_file memoized, and with a libyaml emitter on top."""
    import functools

    import yaml

    import bootstrap.cloud_config as cloud_config
    from schema.loader import load_file

    runners = load_file(file)
    required = getattr(cloud_config, "REQUIRED_LOCATION", {})
    locations = {cloud: {key: cloud if key == "cloud" else f"bench-{key}" for key in keys}
                 for cloud, keys in required.items()}

    def per_pool() -> tuple[float, list[str]]:
        begin = time.perf_counter()
        out = [cloud_config.render_user_data(pool, runners.github, locations[pool.provider]) for pool in runners.pools]
        return (time.perf_counter() - begin) / len(runners.pools), out

    result: dict[str, Any] = {"pools": len(runners.pools)}
    result["memoized_in_source"] = hasattr(cloud_config.agent_file, "cache_info")
    result["as_is"], _ = per_pool()
    if not result["memoized_in_source"]:
        vars(cloud_config)["agent_file"] = functools.lru_cache(maxsize=None)(cloud_config.agent_file)
    per_pool()  # fills the cache
    result["memo"], memo_out = per_pool()
    dumper = getattr(cloud_config, "_Dumper", None)
    c_dumper = getattr(yaml, "CSafeDumper", None)
    if dumper is not None and c_dumper is not None and not issubclass(dumper, c_dumper):
        fast: Any = type("BenchCDumper", (c_dumper,), {})
        for kind, represent in dumper.yaml_representers.items():
            fast.add_representer(kind, represent)
        vars(cloud_config)["_Dumper"] = fast
        result["c_emitter"], fast_out = per_pool()
        result["c_emitter_same_bytes"] = fast_out == memo_out
    _report(result)


def import_cost(specs: list[str]) -> None:
    """Fresh process: pulumi first (the engine needs it anyway), then for each `SDK[:SUB,SUB...]` the SDK
    and the first use of each subpackage."""
    import importlib

    warnings.simplefilter("ignore", DeprecationWarning)
    begin = time.perf_counter()
    import pulumi  # noqa: F401

    timings: dict[str, float] = {"pulumi": time.perf_counter() - begin}
    for spec in specs:
        sdk, _, subs = spec.partition(":")
        begin = time.perf_counter()
        module = importlib.import_module(sdk)
        timings[sdk] = time.perf_counter() - begin
        for sub in filter(None, subs.split(",")):
            begin = time.perf_counter()
            # The first ordinary attribute access runs a lazily imported subpackage.
            getattr(getattr(module, sub), "_bench_first_use_", None)
            timings[f"{sdk}.{sub}"] = time.perf_counter() - begin
    _report({"timings": timings, "sdks": sdk_modules()})


def main(argv: list[str]) -> None:
    mode, *args = argv
    if mode == "real":
        real(args[0], args[1] if len(args) > 1 else None)
    elif mode == "real-memo":
        # The suggested fix, simulated: the agent bundle built once per cloud.
        import functools

        import bootstrap.cloud_config as cloud_config

        vars(cloud_config)["agent_file"] = functools.lru_cache(maxsize=None)(cloud_config.agent_file)
        real(args[0], None)
    elif mode == "floor":
        floor(args[0])
    elif mode == "profile":
        profile(args[0], args[1] if len(args) > 1 else None)
    elif mode == "render":
        render(args[0])
    elif mode == "import-cost":
        import_cost(args)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
