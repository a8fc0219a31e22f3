"""`docker update`: new resource limits and restart policy for an existing container.

The request is moby's `UpdateConfig` (the resource part of a HostConfig and a
restart policy), decoded where it enters like a create body. A field left at
its zero value keeps the container's setting; the others replace it, under
moby's rules: the request is validated on its own (`validate_resources` with
the update exceptions), then against what the container already has (`merge`:
nano CPUs against a CFS period or quota, a memory limit above the swap limit
already set, a restart policy on an auto-removed container).

The merged HostConfig is what the container keeps: inspect shows it and the
next start applies it. On a running container the service also hands
`runtime_resources(...)` to the OCI runtime's `update`, which writes the
cgroup files at once; if the kernel refuses a value the record stays as it was.
"""

from __future__ import annotations

from typing import Any

from dockyard.containers import config as cfg
from dockyard.containers import schema, spec
from dockyard.containers.schema import HostConfig, RestartPolicy
from dockyard.errors import Conflict
from dockyard.wire import Message, wire

_CONFLICTING = "Conflicting options:"
_ALREADY = "has already been set"
KERNEL_MEMORY_DISCARDED = (
    "Your kernel does not support kernel memory limit capabilities or the cgroup is not "
    "mounted. Limitation discarded."
)
BLKIO_WEIGHT_DISCARDED = (
    "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded."
)


class ContainerUpdate(Message):
    """`POST /containers/{id}/update`'s body: the fields Docker applies on update."""

    blkio_weight: int = wire(default=0)
    cpu_shares: int = wire(default=0)
    cpu_period: int = wire(default=0)
    cpu_quota: int = wire(default=0)
    cpu_realtime_period: int = wire(default=0)
    cpu_realtime_runtime: int = wire(default=0)
    cpuset_cpus: str = wire(default="")
    cpuset_mems: str = wire(default="")
    memory: int = wire(default=0)
    memory_reservation: int = wire(default=0)
    memory_swap: int = wire(default=0)
    kernel_memory: int = wire(default=0)
    nano_cpus: int = wire(default=0)
    pids_limit: int | None = wire(default=None)
    restart_policy: RestartPolicy = wire(default_factory=RestartPolicy)


def validate(request: ContainerUpdate, ncpu: int, *, blkio_weight: bool) -> list[str]:
    """Check the request on its own as moby does (400s); returns Docker's warnings.

    Normalises in place: unlimited pids (0 or negative) become 0; what the host
    cannot enforce is dropped with Docker's warning: a kernel memory limit (no
    kernel since 5.16 enforces one, no runtime we drive still writes it) and a
    block I/O weight without the cgroup file for it (`blkio_weight` false).
    """
    warnings = []
    if request.kernel_memory:
        request.kernel_memory = 0
        warnings.append(KERNEL_MEMORY_DISCARDED)
    if request.blkio_weight > 0 and not blkio_weight:
        request.blkio_weight = 0
        warnings.append(BLKIO_WEIGHT_DISCARDED)
    if request.pids_limit is not None and request.pids_limit < 0:
        request.pids_limit = 0
    probe = HostConfig(
        blkio_weight=request.blkio_weight,
        cpu_shares=request.cpu_shares,
        cpu_period=request.cpu_period,
        cpu_quota=request.cpu_quota,
        cpu_realtime_period=request.cpu_realtime_period,
        cpu_realtime_runtime=request.cpu_realtime_runtime,
        cpuset_cpus=request.cpuset_cpus,
        cpuset_mems=request.cpuset_mems,
        memory=request.memory,
        memory_reservation=request.memory_reservation,
        memory_swap=request.memory_swap,
        nano_cpus=request.nano_cpus,
    )
    cfg.validate_resources(probe, ncpu, update=True)
    if request.restart_policy.name:
        cfg.restart_policy(request.restart_policy, auto_remove=False)
    return warnings


