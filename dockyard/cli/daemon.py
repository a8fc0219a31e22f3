"""`dockyard daemon`: flags and config file; the server itself lives in `dockyard.daemon`."""

from __future__ import annotations

import click


@click.command("daemon")
@click.option("-H", "--host", "hosts", multiple=True, help="Socket to listen on (unix:///path).")
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

    server.run(config.load(config_file, flags), reload=lambda: config.load(config_file, flags))
