"""The container record and its state machine.

Dockyard keeps a container's configuration in Docker's own model (`Config`
and `HostConfig` as the typed messages of `schema`, normalised and validated
at create), like moby does: it is what clients send, what inspect echoes
back, and what tools such as Ansible compare for idempotency. The record is
stored in that wire form. The runtime state is Dockyard's own.

States and transitions:

    created --start--> running --exit--> exited --start--> running
                         |  ^                 |
                    pause|  |unpause          +--remove--> (gone)
                         v  |
                        paused
    running --exit, restart policy says so--> restarting --> running
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from dockyard.containers.schema import ContainerConfig, EndpointSettings, HostConfig
from dockyard.images.oci import ZERO_TIME
from dockyard.volumes.mounts import MountPoint

CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
RESTARTING = "restarting"
REMOVING = "removing"
EXITED = "exited"
DEAD = "dead"


@dataclass
class State:
    status: str = CREATED
    pid: int = 0
    # The init's start time (clock ticks after boot): tells a reused pid apart when the
    # container is signalled without its runtime.
    pid_start: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    oom_killed: bool = False
    monitor_pid: int = 0
    monitor_start: int = 0
    restart_count: int = 0
    # Set by an explicit stop/kill so that restart policies leave the container down.
    stopped_by_user: bool = False
    # `State.Health` in Docker's JSON while the container has a healthcheck (containers/health.py).
    health: dict[str, Any] | None = None

    @property
    def running(self) -> bool:
        return self.status in (RUNNING, PAUSED, RESTARTING)


@dataclass
class Container:
    id: str
    name: str  # without the leading slash
    image_id: str
    created: str  # RFC 3339
    config: ContainerConfig  # normalised, image defaults merged in
    host_config: HostConfig  # normalised
    chain_id: str | None  # top layer of the image, the container's lower filesystem
    path: str  # executable, first of entrypoint + cmd
    args: list[str]
    state: State = field(default_factory=State)
    runtime: str = ""
    mounts: list[MountPoint] = field(default_factory=list)  # volumes, binds, tmpfs; sorted
    # Networks the container is attached to: name -> EndpointSettings as requested.
    networks: dict[str, EndpointSettings] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def tty(self) -> bool:
        return self.config.tty

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.labels or {})

    def to_json(self) -> str:
        data: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("config", "host_config", "networks", "state", "mounts")
        }
        data["config"] = self.config.to_wire()
        data["host_config"] = self.host_config.to_wire()
        data["networks"] = {name: s.to_wire() for name, s in self.networks.items()}
        data["state"] = asdict(self.state)
        data["mounts"] = [m.to_dict() for m in self.mounts]
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Container:
        data = json.loads(text)
        state = State(**data.pop("state"))
        mounts = [MountPoint.from_dict(m) for m in data.pop("mounts", [])]
        config = ContainerConfig.decode(data.pop("config"))
        host_config = HostConfig.decode(data.pop("host_config"))
        networks = {
            name: EndpointSettings.decode(s) for name, s in data.pop("networks", {}).items()
        }
        return cls(
            state=state,
            mounts=mounts,
            config=config,
            host_config=host_config,
            networks=networks,
            **data,
        )
