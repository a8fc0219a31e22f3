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
nothing (`logs` answers as Docker does: reading is not supported).
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
        """The bounds of the monitor's copy of `container`'s output. A plugin's own
        options are the plugin's: the engine's copy of its output is kept whole."""
        config = container.host_config.log_config
        driver = config.type or options.JSON_FILE
        try:
            bounds = options.validate(driver, dict(config.config or {}))
        except InvalidArgument as e:  # a record made before options were checked at create
            raise InvalidArgument(f"failed to initialize logging driver: {e.message}") from None
        return bounds if driver in options.BUILTIN else options.UNBOUNDED

    # -- a container's run ---------------------------------------------------------

    async def start(self, container: Container, log_path: str, container_dir: str) -> None:
        """Before the monitor starts (or, at daemon start-up, for one already running):
        the log files laid out and kept, the plugin's delivery started. Raises if the
        container must not start."""
        running = container.state.status in (RUNNING, PAUSED)
        await self.keeper.start(
            container.id, container_dir, self.rotation(container), running=running
        )
        await self.plugins.start(container, log_path, container_dir)

    async def resume(self, container: Container, log_path: str, container_dir: str) -> None:
        """At daemon start-up, for a container still running: its files kept at once, its
        plugin's delivery resumed in the background (start-up never waits for a plugin)."""
        await self.keeper.start(container.id, container_dir, self.rotation(container), running=True)
        self.plugins.resume(container, log_path, container_dir)

    async def stop(self, container_id: str) -> None:
        """The monitor has exited (or the start failed)."""
        await self.plugins.stop(container_id)
        await self.keeper.stop(container_id)

    async def shutdown(self) -> None:
        await self.plugins.shutdown()
        await self.keeper.shutdown()

    # -- reading -------------------------------------------------------------------

    def read(
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
        from the monitor's files. Raises at once (not when iterated) for `none`."""
        if container.host_config.log_config.type == options.NONE:
            raise NotImplementedByEngine("configured logging driver does not support reading")
        return self._read(
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
        plugin = await self.plugins.reader(container)
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