def merge(current: HostConfig, request: ContainerUpdate) -> HostConfig:
    """The container's HostConfig after the (validated) update; `current` is left as it is.

    Raises `Conflict` with moby's wording when the request clashes with what the
    container already has.
    """
    hc = schema.copy(current)
    if hc.memory and not hc.memory_swap:
        # Docker records twice the memory as the swap limit at create when none is
        # given (what the container runs with); the update rules compare against it.
        hc.memory_swap = hc.memory * 2
    if request.nano_cpus > 0 and hc.cpu_period > 0:
        raise Conflict(f"{_CONFLICTING} Nano CPUs cannot be updated as CPU Period {_ALREADY}")
    if request.nano_cpus > 0 and hc.cpu_quota > 0:
        raise Conflict(f"{_CONFLICTING} Nano CPUs cannot be updated as CPU Quota {_ALREADY}")
    if request.cpu_period > 0 and hc.nano_cpus > 0:
        raise Conflict(f"{_CONFLICTING} CPU Period cannot be updated as NanoCPUs {_ALREADY}")
    if request.cpu_quota > 0 and hc.nano_cpus > 0:
        raise Conflict(f"{_CONFLICTING} CPU Quota cannot be updated as NanoCPUs {_ALREADY}")
    for name in (
        "blkio_weight",
        "cpu_shares",
        "nano_cpus",
        "cpu_period",
        "cpu_quota",
        "cpuset_cpus",
        "cpuset_mems",
        "memory_reservation",
        "cpu_realtime_period",
        "cpu_realtime_runtime",
    ):
        value = getattr(request, name)
        if value:
            setattr(hc, name, value)
    if request.memory:
        # A container started without a swap limit has none to compare with: moby asks
        # for the swap limit in the same update then (or -1 for unlimited swap).
        if request.memory > hc.memory_swap and not request.memory_swap:
            raise Conflict(
                "Memory limit should be smaller than already set memoryswap limit, "
                "update the memoryswap at the same time"
            )
        hc.memory = request.memory
    if request.memory_swap:
        hc.memory_swap = request.memory_swap
    if request.pids_limit is not None:
        hc.pids_limit = request.pids_limit
    if request.restart_policy.name:
        if current.auto_remove and request.restart_policy.name != "no":
            raise Conflict(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
            )
        hc.restart_policy = cfg.restart_policy(request.restart_policy, auto_remove=False)
    return hc


def runtime_resources(hc: HostConfig, *, pids_touched: bool) -> dict[str, Any]:
    """OCI `LinuxResources` for `runtime update`: what `hc` limits, as `spec.resources` says.

    Devices and per-device block I/O throttles are not updatable (Docker neither);
    an absent (zero) value leaves the cgroup file alone. Unlimited pids must be
    written out (-1) when the update asks for them, or the old limit would stay.
    """
    full = spec.resources(_without_devices(hc))
    result: dict[str, Any] = {}
    for key in ("memory", "cpu"):
        if key in full:
            result[key] = full[key]
    if hc.blkio_weight:
        result["blockIO"] = {"weight": hc.blkio_weight}
    if hc.pids_limit and hc.pids_limit > 0:
        result["pids"] = {"limit": hc.pids_limit}
    elif pids_touched:
        result["pids"] = {"limit": -1}
    return result


# What a cgroup file holds when nothing limits it. `runtime update` leaves a file alone
# when given 0, so putting back "no limit" takes these values.
_UNLIMITED: dict[tuple[str, str], Any] = {
    ("memory", "limit"): -1,
    ("memory", "swap"): -1,
    ("memory", "reservation"): -1,
    ("cpu", "shares"): 1024,
    ("cpu", "quota"): -1,
    ("cpu", "period"): 100_000,
}


def restore_resources(old: HostConfig, new: HostConfig, *, cpus: str, mems: str) -> dict[str, Any]:
    """What puts `old` back after `new` was (perhaps partly) written: `old`'s values, and
    no limit where `old` had none but `new` set one (`cpus`/`mems`: the whole host)."""
    restored = runtime_resources(old, pids_touched=True)
    unlimited = {**_UNLIMITED, ("cpu", "cpus"): cpus, ("cpu", "mems"): mems}
    for section, values in runtime_resources(new, pids_touched=False).items():
        for key in values:
            default = unlimited.get((section, key))
            if default is not None and key not in restored.get(section, {}):
                restored.setdefault(section, {})[key] = default
    return restored


def _without_devices(hc: HostConfig) -> HostConfig:
    """`hc` without what `spec.resources` would look up on the host (device nodes)."""
    bare = schema.copy(hc)
    bare.devices = None
    bare.blkio_weight_device = None
    bare.blkio_device_read_bps = None
    bare.blkio_device_write_bps = None
    bare.blkio_device_read_i_ops = None
    bare.blkio_device_write_i_ops = None
    bare.privileged = False
    return bare
