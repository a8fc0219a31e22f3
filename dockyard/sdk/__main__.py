"""`python -m dockyard.sdk`: serve a plugin class, or check a running plugin.

    python -m dockyard.sdk run plugins/authz_policy.py:PolicyPlugin --name policy
    python -m dockyard.sdk run mypackage.plugin:MyVolumes --socket /run/docker/plugins/v.sock
    python -m dockyard.sdk run mod:Net mod:Ipam --name mynet        (one socket, two kinds)
    python -m dockyard.sdk check /run/docker/plugins/policy.sock

A target is `MODULE:CLASS` or `FILE.py:CLASS`; the class is instantiated with
no arguments (plugins take their settings from environment variables, which
managed plugins get from their config.json `Env`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import os
import sys
from typing import Any

from dockyard.sdk.base import Plugin
from dockyard.sdk.server import DEFAULT_SOCKET_DIR, run


def load(target: str) -> Plugin:
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise SystemExit(f"target {target!r} must be MODULE:CLASS or FILE.py:CLASS")
    if module_name.endswith(".py") or os.sep in module_name:
        spec = importlib.util.spec_from_file_location(
            os.path.splitext(os.path.basename(module_name))[0], module_name
        )
        if spec is None or spec.loader is None:
            raise SystemExit(f"cannot load {module_name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    factory: Any = getattr(module, attr)
    plugin = factory()
    if not isinstance(plugin, Plugin):
        raise SystemExit(f"{target} is not a dockyard.sdk plugin class")
    return plugin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m dockyard.sdk",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("run", help="serve plugin classes")
    serve_cmd.add_argument("targets", nargs="+", help="MODULE:CLASS or FILE.py:CLASS")
    serve_cmd.add_argument("--name", default="", help="plugin name (socket NAME.sock)")
    serve_cmd.add_argument("--socket", help="socket path (default SOCKET_DIR/NAME.sock)")
    serve_cmd.add_argument("--socket-dir", default=DEFAULT_SOCKET_DIR)
    serve_cmd.add_argument("--tcp", help="listen on HOST:PORT instead of a socket")
    serve_cmd.add_argument("--spec-dir", help="with --tcp: write NAME.spec here")
    check_cmd = commands.add_parser("check", help="run the conformance checker")
    check_cmd.add_argument("address", help="socket path, unix://, tcp:// or a .spec/.json file")
    check_cmd.add_argument(
        "-o",
        "--opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="driver option for the volumes the check creates (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        from dockyard.cli.plugins import check_local

        options = {}
        for item in args.opt:
            key, sep, value = item.partition("=")
            if not sep or not key:
                parser.error(f"invalid option {item!r}: expected KEY=VALUE")
            options[key] = value
        report = asyncio.run(check_local(args.address, options=options))
        print(report.render())
        sys.exit(0 if report.ok else 1)
    plugins = [load(t) for t in args.targets]
    if not args.socket and not args.name and not args.tcp:
        parser.error("give --name or --socket")
    run(
        plugins,
        args.name,
        socket=args.socket,
        socket_dir=args.socket_dir,
        tcp=args.tcp,
        spec_dir=args.spec_dir,
    )


if __name__ == "__main__":
    main()
