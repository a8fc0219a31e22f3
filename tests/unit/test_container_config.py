"""Create-request validation and the merge of request over image config."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard.containers import config as cfg
from dockyard.containers import schema
from dockyard.containers.schema import ContainerConfig, ContainerCreate, HostConfig
from dockyard.errors import InvalidArgument

IMAGE = {
    "Env": ["PATH=/usr/bin:/bin", "LANG=C"],
    "Cmd": ["sh"],
    "Entrypoint": None,
    "WorkingDir": "/srv",
    "Labels": {"from": "image", "shared": "image"},
    "ExposedPorts": {"80/tcp": {}},
    "User": "app",
}


def effective(request: dict[str, Any], image: dict[str, Any] | None = None) -> cfg.Effective:
    return cfg.effective(
        schema.decode(ContainerCreate, {"Image": "x", **request}),
        schema.decode(ContainerConfig, IMAGE if image is None else image),
        image_name="x",
        ncpu=2,
        runtimes=("runc", "crun"),
        default_runtime="runc",
    )


def test_image_defaults_fill_what_the_request_leaves_out() -> None:
    result = effective({})
    assert (result.path, result.args) == ("sh", [])
    assert result.config.working_dir == "/srv"
    assert result.config.user == "app"
    assert result.config.exposed_ports == {"80/tcp": {}}
    assert result.host_config.network_mode == "bridge"
    assert result.host_config.restart_policy.to_wire() == {"Name": "no", "MaximumRetryCount": 0}
    assert result.host_config.log_config.type == "json-file"
    assert result.host_config.shm_size == 64 << 20
    assert result.host_config.runtime == "runc"


def test_request_env_and_labels_win_per_key() -> None:
    result = effective({"Env": ["LANG=fr", "NEW=1"], "Labels": {"shared": "request"}})
    assert result.config.env == ["PATH=/usr/bin:/bin", "LANG=fr", "NEW=1"]
    assert result.config.labels == {"from": "image", "shared": "request"}


def test_default_path_is_added_when_the_image_has_none() -> None:
    result = effective({}, {"Cmd": ["true"]})
    assert result.config.env[0].startswith("PATH=/usr/local/sbin")


def test_entrypoint_override_clears_the_image_cmd() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["--default"]}
    assert (effective({}, image).path, effective({}, image).args) == ("/entry", ["--default"])
    overridden = effective({"Entrypoint": ["/bin/sh"]}, image)
    assert (overridden.path, overridden.args) == ("/bin/sh", [])
    with_cmd = effective({"Entrypoint": "/bin/sh", "Cmd": ["-c", "echo"]}, image)
    assert (with_cmd.path, with_cmd.args) == ("/bin/sh", ["-c", "echo"])
    cmd_only = effective({"Cmd": ["x"]}, image)
    assert (cmd_only.path, cmd_only.args) == ("/entry", ["x"])


def test_no_command_at_all_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="No command specified"):
        effective({}, {})


@pytest.mark.parametrize(
    ("host_config", "message"),
    [
        ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
        ({"Memory": "64m"}, "invalid JSON: json: cannot unmarshal string"),
        ({"Memory": 64 << 20, "MemorySwap": 1 << 20}, "memoryswap limit should be larger"),
        ({"NanoCpus": 3_000_000_000}, "Range of CPUs is from 0.01 to 2.00"),
        ({"NanoCpus": 1_000_000_000, "CpuQuota": 50000}, "Nano CPUs and CPU Quota"),
        ({"RestartPolicy": {"Name": "sometimes"}}, "unknown policy 'sometimes'"),
        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}, "only be used with"),
        ({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}}, "cannot be negative"),
        ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "AutoRemove"),
        ({"CapAdd": ["NOT_A_CAP"]}, "unknown capability"),
        ({"SecurityOpt": ["apparmor"]}, "invalid --security-opt"),
        ({"LogConfig": {"Type": "asdf"}}, "no log driver named 'asdf' is registered"),
        ({"Runtime": "kata"}, "unknown or invalid runtime name: kata"),
        ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}, "soft limit must be"),
        ({"ShmSize": -1}, "SHM size can not be less than 0"),
        ({"OomScoreAdj": 5000}, "range for oom score adj"),
    ],
)
def test_invalid_host_config_is_refused(host_config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        effective({"HostConfig": host_config})


def test_network_modes_pass_through_for_the_network_layer() -> None:
    # Whether a named network exists is checked at start, as moby does (a 404 at
    # create would make the docker CLI try to pull an image).
    for mode in ("appnet", "container:abc", "host", "none"):
        assert effective({"HostConfig": {"NetworkMode": mode}}).host_config.network_mode == mode


def test_relative_workdir_and_bad_stop_signal_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="needs to be an absolute path"):
        effective({"WorkingDir": "srv"})
    with pytest.raises(InvalidArgument, match="Invalid signal"):
        effective({"StopSignal": "SIGNOPE"})


def test_pids_limit_zero_and_negative_mean_unlimited() -> None:
    assert effective({"HostConfig": {"PidsLimit": 0}}).host_config.pids_limit is None
    assert effective({"HostConfig": {"PidsLimit": -1}}).host_config.pids_limit is None
    assert effective({"HostConfig": {"PidsLimit": 50}}).host_config.pids_limit == 50


def hc(**fields: Any) -> HostConfig:
    return schema.decode(HostConfig, fields)


def test_capability_set_follows_add_and_drop() -> None:
    default = cfg.capabilities(hc())
    assert len(default) == 14 and "CAP_NET_RAW" in default
    assert "CAP_NET_RAW" not in cfg.capabilities(hc(CapDrop=["net_raw"]))
    assert "CAP_SYS_ADMIN" in cfg.capabilities(hc(CapAdd=["SYS_ADMIN"]))
    assert cfg.capabilities(hc(CapDrop=["ALL"], CapAdd=["CHOWN"])) == ["CAP_CHOWN"]
    # "all" is what the daemon may grant: the capabilities of its own bounding set
    assert set(cfg.capabilities(hc(Privileged=True))) == set(cfg.grantable())
    assert set(cfg.grantable()) <= set(cfg.ALL_CAPABILITIES)
    assert set(cfg.withheld()) == set(cfg.ALL_CAPABILITIES) - set(cfg.grantable())


def test_capabilities_stay_spelled_as_given() -> None:
    result = effective({"HostConfig": {"CapAdd": ["SYS_ADMIN"], "CapDrop": ["net_raw"]}})
    assert result.host_config.to_wire()["CapAdd"] == ["SYS_ADMIN"]
    assert result.host_config.to_wire()["CapDrop"] == ["net_raw"]


def test_unset_lists_render_as_null_and_given_ones_as_given() -> None:
    unset = effective({}).host_config.to_wire()
    assert unset["Dns"] is None and unset["Binds"] is None and unset["ExtraHosts"] is None
    assert effective({"HostConfig": {"Dns": []}}).host_config.to_wire()["Dns"] == []


def test_security_options() -> None:
    assert cfg.no_new_privileges(hc(SecurityOpt=["no-new-privileges"]))
    assert cfg.no_new_privileges(hc(SecurityOpt=["no-new-privileges:true"]))
    assert not cfg.no_new_privileges(hc(SecurityOpt=["no-new-privileges=false"]))
    assert cfg.security_option(hc(SecurityOpt=["seccomp=unconfined"]), "seccomp") == "unconfined"


def test_an_empty_entrypoint_means_none_not_the_images() -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["--default"]}
    result = effective({"Entrypoint": [""], "Cmd": ["echo", "hi"]}, image)
    assert (result.path, result.args) == ("echo", ["hi"])
    assert result.config.entrypoint is None


def test_entries_without_a_value_stay_in_config_but_not_in_the_process() -> None:
    result = effective({"Env": ["UNSET", "SET=1"]})
    assert "UNSET" in (result.config.env or [])
    assert cfg.process_env(result.config.env or []) == ["PATH=/usr/bin:/bin", "LANG=C", "SET=1"]


@pytest.mark.parametrize(
    ("host_config", "message"),
    [
        ({"Isolation": "hyperv"}, "invalid isolation: hyperv on linux"),
        (
            {"DeviceRequests": [{"Count": -1, "Capabilities": [["gpu"]]}]},
            'could not select device driver "" with capabilities: [[gpu]]',
        ),
        ({"IpcMode": "container:"}, "invalid IpcMode: container:"),
        ({"CpuRealtimeRuntime": 2000, "CpuRealtimePeriod": 1000}, "cpu-rt-runtime cannot be"),
    ],
)
def test_more_refusals(host_config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument) as failure:
        effective({"HostConfig": host_config})
    assert message in failure.value.message


def test_namespaces_of_another_container_are_accepted() -> None:
    result = effective({"HostConfig": {"PidMode": "container:db", "IpcMode": "container:db"}})
    assert (result.host_config.pid_mode, result.host_config.ipc_mode) == (
        "container:db",
        "container:db",
    )
