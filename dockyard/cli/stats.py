"""`dockyard stats`: a live table of containers' resource use, as `docker stats` shows it.

Figures are worked out the way the docker CLI does: CPU % from the change in the
container's and the host's CPU time between a sample and the one before,
times the host's CPUs; memory without the inactive file cache; network and
block I/O as totals since the container started.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import click

from dockyard.cli.client import APIError, Client
from dockyard.cli.main import Context, fail, pass_context
from dockyard.units import human_size

_DEFAULT = (
    "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
    "\t{{.BlockIO}}\t{{.PIDs}}"
)
_HEADERS = {
    "Container": "CONTAINER",
    "Name": "NAME",
    "ID": "CONTAINER ID",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
_REDRAW = 0.5  # seconds between two tables, as docker redraws
_FIRST_WAIT = 2.0  # how long the first table waits for every container's first sample


@click.command("stats")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers.")
@click.option("--no-stream", is_flag=True, help="Print the first figures and exit.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", help="Go template or 'json'.")
@click.argument("containers", nargs=-1)
@pass_context
def stats(
    ctx: Context,
    show_all: bool,
    no_stream: bool,
    no_trunc: bool,
    fmt: str | None,
    containers: tuple[str, ...],
) -> None:
    """Display a live stream of containers' resource usage statistics."""
    client = ctx.client
    client.request("GET", "/_ping")  # start the daemon if need be, before any thread asks
    fmt = fmt or _DEFAULT
    if no_stream:
        refs = list(containers) or _listed(client, show_all)
        with ThreadPoolExecutor(max_workers=max(1, min(len(refs), 64))) as pool:
            results = list(pool.map(lambda ref: _one(client, ref), refs))
        errors = [error for _, error in results if error is not None]
        if containers and errors:
            fail("\n".join(f"Error response from daemon: {e}" for e in errors), 1)
        figures = [
            Figures.of(sample, ref, error)
            for ref, (sample, error) in zip(refs, results, strict=True)
        ]
        _print(fmt, figures, no_trunc)
        return
    _live(client, list(containers), show_all, fmt, no_trunc)


@dataclass
class Figures:
    """One row of the table: what the docker CLI computes from a sample."""

    container: str  # as the user named it, or the short ID
    name: str = ""
    id: str = ""
    cpu_percent: float = 0.0
    memory: float = 0.0
    memory_limit: float = 0.0
    memory_percent: float = 0.0
    net_rx: float = 0.0
    net_tx: float = 0.0
    block_read: float = 0.0
    block_write: float = 0.0
    pids: int = 0
    invalid: bool = False

    @classmethod
    def of(cls, sample: dict[str, Any] | None, container: str, error: str | None) -> Figures:
        if sample is None or error is not None:
            return cls(container, invalid=True)
        memory_stats = sample.get("memory_stats") or {}
        usage = memory_stats.get("usage", 0)
        raw = memory_stats.get("stats") or {}
        # Cache that the kernel would drop first does not count (v1 and v2 names).
        inactive = raw.get("total_inactive_file", raw.get("inactive_file", 0))
        memory = usage - inactive if inactive < usage else usage
        limit = memory_stats.get("limit", 0)
        networks = (sample.get("networks") or {}).values()
        read = write = 0
        for entry in (sample.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
            op = (entry.get("op") or " ")[0].lower()
            if op == "r":
                read += entry.get("value", 0)
            elif op == "w":
                write += entry.get("value", 0)
        return cls(
            container=container,
            name=sample.get("name", ""),
            id=sample.get("id", ""),
            cpu_percent=_cpu_percent(sample),
            memory=memory,
            memory_limit=limit,
            memory_percent=memory / limit * 100 if limit else 0.0,
            net_rx=sum(n.get("rx_bytes", 0) for n in networks),
            net_tx=sum(n.get("tx_bytes", 0) for n in networks),
            block_read=read,
            block_write=write,
            pids=(sample.get("pids_stats") or {}).get("current", 0),
        )

    def row(self, no_trunc: bool) -> dict[str, str]:
        def unless_invalid(text: str, placeholder: str = "--") -> str:
            return placeholder if self.invalid else text

        return {
            "BlockIO": unless_invalid(
                f"{human_size(self.block_read)} / {human_size(self.block_write)}"
            ),
            "CPUPerc": unless_invalid(f"{self.cpu_percent:.2f}%"),
            "Container": self.container,
            "ID": self.id if no_trunc else self.id[:12],
            "MemPerc": unless_invalid(f"{self.memory_percent:.2f}%"),
            "MemUsage": unless_invalid(
                f"{bytes_size(self.memory)} / {bytes_size(self.memory_limit)}", "-- / --"
            ),
            "Name": self.name[1:] if len(self.name) > 1 else "--",
            "NetIO": unless_invalid(f"{human_size(self.net_rx)} / {human_size(self.net_tx)}"),
            "PIDs": unless_invalid(str(self.pids)),
        }


def _cpu_percent(sample: dict[str, Any]) -> float:
    cpu = sample.get("cpu_stats") or {}
    pre = sample.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or [])
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100
    return 0.0


