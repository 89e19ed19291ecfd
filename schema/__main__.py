"""`python -m schema validate [FILE ...]` and `python -m schema jsonschema`.

Exit 0 when every file is valid, 1 when any is not (every problem printed as
FILE:LINE:COL: path: message on stderr), 2 for bad usage. Never imports Pulumi.
"""

from __future__ import annotations

import argparse
import json
import sys

from schema.jsonschema import runners_json_schema
from schema.loader import LoadError, load_file
from schema.summary import pool_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schema", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check runners.yaml files")
    validate.add_argument("files", nargs="*", default=["runners.yaml"], metavar="FILE")
    validate.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    show = commands.add_parser("show", help="print the validated pools as a table")
    show.add_argument("file", nargs="?", default="runners.yaml", metavar="FILE")
    commands.add_parser("jsonschema", help="print the JSON Schema of runners.yaml")
    args = parser.parse_args(argv)

    if args.command == "jsonschema":
        print(json.dumps(runners_json_schema(), indent=2, sort_keys=True))
        return 0
    if args.command == "show":
        try:
            runners = load_file(args.file)
        except LoadError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(pool_table(runners))
        return 0

    failed = False
    for file in args.files:
        try:
            runners = load_file(file)
        except LoadError as exc:
            print(exc, file=sys.stderr)
            failed = True
            continue
        if not args.quiet:
            print(f"{file}: ok ({len(runners.pools)} pools)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
