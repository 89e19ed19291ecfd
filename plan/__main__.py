"""`python -m plan [FILE] [--json]`: the offline plan of runners.yaml.

Runs the project's real `__main__.py` -- the program `pulumi up` runs -- under
the recording engine with a placeholder credential: no cloud credentials, no
Pulumi CLI, no network. Exit 1 (with FILE:LINE:COL messages) on a bad file.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
PLACEHOLDER_TOKEN = "offline-plan-placeholder-token"
DEFAULT_PLACEHOLDERS = {"aws:region": "us-east-1", "gcp:project": "my-gcp-project", "gcp:region": "us-central1"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plan", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", default="runners.yaml", help="runner pools file (default runners.yaml)")
    parser.add_argument("--json", action="store_true", help="stable machine-readable plan")
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="stack config for the plan, e.g. -c aws:region=eu-west-1 (placeholders otherwise)",
    )
    parser.add_argument("--stack", default="dev", help="stack name the plan pretends to be (default dev)")
    args = parser.parse_args(argv)

    from schema.loader import LoadError, load_file

    try:
        runners = load_file(args.file)  # validate first: the same messages as `python -m schema validate`
    except LoadError as exc:
        print(exc, file=sys.stderr)
        return 1
    placeholders = dict(DEFAULT_PLACEHOLDERS)
    for item in args.config:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--config takes KEY=VALUE, got {item!r}")
        placeholders[key] = value

    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi

    from plan.engine import project_name, run_project
    from plan.render import plan_document, plan_text

    namespace = project_name(PROJECT_DIR)  # the project's own config keys, as `pulumi config set` stores them
    config = {
        **placeholders,
        f"{namespace}:githubToken": PLACEHOLDER_TOKEN,
        f"{namespace}:runnersFile": str(Path(args.file).resolve()),
    }
    try:
        recording = run_project(
            PROJECT_DIR, config=config, secret_keys=[f"{namespace}:githubToken"], stack=args.stack
        )
    except pulumi.RunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = {k: v for k, v in placeholders.items()}
    if args.json:
        print(json.dumps(plan_document(recording, runners, shown), indent=2, sort_keys=True))
    else:
        print(plan_text(recording, runners, shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