def bytes_size(size: float) -> str:
    """docker's BytesSize: binary units, four significant digits (`40.34MiB`)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


def _listed(client: Client, show_all: bool) -> list[str]:
    items = client.json("GET", "/containers/json", params={"all": show_all})
    return [item["Id"][:12] for item in items]


def _one(client: Client, ref: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        return client.json("GET", f"/containers/{ref}/stats", params={"stream": "0"}), None
    except APIError as e:
        return None, e.message


def _print(fmt: str, figures: list[Figures], no_trunc: bool) -> None:
    from dockyard.cli.output import print_rows

    print_rows(fmt, [f.row(no_trunc) for f in figures], _HEADERS)


class _Watch:
    """One container's stream, read by a thread of its own; the newest figures."""

    def __init__(self, client: Client, ref: str) -> None:
        self.ref = ref
        self.figures = Figures(ref, invalid=True)
        self.error: str | None = None  # why the stream could not be had
        self.first = threading.Event()  # set at the first sample, or when the stream ends
        self.ended = False
        self._stop = threading.Event()
        threading.Thread(target=self._follow, args=(client,), daemon=True).start()

    def stop(self) -> None:
        """Let go of the stream (at its next sample: they come every second)."""
        self._stop.set()

    def _follow(self, client: Client) -> None:
        try:
            for sample in client.json_stream("GET", f"/containers/{self.ref}/stats"):
                if self._stop.is_set():
                    break
                self.figures = Figures.of(sample, self.ref, None)
                self.first.set()
        except APIError as e:
            self.error = e.message
        except OSError as e:
            self.error = str(e)
        finally:
            self.figures = replace(self.figures, invalid=True)
            self.ended = True
            self.first.set()


def _live(client: Client, refs: list[str], show_all: bool, fmt: str, no_trunc: bool) -> None:
    """Redraw the table until interrupted (or, for named containers, until all are gone)."""
    from dockyard.cli.template import TemplateError, format_rows

    watches = {ref: _Watch(client, ref) for ref in refs}
    last_listed = 0.0
    first = True
    tty = sys.stdout.isatty()
    if tty:
        sys.stdout.write("\033[2J")
    while True:
        if not refs and time.monotonic() - last_listed >= 1:
            # Without names: whatever runs (or exists, with -a) now, checked every second.
            listed = _listed(client, show_all)
            for ref in listed:
                if ref not in watches:
                    watches[ref] = _Watch(client, ref)
            for ref in [r for r in watches if r not in listed]:
                watches.pop(ref).stop()
            last_listed = time.monotonic()
        if first:
            first = False
            deadline = time.monotonic() + _FIRST_WAIT
            for watch in watches.values():
                watch.first.wait(max(0.0, deadline - time.monotonic()))
            errors = [w.error for w in watches.values() if w.error is not None]
            if refs and errors:
                fail("\n".join(f"Error response from daemon: {e}" for e in errors), 1)
        rows = [w.figures.row(no_trunc) for w in watches.values()]
        try:
            text = format_rows(fmt, rows, _HEADERS)
        except TemplateError as e:
            fail(f"template parsing error: {e}", 125)
            return
        if tty:
            # Over the previous table: each line erased to its end, then the rest below.
            lines = "".join(line + "\033[K\n" for line in text.rstrip("\n").split("\n"))
            sys.stdout.write("\033[H" + lines + "\033[J")
        else:
            sys.stdout.write(text)
        sys.stdout.flush()
        if refs and all(w.ended for w in watches.values()):
            return
        time.sleep(_REDRAW)
