"""`python -m scaler serve --port N --config FILE`: the receiver on loopback (see scaler/server.py).

`python -m scaler check --config FILE` only reads and checks the document.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from scaler.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scaler", description="gh-runners webhook receiver")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the receiver on 127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    serve.add_argument("--config", type=Path, required=True, help="the receiver's configuration document")
    check = commands.add_parser("check", help="check a configuration document")
    check.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        config = load(args.config.read_text(encoding="utf-8"))
    except (OSError, ConfigError) as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        print(f"{args.config}: {len(config.pools)} pools, {len(config.own_pools)} on {config.cloud}")
        return 0
    # SIGTERM ends the server like Ctrl-C: the tests stop it that way.
    signal.signal(signal.SIGTERM, _interrupt)
    from scaler.server import serve as run

    with contextlib.suppress(KeyboardInterrupt):
        run(config, args.port)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
