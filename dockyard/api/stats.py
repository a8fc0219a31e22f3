"""`GET /containers/{id}/stats`: parse the query, ask the engine's stats service, render
Docker's JSON (moby's `StatsJSON` as API 1.45 has it, field for field and in its order).

`stream=1` (the default) writes one object per line every second until the client
goes or the container is removed; `stream=0` answers one object whose
`precpu_stats` come from a sample about a second earlier, or at once with
`one-shot=1` (API 1.41 and later), which leaves them zero.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

from aiohttp import web

from dockyard.api.app import Routes, api_version, engine, query_bool
from dockyard.containers.stats import CpuStats, StatsSample
from dockyard.errors import InvalidArgument
from dockyard.images.oci import ZERO_TIME
from dockyard.runtime.cgroupstats import BlkioFigures, Entries

routes = Routes()


@routes.get("/containers/{id}/stats")
async def stats(request: web.Request) -> web.StreamResponse:
    eng = engine(request)
    container = eng.containers.get(request.match_info["id"])
    stream = query_bool(request, "stream", default=True)
    one_shot = api_version(request) >= (1, 41) and query_bool(request, "one-shot")
    if stream and one_shot:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    if not stream:
        if one_shot:
            sample = await eng.stats.one_shot(container)
        else:
            sample = await eng.stats.snapshot(container)
        reply = web.Response(body=_line(sample))
        reply.headers["Content-Type"] = "application/json"
        return reply
    resp = web.StreamResponse(status=200)
    resp.headers["Content-Type"] = "application/json"
    resp.enable_chunked_encoding()
    await resp.prepare(request)  # clients wait for the headers before the first sample
    try:
        async with contextlib.aclosing(eng.stats.stream(container)) as samples:
            async for sample in samples:
                await resp.write(_line(sample))
        await resp.write_eof()
    except (ConnectionResetError, RuntimeError):
        pass  # the client went away
    return resp


def _line(sample: StatsSample) -> bytes:
    return json.dumps(stats_json(sample), separators=(",", ":")).encode() + b"\n"


def stats_json(s: StatsSample) -> dict[str, Any]:
    """A sample as Docker's JSON: Go's `omitempty` leaves out zero numbers and empty maps
    inside the objects, while the objects themselves are always there."""
    out: dict[str, Any] = {
        "read": go_time(s.read_ns),
        "preread": go_time(s.preread_ns),
        "pids_stats": _nonzero(current=s.pids.current, limit=s.pids.limit),
        "blkio_stats": _blkio(s.blkio or BlkioFigures()),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": _cpu(s.cpu),
        "precpu_stats": _cpu(s.precpu),
        "memory_stats": {},
        "name": s.name,
        "id": s.id,
    }
    if s.memory is not None:
        m = s.memory
        out["memory_stats"] = _nonzero(usage=m.usage, max_usage=m.max_usage)
        if m.stats:
            out["memory_stats"]["stats"] = dict(sorted(m.stats.items()))
        out["memory_stats"].update(_nonzero(failcnt=m.failcnt, limit=m.limit))
    if s.networks:
        out["networks"] = {
            name: {
                "rx_bytes": c.rx_bytes,
                "rx_packets": c.rx_packets,
                "rx_errors": c.rx_errors,
                "rx_dropped": c.rx_dropped,
                "tx_bytes": c.tx_bytes,
                "tx_packets": c.tx_packets,
                "tx_errors": c.tx_errors,
                "tx_dropped": c.tx_dropped,
            }
            for name, c in sorted(s.networks.items())
        }
    return out


def _cpu(cpu: CpuStats) -> dict[str, Any]:
    c = cpu.cgroup
    usage: dict[str, Any] = {"total_usage": c.total}
    if c.percpu:
        usage["percpu_usage"] = list(c.percpu)
    usage["usage_in_kernelmode"] = c.kernel
    usage["usage_in_usermode"] = c.user
    return {
        "cpu_usage": usage,
        **_nonzero(system_cpu_usage=cpu.system_usage, online_cpus=cpu.online_cpus),
        "throttling_data": {
            "periods": c.periods,
            "throttled_periods": c.throttled_periods,
            "throttled_time": c.throttled_time,
        },
    }


def _blkio(b: BlkioFigures) -> dict[str, Any]:
    return {
        "io_service_bytes_recursive": _entries(b.service_bytes),
        "io_serviced_recursive": _entries(b.serviced),
        "io_queue_recursive": _entries(b.queued),
        "io_service_time_recursive": _entries(b.service_time),
        "io_wait_time_recursive": _entries(b.wait_time),
        "io_merged_recursive": _entries(b.merged),
        "io_time_recursive": _entries(b.time),
        "sectors_recursive": _entries(b.sectors),
    }


def _entries(entries: Entries | None) -> list[dict[str, Any]] | None:
    if entries is None:
        return None
    return [{"major": e.major, "minor": e.minor, "op": e.op, "value": e.value} for e in entries]


def _nonzero(**values: int) -> dict[str, int]:
    return {key: value for key, value in values.items() if value}


def go_time(ns: int | None) -> str:
    """A time as Go's encoding/json writes one: RFC 3339 in UTC with as many fractional
    digits as needed (none for a whole second); the zero time when there is none."""
    if ns is None:
        return ZERO_TIME
    seconds, frac = divmod(ns, 1_000_000_000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    digits = f"{frac:09d}".rstrip("0")
    return f"{text}.{digits}Z" if digits else f"{text}Z"
