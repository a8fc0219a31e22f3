"""Docker's container model as typed messages: `Config`, `HostConfig`, `NetworkingConfig`.

A create request is decoded into these where it enters the API (Go's JSON
rules, see `dockyard.wire`): keys in any case, unknown keys dropped, a value
of the wrong JSON type refused. The services take and keep these objects;
`to_wire()` renders them back in Docker's field order for inspect, so what a
client sent is what it reads back: a list left unset stays `null`, a
capability stays spelled as given.

Field names and JSON keys are moby's (`api/types/container`,
`api/types/network`, `api/types/mount`) for API 1.45, and so are the integer
types: a plain `int` is Go's int64, the unsigned ones are marked (`UInt16`
...), so a number Go's decoder would refuse is refused here too.
"""

from __future__ import annotations

from typing import Any, TypeVar

from dockyard.errors import InvalidArgument
from dockyard.wire import Message, UInt16, UInt32, UInt64, WireError, wire


class StrSlice(list[str]):
    """Docker's `strslice.StrSlice`: a JSON string or a list of strings."""

    @classmethod
    def from_wire(cls, value: Any, path: str) -> StrSlice:
        if isinstance(value, str):
            return cls([value])
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return cls(value)
        raise WireError(f"json: cannot unmarshal into {path} of type strslice.StrSlice")


# -- Config ------------------------------------------------------------------


class HealthConfig(Message):
    """`Config.Healthcheck`; durations in nanoseconds."""

    test: list[str] | None = wire(default=None, omitempty=True)
    interval: int = wire(default=0, omitempty=True)
    timeout: int = wire(default=0, omitempty=True)
    start_period: int = wire(default=0, omitempty=True)
    start_interval: int = wire(default=0, omitempty=True)
    retries: int = wire(default=0, omitempty=True)


class ContainerConfig(Message):
    """`Config`: what is portable about a container (also an image's run configuration)."""

    hostname: str = wire(default="")
    domainname: str = wire(default="")
    user: str = wire(default="")
    attach_stdin: bool = wire(default=False)
    attach_stdout: bool = wire(default=False)
    attach_stderr: bool = wire(default=False)
    exposed_ports: dict[str, Any] | None = wire(default=None, omitempty=True)
    tty: bool = wire(default=False)
    open_stdin: bool = wire(default=False)
    stdin_once: bool = wire(default=False)
    env: list[str] | None = wire(default=None)
    cmd: StrSlice | None = wire(default=None)
    healthcheck: HealthConfig | None = wire(default=None, omitempty=True)
    args_escaped: bool = wire(default=False, omitempty=True)
    image: str = wire(default="")
    volumes: dict[str, Any] | None = wire(default=None)
    working_dir: str = wire(default="")
    entrypoint: StrSlice | None = wire(default=None)
    network_disabled: bool = wire(default=False, omitempty=True)
    mac_address: str = wire(default="", omitempty=True)  # deprecated in 1.44: per endpoint
    on_build: list[str] | None = wire("OnBuild", default=None)
    labels: dict[str, str] | None = wire(default=None)
    stop_signal: str = wire(default="", omitempty=True)
    stop_timeout: int | None = wire(default=None, omitempty=True)
    shell: StrSlice | None = wire(default=None, omitempty=True)


# -- HostConfig --------------------------------------------------------------


class LogConfig(Message):
    type: str = wire(default="")
    config: dict[str, str] | None = wire(default=None)


class RestartPolicy(Message):
    name: str = wire(default="")
    maximum_retry_count: int = wire(default=0)


class PortBinding(Message):
    host_ip: str = wire("HostIp", default="")
    host_port: str = wire(default="")


class WeightDevice(Message):
    path: str = wire(default="")
    weight: UInt16 = wire(default=0)


class ThrottleDevice(Message):
    path: str = wire(default="")
    rate: UInt64 = wire(default=0)


class DeviceMapping(Message):
    path_on_host: str = wire(default="")
    path_in_container: str = wire(default="")
    cgroup_permissions: str = wire(default="")


