"""`dockyard daemon`: flags and config file; the server itself lives in `dockyard.daemon`."""

from __future__ import annotations

import click


def _bool_flag(value: str | None) -> bool | None:
    """`--tls`, `--tls=true`, `--tls=false` as Go's flag package reads a boolean."""
    if value is None:
        return None
    lowered = value.lower()
    if lowered in ("1", "t", "true"):
        return True
    if lowered in ("0", "f", "false"):
        return False
    raise click.BadParameter(f"invalid boolean value {value!r}")


@click.command("daemon")
@click.option(
    "-H",
    "--host",
    "hosts",
    multiple=True,
    help="Socket to listen on: unix:///path or tcp://HOST:PORT (repeatable).",
)
@click.option(
    "--tls",
    is_flag=False,
    flag_value="true",
    default=None,
    help="Use TLS on TCP; implied by --tlsverify (--tls=false: plain TCP, unauthenticated).",
)
@click.option(
    "--tlsverify",
    is_flag=False,
    flag_value="true",
    default=None,
    help="Use TLS and require client certificates signed by --tlscacert.",
)
@click.option("--tlscacert", help="Trust client certificates signed only by this CA.")
@click.option("--tlscert", help="The server's TLS certificate.")
@click.option("--tlskey", help="The server's TLS key.")
@click.option("--data-root", help="Root of persistent state (default /var/lib/dockyard).")
@click.option("--exec-root", help="Root of runtime state (default /run/dockyard).")
@click.option("--runtime", "default_runtime", help="Default OCI runtime: crun or runc.")
@click.option("--config-file", help="Daemon configuration (default /etc/dockyard/daemon.json).")
@click.option("--cgroup-parent", help="Parent cgroup of all containers (default dockyard).")
@click.option("--pidfile", help="Write the daemon's pid here.")
@click.option(
    "--authorization-plugin",
    "authorization_plugins",
    multiple=True,
    help="Authorization plugin to load (repeatable; chain order).",
)
@click.option(
    "--plugin-socket-dir",
    "plugin_socket_dirs",
    multiple=True,
    help="Where to look for v1 plugin sockets (default /run/docker/plugins; repeatable).",
)
@click.option(
    "--plugin-spec-dir",
    "plugin_spec_dirs",
    multiple=True,
    help="Where to look for .spec/.json plugin files (default /etc/docker/plugins, "
    "/usr/lib/docker/plugins; repeatable).",
)
@click.option("-D", "--debug", is_flag=True, default=None, help="Debug logging.")
def daemon(config_file: str | None, **flags: object) -> None:
    """Run the Dockyard daemon (serves the Docker Engine API)."""
    from dockyard import config
    from dockyard import daemon as server

    for key in ("tls", "tlsverify"):
        flags[key] = _bool_flag(flags[key])  # type: ignore[arg-type]
    server.run(config.load(config_file, flags), reload=lambda: config.load(config_file, flags))
