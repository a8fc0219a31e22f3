"""The cgroup v1 and v2 readers and the /proc parsers, against directories shaped like
each cgroup version's files (the integration tests read the real host's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.api.stats import go_time, stats_json
from dockyard.containers.stats import CpuStats, StatsSample
from dockyard.runtime import cgroupstats
from dockyard.runtime.cgroups import CgroupLayout
from dockyard.runtime.cgroupstats import MAX_UINT64, BlkioEntry, CgroupGone
from dockyard.runtime.procstats import InterfaceCounters, parse_net_dev, parse_proc_stat

CTR = "dockyard/abc123"


def write(directory: Path, files: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)


V1_MEMORY_STAT = """cache 41943040
rss 57344
rss_huge 0
shmem 41943040
mapped_file 0
dirty 0
writeback 0
swap 0
pgpgin 11323
pgpgout 1069
pgfault 1395
pgmajfault 0
inactive_anon 42000384
active_anon 0
inactive_file 4096
active_file 0
unevictable 0
hierarchical_memory_limit 134217728
hierarchical_memsw_limit 268435456
total_cache 41943040
total_rss 57344
total_rss_huge 0
total_shmem 41943040
total_mapped_file 0
total_dirty 0
total_writeback 0
total_swap 0
total_pgpgin 11323
total_pgpgout 1069
total_pgfault 1395
total_pgmajfault 0
total_inactive_anon 42000384
total_active_anon 0
total_inactive_file 4096
total_active_file 0
total_unevictable 0
"""


@pytest.fixture
def v1_host(tmp_path: Path) -> CgroupLayout:
    """A v1 host with cpu and cpuacct in one hierarchy, as most distributions mount them."""
    roots = {
        "cpu,cpuacct": tmp_path / "cpu,cpuacct",
        "memory": tmp_path / "memory",
        "blkio": tmp_path / "blkio",
        "pids": tmp_path / "pids",
    }
    write(
        roots["cpu,cpuacct"] / CTR,
        {
            "cpuacct.usage": "1969557473\n",
            "cpuacct.stat": "user 192\nsystem 3\n",
            "cpuacct.usage_percpu": "1612146562 357410911 \n",
            "cpu.stat": "nr_periods 10\nnr_throttled 4\nthrottled_time 123456789\n",
        },
    )
    write(
        roots["memory"] / CTR,
        {
            "memory.stat": V1_MEMORY_STAT,
            "memory.usage_in_bytes": "42795008\n",
            "memory.max_usage_in_bytes": "43900928\n",
            "memory.limit_in_bytes": "9223372036854771712\n",
            "memory.failcnt": "0\n",
        },
    )
    write(roots["pids"] / CTR, {"pids.current": "3\n", "pids.max": "max\n"})
    write(
        roots["blkio"] / CTR,
        {
            "blkio.throttle.io_service_bytes": (
                "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Async 0\n"
                "8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n"
            ),
            "blkio.throttle.io_serviced": "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
        },
    )
    v1 = {
        "cpu": str(roots["cpu,cpuacct"]),
        "cpuacct": str(roots["cpu,cpuacct"]),
        "memory": str(roots["memory"]),
        "blkio": str(roots["blkio"]),
        "pids": str(roots["pids"]),
        "name=systemd": str(tmp_path / "systemd"),
    }
    return CgroupLayout("v1", v1)


def test_v1_reads_cpu_in_nanoseconds_with_percpu_and_throttling(v1_host: CgroupLayout) -> None:
    cpu = cgroupstats.read(v1_host, "/" + CTR).cpu
    assert cpu.total == 1969557473
    # cpuacct.stat counts USER_HZ ticks (1/100 s)
    assert (cpu.user, cpu.kernel) == (1_920_000_000, 30_000_000)
    assert cpu.percpu == (1612146562, 357410911)
    assert (cpu.periods, cpu.throttled_periods, cpu.throttled_time) == (10, 4, 123456789)


def test_v1_memory_has_dockers_keys_and_the_raw_limit(v1_host: CgroupLayout) -> None:
    memory = cgroupstats.read(v1_host, "/" + CTR).memory
    assert memory is not None
    assert (memory.usage, memory.max_usage, memory.failcnt) == (42795008, 43900928, 0)
    assert memory.limit == 9223372036854771712  # the service replaces it by the host's memory
    assert set(memory.stats) == set(cgroupstats.V1_MEMORY_KEYS)
    assert "shmem" not in memory.stats and "swap" not in memory.stats  # not Docker's keys
    assert memory.stats["total_inactive_file"] == 4096
    assert memory.stats["hierarchical_memsw_limit"] == 268435456


def test_v1_pids_without_a_limit_read_as_zero(v1_host: CgroupLayout) -> None:
    pids = cgroupstats.read(v1_host, "/" + CTR).pids
    assert (pids.current, pids.limit) == (3, 0)


def test_v1_block_io_falls_back_to_the_throttle_files(v1_host: CgroupLayout) -> None:
    blkio = cgroupstats.read(v1_host, "/" + CTR).blkio
    assert blkio is not None
    assert blkio.service_bytes is not None
    assert blkio.service_bytes[:2] == (
        BlkioEntry(8, 0, "Read", 4096),
        BlkioEntry(8, 0, "Write", 8192),
    )
    assert len(blkio.service_bytes) == 6  # the closing "Total N" line is no entry
    assert blkio.serviced == (
        BlkioEntry(8, 0, "Read", 1),
        BlkioEntry(8, 0, "Write", 2),
        BlkioEntry(8, 0, "Total", 3),
    )
    # Every other list is there but empty: Docker's `[]`, not null, on v1.
    assert blkio.queued == blkio.sectors == blkio.time == ()


def test_v1_block_io_prefers_the_cfq_files_when_they_hold_entries(
    v1_host: CgroupLayout, tmp_path: Path
) -> None:
    write(
        tmp_path / "blkio" / CTR,
        {
            "blkio.io_serviced_recursive": "8:16 Read 7\n8:16 Write 9\nTotal 16\n",
            "blkio.io_service_bytes_recursive": "8:16 Read 700\n8:16 Write 900\nTotal 1600\n",
            "blkio.sectors_recursive": "8:16 42\n",
        },
    )
    blkio = cgroupstats.read(v1_host, "/" + CTR).blkio
    assert blkio is not None
    assert blkio.service_bytes == (BlkioEntry(8, 16, "Read", 700), BlkioEntry(8, 16, "Write", 900))
    assert blkio.sectors == (BlkioEntry(8, 16, "", 42),)
    assert blkio.queued == ()  # a CFQ file that is missing: an empty list


def test_v1_hybrid_layout_reads_the_v1_controllers(v1_host: CgroupLayout, tmp_path: Path) -> None:
    hybrid = CgroupLayout("hybrid", v1_host.v1, str(tmp_path / "unified"), ("hugetlb",))
    figures = cgroupstats.read(hybrid, "/" + CTR)
    assert figures.cpu.total == 1969557473 and figures.memory is not None


def test_v1_missing_controllers_read_as_zeros(tmp_path: Path) -> None:
    write(tmp_path / "memory" / CTR, {"memory.usage_in_bytes": "100\n"})
    figures = cgroupstats.read(CgroupLayout("v1", {"memory": str(tmp_path / "memory")}), CTR)
    assert figures.cpu == cgroupstats.CpuFigures()
    assert figures.blkio is None  # no blkio hierarchy: Docker's nulls
    assert figures.memory is not None and figures.memory.usage == 100


def test_a_cgroup_that_is_gone_says_so(v1_host: CgroupLayout, tmp_path: Path) -> None:
    with pytest.raises(CgroupGone):
        cgroupstats.read(v1_host, "/dockyard/stopped")
    with pytest.raises(CgroupGone):
        cgroupstats.read(CgroupLayout("v2", {}, str(tmp_path / "unified")), "/dockyard/stopped")


# -- cgroup v2 -------------------------------------------------------------------------


V2_MEMORY_STAT = """anon 2338816
file 41943040
kernel 274432
kernel_stack 16384
pagetables 36864
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 41943040
zswap 0
file_mapped 0
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
inactive_anon 44281856
active_anon 0
inactive_file 8192
active_file 0
unevictable 0
slab_reclaimable 51208
slab_unreclaimable 72096
slab 123304
workingset_refault_anon 0
pgfault 1395
pgmajfault 2
"""


@pytest.fixture
def v2_host(tmp_path: Path) -> CgroupLayout:
    write(
        tmp_path / "unified" / CTR,
        {
            "cgroup.controllers": "cpuset cpu io memory pids\n",
            "cpu.stat": (
                "usage_usec 1969557\nuser_usec 1920000\nsystem_usec 49557\n"
                "core_sched.force_idle_usec 0\nnr_periods 10\nnr_throttled 4\n"
                "throttled_usec 123456\nnr_bursts 0\nburst_usec 0\n"
            ),
            "memory.stat": V2_MEMORY_STAT,
            "memory.current": "44617728\n",
            "memory.max": "max\n",
            "memory.events": "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
            "io.stat": (
                "8:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n"
                "253:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"
            ),
            "pids.current": "3\n",
            "pids.max": "max\n",
        },
    )
    return CgroupLayout("v2", {}, str(tmp_path / "unified"), ("cpu", "io", "memory", "pids"))


def test_v2_reads_cpu_from_cpu_stat_in_nanoseconds(v2_host: CgroupLayout) -> None:
    cpu = cgroupstats.read(v2_host, "/" + CTR).cpu
    assert (cpu.total, cpu.user, cpu.kernel) == (1_969_557_000, 1_920_000_000, 49_557_000)
    assert cpu.percpu == ()  # v2 has no per-CPU figures
    assert (cpu.periods, cpu.throttled_periods, cpu.throttled_time) == (10, 4, 123_456_000)


def test_v2_memory_has_dockers_v2_keys_and_oom_events_as_failcnt(v2_host: CgroupLayout) -> None:
    memory = cgroupstats.read(v2_host, "/" + CTR).memory
    assert memory is not None
    assert memory.usage == 44617728
    assert memory.max_usage == 0  # v2 keeps no high-water mark Docker reports
    assert memory.limit == MAX_UINT64  # "max"; the service replaces it by the host's memory
    assert memory.failcnt == 2
    assert set(memory.stats) == set(cgroupstats.V2_MEMORY_KEYS)
    assert memory.stats["inactive_file"] == 8192 and memory.stats["anon"] == 2338816
    assert memory.stats["workingset_refault"] == 0  # a Docker key the kernel splits now
    assert "total_inactive_file" not in memory.stats  # how clients tell v2 from v1


def test_v2_io_stat_becomes_read_and_write_entries(v2_host: CgroupLayout) -> None:
    blkio = cgroupstats.read(v2_host, "/" + CTR).blkio
    assert blkio is not None
    assert blkio.service_bytes == (
        BlkioEntry(8, 0, "read", 1459200),
        BlkioEntry(8, 0, "write", 314773504),
        BlkioEntry(253, 0, "read", 4096),
        BlkioEntry(253, 0, "write", 0),
    )
    assert blkio.serviced is None and blkio.sectors is None  # Docker's nulls on v2


def test_v2_unlimited_pids_read_as_the_largest_uint64(v2_host: CgroupLayout) -> None:
    pids = cgroupstats.read(v2_host, "/" + CTR).pids
    assert (pids.current, pids.limit) == (3, MAX_UINT64)


def test_v2_limits_and_an_unused_disk(v2_host: CgroupLayout, tmp_path: Path) -> None:
    write(
        tmp_path / "unified" / CTR,
        {"memory.max": "134217728\n", "pids.max": "50\n", "io.stat": ""},
    )
    figures = cgroupstats.read(v2_host, "/" + CTR)
    assert figures.memory is not None and figures.memory.limit == 134217728
    assert figures.pids.limit == 50
    assert figures.blkio is not None and figures.blkio.service_bytes is None


# -- /proc -------------------------------------------------------------------------------


def test_host_cpu_time_is_the_first_seven_fields_in_nanoseconds() -> None:
    text = (
        "cpu  100 2 30 4000 5 6 7 800 0 0\n"
        "cpu0 50 1 15 2000 2 3 3 400 0 0\n"
        "cpu1 50 1 15 2000 3 3 4 400 0 0\n"
        "intr 123 0 0\n"
        "cpu9 this line is not a cpu line any more\n"
    )
    host = parse_proc_stat(text)
    assert host.usage == (100 + 2 + 30 + 4000 + 5 + 6 + 7) * 10_000_000  # steal left out
    assert host.online == 2


def test_net_dev_gives_each_interface_its_counters() -> None:
    text = (
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo:     140       2    0    0    0     0          0         0      140       2"
        "    0    0    0     0       0          0\n"
        "  eth0: 5243880    3618    1    2    0     0          0         0   200604    3598"
        "    3    4    0     0       0          0\n"
    )
    found = parse_net_dev(text)
    assert found["eth0"] == InterfaceCounters(5243880, 3618, 1, 2, 200604, 3598, 3, 4)
    assert set(found) == {"lo", "eth0"}  # the service keeps only the container's own


# -- Docker's JSON -------------------------------------------------------------------------


def test_a_container_that_is_not_running_renders_as_dockers_empty_stats() -> None:
    body = stats_json(StatsSample("a" * 64, "/web"))
    assert body == {
        "read": "0001-01-01T00:00:00Z",
        "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {},
        "blkio_stats": {
            key: None
            for key in (
                "io_service_bytes_recursive",
                "io_serviced_recursive",
                "io_queue_recursive",
                "io_service_time_recursive",
                "io_wait_time_recursive",
                "io_merged_recursive",
                "io_time_recursive",
                "sectors_recursive",
            )
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {},
        "name": "/web",
        "id": "a" * 64,
    }


def test_a_sample_renders_in_dockers_field_order(v1_host: CgroupLayout) -> None:
    figures = cgroupstats.read(v1_host, "/" + CTR)
    sample = StatsSample(
        "b" * 64,
        "/web",
        read_ns=1_700_000_000_123_450_000,
        cpu=CpuStats(figures.cpu, 5_000_000_000, 2),
        memory=figures.memory,
        blkio=figures.blkio,
        pids=figures.pids,
        networks={"eth1": InterfaceCounters(1), "eth0": InterfaceCounters(2)},
    )
    body = stats_json(sample)
    assert list(body) == [
        "read",
        "preread",
        "pids_stats",
        "blkio_stats",
        "num_procs",
        "storage_stats",
        "cpu_stats",
        "precpu_stats",
        "memory_stats",
        "name",
        "id",
        "networks",
    ]
    assert body["read"] == "2023-11-14T22:13:20.12345Z"
    assert list(body["cpu_stats"]) == [
        "cpu_usage",
        "system_cpu_usage",
        "online_cpus",
        "throttling_data",
    ]
    assert list(body["cpu_stats"]["cpu_usage"]) == [
        "total_usage",
        "percpu_usage",
        "usage_in_kernelmode",
        "usage_in_usermode",
    ]
    assert list(body["memory_stats"]) == ["usage", "max_usage", "stats", "limit"]  # failcnt 0
    assert list(body["memory_stats"]["stats"]) == sorted(cgroupstats.V1_MEMORY_KEYS)
    assert body["pids_stats"] == {"current": 3}  # no limit: left out
    assert list(body["networks"]) == ["eth0", "eth1"]
    assert body["blkio_stats"]["io_queue_recursive"] == []


def test_times_print_as_go_prints_them() -> None:
    assert go_time(None) == "0001-01-01T00:00:00Z"
    assert go_time(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert go_time(1_700_000_000_000_000_001) == "2023-11-14T22:13:20.000000001Z"