class DeviceRequest(Message):
    driver: str = wire(default="")
    count: int = wire(default=0)
    device_ids: list[str] | None = wire("DeviceIDs", default=None)
    capabilities: list[list[str]] | None = wire(default=None)
    options: dict[str, str] | None = wire(default=None)


class Ulimit(Message):
    name: str = wire(default="")
    hard: int = wire(default=0)
    soft: int = wire(default=0)


class BindOptions(Message):
    propagation: str = wire(default="", omitempty=True)
    non_recursive: bool = wire(default=False, omitempty=True)
    create_mountpoint: bool = wire(default=False, omitempty=True)
    read_only_non_recursive: bool = wire(default=False, omitempty=True)
    read_only_force_recursive: bool = wire(default=False, omitempty=True)


class Driver(Message):
    name: str = wire(default="", omitempty=True)
    options: dict[str, str] | None = wire(default=None, omitempty=True)


class VolumeOptions(Message):
    no_copy: bool = wire(default=False, omitempty=True)
    labels: dict[str, str] | None = wire(default=None, omitempty=True)
    subpath: str = wire(default="", omitempty=True)
    driver_config: Driver | None = wire(default=None, omitempty=True)


class TmpfsOptions(Message):
    size_bytes: int = wire(default=0, omitempty=True)
    mode: UInt32 = wire(default=0, omitempty=True)  # Go's os.FileMode
    options: list[list[str]] | None = wire(default=None, omitempty=True)


class Mount(Message):
    """One `HostConfig.Mounts` entry (`--mount`)."""

    type: str = wire(default="", omitempty=True)
    source: str = wire(default="", omitempty=True)
    target: str = wire(default="", omitempty=True)
    read_only: bool = wire(default=False, omitempty=True)
    consistency: str = wire(default="", omitempty=True)
    bind_options: BindOptions | None = wire(default=None, omitempty=True)
    volume_options: VolumeOptions | None = wire(default=None, omitempty=True)
    tmpfs_options: TmpfsOptions | None = wire(default=None, omitempty=True)


class HostConfig(Message):
    """`HostConfig`: what is not portable (resources, mounts, namespaces, security)."""

    binds: list[str] | None = wire(default=None)
    container_id_file: str = wire("ContainerIDFile", default="")
    log_config: LogConfig = wire(default_factory=LogConfig)
    network_mode: str = wire(default="")
    port_bindings: dict[str, list[PortBinding] | None] | None = wire(default=None)
    restart_policy: RestartPolicy = wire(default_factory=RestartPolicy)
    auto_remove: bool = wire(default=False)
    volume_driver: str = wire(default="")
    volumes_from: list[str] | None = wire(default=None)
    console_size: list[UInt64] | None = wire(default=None)
    annotations: dict[str, str] | None = wire(default=None, omitempty=True)
    cap_add: StrSlice | None = wire(default=None)
    cap_drop: StrSlice | None = wire(default=None)
    cgroupns_mode: str = wire(default="")
    dns: list[str] | None = wire(default=None)
    dns_options: list[str] | None = wire(default=None)
    dns_search: list[str] | None = wire(default=None)
    extra_hosts: list[str] | None = wire(default=None)
    group_add: list[str] | None = wire(default=None)
    ipc_mode: str = wire(default="")
    cgroup: str = wire(default="")
    links: list[str] | None = wire(default=None)
    oom_score_adj: int = wire(default=0)
    pid_mode: str = wire(default="")
    privileged: bool = wire(default=False)
    publish_all_ports: bool = wire(default=False)
    readonly_rootfs: bool = wire(default=False)
    security_opt: list[str] | None = wire(default=None)
    storage_opt: dict[str, str] | None = wire(default=None, omitempty=True)
    tmpfs: dict[str, str] | None = wire(default=None, omitempty=True)
    uts_mode: str = wire("UTSMode", default="")
    userns_mode: str = wire(default="")
    shm_size: int = wire(default=0)
    sysctls: dict[str, str] | None = wire(default=None, omitempty=True)
    runtime: str = wire(default="", omitempty=True)
    isolation: str = wire(default="")
    # Resources
    cpu_shares: int = wire(default=0)
    memory: int = wire(default=0)
    nano_cpus: int = wire(default=0)
    cgroup_parent: str = wire(default="")
    blkio_weight: UInt16 = wire(default=0)
    blkio_weight_device: list[WeightDevice] | None = wire(default=None)
    blkio_device_read_bps: list[ThrottleDevice] | None = wire(default=None)
    blkio_device_write_bps: list[ThrottleDevice] | None = wire(default=None)
    blkio_device_read_i_ops: list[ThrottleDevice] | None = wire("BlkioDeviceReadIOps", default=None)
    blkio_device_write_i_ops: list[ThrottleDevice] | None = wire(
        "BlkioDeviceWriteIOps", default=None
    )
    cpu_period: int = wire(default=0)
    cpu_quota: int = wire(default=0)
    cpu_realtime_period: int = wire(default=0)
    cpu_realtime_runtime: int = wire(default=0)
    cpuset_cpus: str = wire(default="")
    cpuset_mems: str = wire(default="")
    devices: list[DeviceMapping] | None = wire(default=None)
    device_cgroup_rules: list[str] | None = wire(default=None)
    device_requests: list[DeviceRequest] | None = wire(default=None)
    kernel_memory: int = wire(default=0, omitempty=True)
    kernel_memory_tcp: int = wire("KernelMemoryTCP", default=0, omitempty=True)
    memory_reservation: int = wire(default=0)
    memory_swap: int = wire(default=0)
    memory_swappiness: int | None = wire(default=None)
    oom_kill_disable: bool | None = wire(default=None)
    pids_limit: int | None = wire(default=None)
    ulimits: list[Ulimit] | None = wire(default=None)
    cpu_count: int = wire(default=0)
    cpu_percent: int = wire(default=0)
    io_maximum_i_ops: UInt64 = wire("IOMaximumIOps", default=0)
    io_maximum_bandwidth: UInt64 = wire("IOMaximumBandwidth", default=0)
    # Mounts and paths
    mounts: list[Mount] | None = wire(default=None, omitempty=True)
    masked_paths: list[str] | None = wire(default=None)
    readonly_paths: list[str] | None = wire(default=None)
    init: bool | None = wire(default=None, omitempty=True)


