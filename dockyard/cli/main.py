"""The `dockyard` command: a thin client of the Engine API with docker's verbs and flags.

Errors print as docker prints them and exit with docker's codes: 125 when the
daemon or the command line refuses, 126/127 when the container's command
cannot run, otherwise the container's own exit code.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from dockyard.cli.client import APIError, Client, TLSOptions


class Context:
    def __init__(self, host: str | None, tls: TLSOptions | None = None) -> None:
        self.host = host
        self.tls = tls
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.host, tls=self.tls)
        return self._client


pass_context = click.make_pass_decorator(Context)


def fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


# Commands load on first use: the command line answers faster when it imports
# only the module of the command it runs.
COMMANDS = {
    **{
        name: "containers"
        for name in (
            "run",
            "create",
            "start",
            "stop",
            "restart",
            "kill",
            "pause",
            "unpause",
            "rm",
            "rename",
            "wait",
            "ps",
            "logs",
            "attach",
            "top",
            "update",
            "inspect",
            "container",
        )
    },
    "exec": "containers:exec_",
    **{name: "images" for name in ("images", "tag", "rmi", "history", "image")},
    "import": "images:import_",
    **{name: "registry" for name in ("pull", "push", "login", "logout")},
    **{name: "images" for name in ("save", "load")},
    **{name: "networks" for name in ("network", "port")},
    **{name: "system" for name in ("info", "version", "events", "system")},
    "daemon": "daemon",
    "volume": "volumes",
    "plugin": "plugins:plugin",
    "build": "build",
    "builder": "build",
    "commit": "commit",
    "diff": "commit",
    **{name: "archive" for name in ("cp", "export")},
    "bootstrap": "bootstrap",
    "stats": "stats",
}


class Group(click.Group):
    """Loads commands lazily and reports errors the way docker does."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(f"dockyard.cli.{module_name}")
        command: click.Command = getattr(module, attr or name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except APIError as e:
            fail(f"Error response from daemon: {e.message}", 1)
        except (ConnectionRefusedError, FileNotFoundError) as e:
            fail(f"Cannot connect to the Dockyard daemon: {e}", 1)
        except BrokenPipeError:
            sys.exit(0)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-H",
    "--host",
    envvar="DOCKYARD_HOST",
    help="Daemon socket: unix:///path or tcp://HOST:PORT.",
)
@click.option("--tls", is_flag=True, help="Use TLS; implied by --tlsverify.")
@click.option(
    "--tlsverify",
    is_flag=True,
    default=None,
    help="Use TLS and verify the daemon (default: set when DOCKER_TLS_VERIFY is).",
)
@click.option("--tlscacert", help="Trust certificates signed only by this CA.")
@click.option("--tlscert", help="Path to the TLS client certificate.")
@click.option("--tlskey", help="Path to the TLS client key.")
@click.version_option(package_name="dockyard", prog_name="dockyard")
@click.pass_context
def cli(
    ctx: click.Context,
    host: str | None,
    tls: bool,
    tlsverify: bool | None,
    tlscacert: str | None,
    tlscert: str | None,
    tlskey: str | None,
) -> None:
    """Dockyard: build, ship and run containers; speaks the Docker Engine API."""
    ctx.obj = Context(host, TLSOptions(tls, tlsverify, tlscacert, tlscert, tlskey))


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.UsageError as e:
        hint = f"\nSee 'dockyard {e.ctx.command_path.split(' ', 1)[-1]} --help'." if e.ctx else ""
        fail(f"dockyard: {e.format_message()}{hint}", 125)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        fail(f"dockyard: {e.format_message()}", 125)
