"""`dockyard daemon`: the engine serving the Docker Engine API on unix sockets and TCP.

On SIGTERM/SIGINT the daemon stops serving and exits; containers keep running
under their monitors and are adopted by the next daemon (live restore). On
SIGHUP it reads its configuration again and applies what can change live: the
authorization plugin chain; a `daemon reload` event says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import ssl
import stat
import sys
from collections.abc import Callable

from aiohttp import web

from dockyard import heap
from dockyard.api.app import create_app
from dockyard.config import DaemonConfig
from dockyard.engine import Engine
from dockyard.errors import DockyardError
from dockyard.listeners import (
    HOSTS_FILE,
    TLSSockSite,
    bind_tcp,
    bound_address,
    check_insecure,
    server_context,
    write_hosts_file,
)

log = logging.getLogger("dockyard")


def _listen(path: str) -> socket.socket:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # a stale socket of a daemon that died
            else:
                raise SystemExit(f"another daemon is already serving {path}")
            finally:
                probe.close()
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o660)
    sock.listen(listen_backlog())
    return sock


def listen_backlog() -> int:
    """The API socket's backlog: as large as the kernel allows (net.core.somaxconn), as Go
    (and so Docker) asks, so a burst of clients is queued rather than refused."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(int(f.read()), 128)
    except (OSError, ValueError):
        return 4096


async def _reload(engine: Engine, reload: Callable[[], DaemonConfig]) -> None:
    try:
        config = reload()
        await engine.authorization.reload(list(config.authorization_plugins))
    except DockyardError as e:
        log.error("configuration not reloaded: %s", e.message)
    else:
        log.info("configuration reloaded: authorization plugins %s", engine.authorization.names)
        engine.events.emit("daemon", "reload", engine.id, _reload_attributes(engine))


def _reload_attributes(engine: Engine) -> dict[str, str]:
    """The `daemon reload` event's attributes, as Docker writes them: the settings in
    force after the reload (lists as JSON) and the host name."""
    live = engine.config
    return {
        "authorization-plugins": json.dumps(list(engine.authorization.names)),
        "debug": str(live.debug).lower(),
        "default-runtime": engine.facts.default_runtime,
        "insecure-registries": json.dumps(live.insecure_registries),
        "labels": "[]",
        "live-restore": "true",
        "max-concurrent-downloads": str(live.max_concurrent_downloads),
        "max-concurrent-uploads": str(live.max_concurrent_uploads),
        "name": socket.gethostname(),
        "registry-mirrors": "[]",
    }


class _Listeners:
    """The bound API sockets, unix and TCP, before and while they are served."""

    def __init__(self, config: DaemonConfig) -> None:
        hosts = config.listen_hosts()
        settings = config.tls_settings()
        check_insecure(hosts, settings)
        # Built before any socket is bound: a bad certificate leaves nothing behind.
        context = server_context(settings) if settings.enabled else None
        self.unix_paths: list[str] = []
        self.bound: list[tuple[socket.socket, ssl.SSLContext | None, str]] = []
        try:
            for host in hosts:
                if host.proto == "unix":
                    self.bound.append((_listen(host.address), None, str(host)))
                    self.unix_paths.append(host.address)
                else:
                    sock = bind_tcp(host, listen_backlog())
                    self.bound.append((sock, context, bound_address(sock)))
        except BaseException:
            self.close()
            raise

    @property
    def addresses(self) -> list[str]:
        return [address for _, _, address in self.bound]

    def sites(self, runner: web.AppRunner) -> list[web.BaseSite]:
        # aiohttp listens on each socket again with its own backlog (128 by default)
        return [
            TLSSockSite(runner, sock, context, listen_backlog())
            if context is not None
            else web.SockSite(runner, sock, backlog=listen_backlog())
            for sock, context, _ in self.bound
        ]

    def close(self) -> None:
        for sock, _, _ in self.bound:
            sock.close()
        for path in self.unix_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


async def serve(config: DaemonConfig, reload: Callable[[], DaemonConfig] | None = None) -> None:
    heap.configure()
    listeners = _Listeners(config)
    engine = Engine(config)
    try:
        await engine.start()
    except BaseException:
        # e.g. a configured authorization plugin is missing: no half-started daemon.
        await engine.close()
        listeners.close()
        raise
    write_hosts_file(config.exec_root, listeners.addresses)
    app = create_app(engine)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    sites = listeners.sites(runner)
    for site in sites:
        await site.start()
    if config.pidfile:
        with open(config.pidfile, "w") as f:
            f.write(str(os.getpid()))
    for address in listeners.addresses:
        log.info("API listen on %s", address)
    log.info(
        "Dockyard serving on %s (runtime %s, cgroups %s)",
        ", ".join(listeners.addresses),
        engine.facts.default_runtime,
        engine.facts.cgroups.mode,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()
    trimming = loop.create_task(heap.keep_trimmed())
    if reload is not None:

        def on_hup() -> None:
            task = loop.create_task(_reload(engine, reload))
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        trimming.cancel()
        for task in reloads:
            task.cancel()
        for site in sites:
            await site.stop()
        await runner.cleanup()
        await engine.close()
        listeners.close()
        try:
            os.unlink(os.path.join(config.exec_root, HOSTS_FILE))
        except FileNotFoundError:
            pass
        if config.pidfile:
            try:
                os.unlink(config.pidfile)
            except FileNotFoundError:
                pass


def run(config: DaemonConfig, reload: Callable[[], DaemonConfig] | None = None) -> None:
    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if os.geteuid() != 0:
        raise SystemExit("dockyard daemon must run as root")
    # Worker threads (log reading, tar, hashing) hold the GIL for up to this long each
    # time the event loop wants it back: 1 ms rather than 5 keeps requests answered fast.
    sys.setswitchinterval(0.001)
    try:
        asyncio.run(serve(config, reload))
    except DockyardError as e:
        raise SystemExit(f"dockyard daemon: {e.message}") from None