# -- NetworkingConfig ----------------------------------------------------------


class EndpointIPAMConfig(Message):
    ipv4_address: str = wire("IPv4Address", default="", omitempty=True)
    ipv6_address: str = wire("IPv6Address", default="", omitempty=True)
    link_local_ips: list[str] | None = wire("LinkLocalIPs", default=None, omitempty=True)


class EndpointSettings(Message):
    """A container's settings on one network, as requested (and echoed by inspect)."""

    ipam_config: EndpointIPAMConfig | None = wire("IPAMConfig", default=None)
    links: list[str] | None = wire(default=None)
    aliases: list[str] | None = wire(default=None)
    mac_address: str = wire(default="")
    driver_opts: dict[str, str] | None = wire(default=None)
    gw_priority: int = wire(default=0)
    network_id: str = wire("NetworkID", default="")


class NetworkingConfig(Message):
    endpoints_config: dict[str, EndpointSettings | None] | None = wire(default=None)


# -- the create request ---------------------------------------------------------


class ContainerCreate(ContainerConfig):
    """`POST /containers/create`'s body: a Config with HostConfig and NetworkingConfig."""

    host_config: HostConfig = wire(default_factory=HostConfig)
    networking_config: NetworkingConfig = wire(default_factory=NetworkingConfig)

    def config(self) -> ContainerConfig:
        """The `Config` part alone."""
        values = {name: getattr(self, name) for name in ContainerConfig.__dataclass_fields__}
        return ContainerConfig(**values)


M = TypeVar("M", bound=Message)


def decode(cls: type[M], data: Any, what: str = "") -> M:
    """`data` as message `cls`; a document that does not fit is a 400 with Go's message."""
    try:
        return cls.decode(data, what)
    except WireError as e:
        raise InvalidArgument(f"invalid JSON: {e}") from None


def copy(message: M) -> M:
    """A deep copy (through the wire form: every field a fresh object)."""
    return type(message).decode(message.to_wire())
