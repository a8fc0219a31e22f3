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
@click.option("-D", "--debug", is_flag=True, default=None, help="Debug logging.")
def daemon(config_file: str | None, **flags: object) -> None:
    """Run the Dockyard daemon (serves the Docker Engine API)."""
    from dockyard import config
    from dockyard import daemon as server

    server.run(config.load(config_file, flags))
