"""Container logging as the container service sees it.

One object for everything a container's output goes through: the daemon's
default driver and options, the bounds a driver's options set, the monitor's
log files (laid out before it starts, kept while it runs: `keeper.py`),
delivery to a log-driver plugin (`plugin.py`), and reading for `logs`.

The monitor writes every container's output in its own record format
(`k8sfile.py`) whatever the driver: `json-file`, `k8s-file` and `local`
differ only in their bounds and defaults. Docker's `local` driver stores
protobuf-framed entries, a format conmon cannot write; Dockyard keeps
`local` logs in the monitor's format with local's bounds (5 files of
20 MiB, compressed), and `logs` reads them like any other. `none` stores
nothing (`logs` answers as Docker does: reading is not supported). For a
plugin driver the monitor's files are the engine's copy of the output
(Docker's dual-logging cache, bounded by the `cache-` options), which the
plugin's forwarder follows and `logs` reads when the plugin cannot, unless
`cache-disabled` says not to.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

from dockyard.containers.model import PAUSED, RUNNING, Container
from dockyard.containers.schema import LogConfig
from dockyard.errors import InvalidArgument, NotImplementedByEngine
from dockyard.logs import options, reader
from dockyard.logs.files import LogFiles
from dockyard.logs.k8sfile import LogEntry
from dockyard.logs.keeper import LogKeeper
from dockyard.logs.options import Rotation
from dockyard.logs.plugin import PluginLogging
from dockyard.plugins.legacy import Plugin
from dockyard.plugins.protocol.logdriver import LogDriverClient

_CANNOT_READ = "configured logging driver does not support reading"


class LogService:
    def __init__(self, plugins: PluginLogging, defaults: LogConfig | None = None) -> None:
        self.plugins = plugins
        self.defaults = defaults or LogConfig(type=options.JSON_FILE, config={})
        self.keeper = LogKeeper()

    # -- drivers -----------------------------------------------------------------

    def is_plugin_driver(self, driver: str) -> bool:
        return self.plugins.is_plugin_driver(driver)

    async def resolve(self, driver: str) -> Plugin:
        return await self.plugins.resolve(driver)

    @staticmethod
    def rotation(container: Container) -> Rotation:
        """The bounds of the monitor's copy of `container`'s output: its driver's, or for
        a plugin driver the dual-logging cache's (`cache-max-size` ...; a plugin's own
        options are the plugin's)."""
        config = container.host_config.log_config
        driver = config.type or options.JSON_FILE
        try:
            return options.validate(driver, dict(config.config or {}))
        except InvalidArgument as e:  # a record made before options were checked at create
            raise InvalidArgument(f"failed to initialize logging driver: {e.message}") from None

    # -- a container's run ---------------------------------------------------------

    async def start(self, container: Container, container_dir: str) -> None:
        """Before the monitor starts (or, at daemon start-up, for one already running):
        the log files laid out and kept, the plugin's delivery started. Raises if the
        container must not start."""
        running = container.state.status in (RUNNING, PAUSED)
        await self.keeper.start(
            container.id, container_dir, self.rotation(container), running=running
        )
        await self.plugins.start(container, container_dir)

    async def resume(self, container: Container, container_dir: str) -> None:
        """At daemon start-up, for a container recorded running (it may have exited since:
        `stop` follows): its files kept at once, its plugin's delivery resumed in the
        background (start-up never waits for a plugin)."""
        await self.keeper.start(container.id, container_dir, self.rotation(container), running=True)
        self.plugins.resume(container, container_dir)

    async def stop(self, container_id: str) -> None:
        """The monitor has exited (or the start failed)."""
        await self.plugins.stop(container_id)
        await self.keeper.stop(container_id)

    async def shutdown(self) -> None:
        await self.plugins.shutdown()
        await self.keeper.shutdown()

    # -- reading -------------------------------------------------------------------

    async def read(
        self,
        container: Container,
        container_dir: str,
        *,
        follow: bool,
        since_ns: int,
        until_ns: int,
        tail: int | None,
        finished: Callable[[], bool],
        changed: Callable[[], Awaitable[None]],
    ) -> AsyncGenerator[list[LogEntry], None]:
        """Batches of `container`'s log records: from its plugin when that can read, else
        from the monitor's files. Raises at once (not when iterated) when the log cannot
        be read: `none`, or a plugin that cannot read with the cache disabled (the
        monitor's files exist, as the plugin's delivery buffer, but are not served, as
        Docker keeps none)."""
        config = container.host_config.log_config
        if config.type == options.NONE:
            raise NotImplementedByEngine(_CANNOT_READ)
        plugin = await self.plugins.reader(container)
        cache_disabled = options.cache_disabled(dict(config.config or {}))
        if plugin is None and self.is_plugin_driver(config.type) and cache_disabled:
            raise NotImplementedByEngine(_CANNOT_READ)
        return self._read(
            plugin,
            container,
            container_dir,
            follow=follow,
            since_ns=since_ns,
            until_ns=until_ns,
            tail=tail,
            finished=finished,
            changed=changed,
        )

    async def _read(
        self,
        plugin: LogDriverClient | None,
        container: Container,
        container_dir: str,
        *,
        follow: bool,
        since_ns: int,
        until_ns: int,
        tail: int | None,
        finished: Callable[[], bool],
        changed: Callable[[], Awaitable[None]],
    ) -> AsyncGenerator[list[LogEntry], None]:
        if plugin is not None:
            # Entries come as the plugin sends them: a follower must not wait for a batch.
            async for entry in self.plugins.read(
                plugin, container, follow=follow, since_ns=since_ns, until_ns=until_ns, tail=tail
            ):
                yield [entry]
            return
        files = LogFiles(container_dir)
        async for records in reader.stream(
            files,
            since_ns=since_ns,
            until_ns=until_ns,
            tail=tail,
            follow=follow,
            finished=finished,
            changed=changed,
        ):
            yield records
