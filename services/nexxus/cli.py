"""The `nexxus` command.

nexxus dev [--data-dir DIR] [--config FILE] [--set key=value ...]
    the whole mesh on one machine: real nats-server, Valkey and Envoy from
    their wheels on free ports, SQLite, and the four services
nexxus serve api|writer|router|transport|all ... [--config FILE] [--set key=value ...]
    services in this process, against configured NATS, Redis and database
nexxus config [--config FILE] [--set key=value ...]
    print the effective configuration (secrets redacted)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from nexxus.core.config.loader import load_settings
from nexxus.core.config.settings import Settings


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="a JSON, TOML or YAML file (default: $NEXXUS_CONFIG)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set database.adapter=postgres (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nexxus", description="Nexxus real-time sync backend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run services in this process")
    serve.add_argument(
        "services",
        nargs="+",
        help="api, writer, router, transport, all, or a custom worker (entry point group nexxus.workers)",
    )
    _common(serve)
    dev = sub.add_parser("dev", help="run the whole mesh locally (NATS, Valkey, Envoy and the services)")
    dev.add_argument("--data-dir", default=None, help="where data lives (default .nexxus)")
    dev.add_argument("--no-envoy", action="store_true", help="do not start Envoy")
    _common(dev)
    config = sub.add_parser("config", help="print the effective configuration")
    _common(config)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_file=args.config, overrides=args.set)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from nexxus.core.config.errors import ConfigError
    from nexxus.core.logging import configure_logging

    try:
        settings = _settings(args)
    except ConfigError as exc:
        print(f"nexxus: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.logging)
    if args.command == "config":
        from nexxus.core.config.dump import settings_to_dict

        print(json.dumps(settings_to_dict(settings), indent=2))
        return 0
    if args.command == "serve":
        from nexxus.runtime import SERVICES, serve

        services = list(SERVICES) if "all" in args.services else args.services
        try:
            return run_loop(serve(settings, services))
        except ValueError as exc:
            print(f"nexxus: {exc}", file=sys.stderr)
            return 2
    from nexxus.devserver.dev import run_dev

    if args.data_dir:
        settings.data_dir = args.data_dir
    return asyncio.run(run_dev(settings, envoy=not args.no_envoy))


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """Run a service's main coroutine on uvloop when it is installed (a faster
    event loop: less CPU per socket read and write), else on asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


if __name__ == "__main__":
    raise SystemExit(main())
