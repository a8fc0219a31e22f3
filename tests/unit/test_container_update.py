"""`docker update`'s rules: what a request may change, what it clashes with, what reaches
the runtime, and what puts the old limits back."""

from __future__ import annotations

import pytest

from dockyard.containers.schema import HostConfig, RestartPolicy
from dockyard.containers.update import (
    BLKIO_WEIGHT_DISCARDED,
    KERNEL_MEMORY_DISCARDED,
    ContainerUpdate,
    merge,
    restore_resources,
    runtime_resources,
    validate,
)
from dockyard.errors import Conflict, InvalidArgument

MiB = 1 << 20


def test_the_body_decodes_with_go_rules() -> None:
    request = ContainerUpdate.decode(
        {"memory": 64 * MiB, "MemorySwap": -1, "restartPolicy": {"name": "always"}}
    )
    assert (request.memory, request.memory_swap, request.restart_policy.name) == (
        64 * MiB,
        -1,
        "always",
    )


def test_zero_fields_keep_the_container_setting() -> None:
    current = HostConfig(memory=64 * MiB, cpu_shares=512, cpuset_cpus="0", pids_limit=10)
    new = merge(current, ContainerUpdate(cpu_shares=256))
    assert (new.memory, new.cpu_shares, new.cpuset_cpus, new.pids_limit) == (
        64 * MiB,
        256,
        "0",
        10,
    )
    assert current.cpu_shares == 512  # the record is not touched until the update is done


def test_memory_above_the_swap_limit_needs_the_swap_limit_too() -> None:
    created_with_memory = HostConfig(memory=64 * MiB)  # Docker's swap limit: twice that
    assert merge(created_with_memory, ContainerUpdate(memory=100 * MiB)).memory == 100 * MiB
    with pytest.raises(Conflict, match="update the memoryswap at the same time"):
        merge(created_with_memory, ContainerUpdate(memory=200 * MiB))
    unlimited = HostConfig()  # started without a swap limit
    with pytest.raises(Conflict, match="smaller than already set memoryswap limit"):
        merge(unlimited, ContainerUpdate(memory=32 * MiB))
    new = merge(unlimited, ContainerUpdate(memory=32 * MiB, memory_swap=-1))
    assert (new.memory, new.memory_swap) == (32 * MiB, -1)


def test_nano_cpus_and_cfs_settings_exclude_each_other() -> None:
    with pytest.raises(Conflict, match="Nano CPUs cannot be updated as CPU Quota"):
        merge(HostConfig(cpu_quota=50_000), ContainerUpdate(nano_cpus=10**9))
    with pytest.raises(Conflict, match="Nano CPUs cannot be updated as CPU Period"):
        merge(HostConfig(cpu_period=50_000), ContainerUpdate(nano_cpus=10**9))
    with pytest.raises(Conflict, match="CPU Period cannot be updated as NanoCPUs"):
        merge(HostConfig(nano_cpus=10**9), ContainerUpdate(cpu_period=50_000))
    with pytest.raises(InvalidArgument, match="Nano CPUs and CPU Quota cannot both be set"):
        validate(ContainerUpdate(nano_cpus=10**9, cpu_quota=50_000), 2, blkio_weight=True)


def test_restart_policy() -> None:
    new = merge(HostConfig(), ContainerUpdate(restart_policy=RestartPolicy("on-failure", 3)))
    assert new.restart_policy == RestartPolicy("on-failure", 3)
    with pytest.raises(Conflict, match="AutoRemove is enabled"):
        merge(HostConfig(auto_remove=True), ContainerUpdate(restart_policy=RestartPolicy("always")))
    assert merge(HostConfig(auto_remove=True), ContainerUpdate(restart_policy=RestartPolicy("no")))
    with pytest.raises(InvalidArgument, match="invalid restart policy"):
        validate(ContainerUpdate(restart_policy=RestartPolicy("always", 2)), 2, blkio_weight=True)


def test_validation_warnings_and_normal_forms() -> None:
    request = ContainerUpdate(kernel_memory=8 * MiB, blkio_weight=300, pids_limit=-1)
    assert validate(request, 2, blkio_weight=False) == [
        KERNEL_MEMORY_DISCARDED,
        BLKIO_WEIGHT_DISCARDED,
    ]
    assert (request.kernel_memory, request.blkio_weight, request.pids_limit) == (0, 0, 0)
    # Swap alone is an update's right (the memory limit is the container's).
    assert validate(ContainerUpdate(memory_swap=256 * MiB), 2, blkio_weight=True) == []
    with pytest.raises(InvalidArgument, match="Minimum memory limit allowed is 6MB"):
        validate(ContainerUpdate(memory=MiB), 2, blkio_weight=True)
    with pytest.raises(InvalidArgument, match="Range of blkio weight is from 10 to 1000"):
        validate(ContainerUpdate(blkio_weight=5), 2, blkio_weight=True)


def test_runtime_resources() -> None:
    hc = HostConfig(memory=64 * MiB, nano_cpus=5 * 10**8, cpu_shares=512, pids_limit=20)
    assert runtime_resources(hc, pids_touched=False) == {
        "memory": {"limit": 64 * MiB, "swap": 128 * MiB},
        "cpu": {"period": 100_000, "quota": 50_000, "shares": 512},
        "pids": {"limit": 20},
    }
    # Unlimited pids asked for: written out, or the old limit would stay.
    assert runtime_resources(HostConfig(pids_limit=0), pids_touched=True) == {"pids": {"limit": -1}}
    assert runtime_resources(HostConfig(), pids_touched=False) == {}


def test_restoring_puts_back_no_limit_where_there_was_none() -> None:
    old = HostConfig(memory=64 * MiB)
    new = HostConfig(memory=10 * MiB, memory_swap=20 * MiB, cpu_shares=300, cpuset_cpus="1")
    assert restore_resources(old, new, cpus="0-1", mems="0") == {
        "memory": {"limit": 64 * MiB, "swap": 128 * MiB},
        "cpu": {"shares": 1024, "cpus": "0-1"},
        "pids": {"limit": -1},
    }
