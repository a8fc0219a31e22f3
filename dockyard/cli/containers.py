"""Container commands: run, create, start, stop, ps, logs, exec, ... (docker's flags)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from dockyard import detachkeys
from dockyard.cli import terminal
from dockyard.cli.client import APIError, Client
from dockyard.cli.main import Context, fail, pass_context
from dockyard.cli.output import print_rows, show
from dockyard.units import UnitError, ago, parse_cpus, parse_duration, parse_size, read_env_file

RUN_OPTIONS = [
    click.option("-d", "--detach", is_flag=True, help="Run in the background, print the ID."),
    click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits."),
    click.option("--name", help="Container name."),
    click.option("-e", "--env", multiple=True, help="Set an environment variable."),
    click.option("--env-file", multiple=True, help="Read environment variables from a file."),
    click.option("-w", "--workdir", help="Working directory inside the container."),
    click.option("-u", "--user", help="User (name|uid[:group|gid])."),
    click.option("--entrypoint", help="Override the image's entrypoint."),
    click.option("-h", "--hostname", help="Container host name."),
    click.option("-m", "--memory", help="Memory limit (e.g. 64m)."),
    click.option("--memory-swap", help="Memory plus swap limit; -1 for unlimited swap."),
    click.option("--memory-reservation", help="Memory soft limit."),
    click.option("--cpus", help="Number of CPUs (e.g. 0.5)."),
    click.option("--cpu-shares", "-c", type=int, help="CPU shares (relative weight)."),
    click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)."),
    click.option("--pids-limit", type=int, help="Maximum number of processes (-1 unlimited)."),
    click.option("--restart", default="no", help="no | on-failure[:N] | always | unless-stopped"),
    click.option("-l", "--label", multiple=True, help="Set metadata (key=value)."),
    click.option("--init", is_flag=True, help="Run an init inside the container (tini)."),
    click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only."),
    click.option("--cap-add", multiple=True, help="Add a Linux capability."),
    click.option("--cap-drop", multiple=True, help="Drop a Linux capability."),
    click.option(
        "--security-opt", multiple=True, help="Security option (no-new-privileges, seccomp=...)."
    ),
    click.option("--privileged", is_flag=True, help="Give extended privileges."),
    click.option("--network", "--net", "network", help="bridge | host | none | NETWORK"),
    click.option("--network-alias", multiple=True, help="Network-scoped alias."),
    click.option("--ip", help="IPv4 address on the network (e.g. 172.30.100.104)."),
    click.option("--ip6", help="IPv6 address on the network (e.g. 2001:db8::33)."),
    click.option("--mac-address", help="MAC address on the network (e.g. 92:d0:c6:0a:29:33)."),
    click.option("--link-local-ip", multiple=True, help="IPv4/IPv6 link-local address."),
    click.option("--link", multiple=True, help="Add a link to another container (name:alias)."),
    click.option("-p", "--publish", multiple=True, help="Publish a port ([ip:][hostPort:]port)."),
    click.option("-P", "--publish-all", is_flag=True, help="Publish all exposed ports."),
    click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open."),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY."),
    click.option("--detach-keys", help="Key sequence for detaching (default ctrl-p,ctrl-q)."),
    click.option("--stop-signal", help="Signal to stop the container."),
    click.option("--stop-timeout", type=int, help="Seconds to wait before killing on stop."),
    click.option("--ulimit", multiple=True, help="Ulimit (nofile=1024:2048)."),
    click.option("--dns", multiple=True, help="DNS server."),
    click.option("--dns-search", multiple=True, help="DNS search domain."),
    click.option("--dns-option", multiple=True, help="DNS option."),
    click.option("--add-host", multiple=True, help="Add a host-to-IP mapping (host:ip)."),
    click.option("--runtime", help="OCI runtime for this container (crun, runc)."),
    click.option("--group-add", multiple=True, help="Additional groups to join."),
    click.option("--shm-size", help="Size of /dev/shm."),
    click.option("--log-driver", help="Logging driver."),
    click.option("--log-opt", multiple=True, help="Log driver option."),
    click.option("--expose", multiple=True, help="Expose a port."),
    click.option("--pid", help="PID namespace (host)."),
    click.option("--ipc", help="IPC namespace (host, private, shareable)."),
    click.option("--uts", help="UTS namespace (host)."),
    click.option("--device", multiple=True, help="Add a host device (host[:container[:rwm]])."),
    click.option("--sysctl", multiple=True, help="Namespaced kernel parameter (key=value)."),
    click.option("--oom-kill-disable", is_flag=True, help="Disable the OOM killer."),
    click.option("--oom-score-adj", type=int, help="OOM score adjustment."),
    click.option(
        "-v", "--volume", multiple=True, help="Bind mount or volume (SRC:DST[:MODE], or DST)."
    ),
    click.option("--mount", multiple=True, help="Mount (type=bind|volume|tmpfs,src=,dst=,...)."),
    click.option("--tmpfs", multiple=True, help="tmpfs mount (DST[:OPTIONS])."),
    click.option("--volumes-from", multiple=True, help="Mount the volumes of a container."),
    click.option("--volume-driver", help="Volume driver for the container's volumes."),
    click.option("--health-cmd", help="Command to run to check health (run by /bin/sh -c)."),
    click.option("--health-interval", help="Time between running the check (e.g. 30s)."),
    click.option("--health-timeout", help="Maximum time to allow one check to run."),
    click.option("--health-retries", type=int, help="Failures in a row that make it unhealthy."),
    click.option(
        "--health-start-period", help="Start period: failures in it do not count (e.g. 1m)."
    ),
    click.option("--health-start-interval", help="Time between checks during the start period."),
    click.option(
        "--no-healthcheck", is_flag=True, help="Disable any container-specified HEALTHCHECK."
    ),
]


def run_options(f: Any) -> Any:
    for option in reversed(RUN_OPTIONS):
        f = option(f)
    return f


def _size(value: str | None, flag: str) -> int:
    if value is None:
        return 0
    if value == "-1":
        return -1
    try:
        return parse_size(value)
    except UnitError as e:
        raise click.UsageError(f'invalid argument "{value}" for "{flag}" flag: {e}') from None


def _detach_keys(text: str | None) -> tuple[dict[str, str], bytes]:
    """The attach parameter and the byte sequence of `--detach-keys` (docker's check)."""
    if not text:
        return {}, detachkeys.DEFAULT
    try:
        return {"detachKeys": text}, detachkeys.parse(text)
    except detachkeys.InvalidKeys as e:
        raise click.UsageError(f"invalid detach keys ({text}): {e}") from None


def _restart_policy(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    if count and not count.isdigit():
        raise click.UsageError(f"invalid restart policy format: {text}")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def _ulimits(values: tuple[str, ...]) -> list[dict[str, Any]]:
    result = []
    for value in values:
        name, _, limits = value.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            result.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
        except ValueError:
            raise click.UsageError(f"invalid ulimit argument: {value}") from None
    return result


def _devices(values: tuple[str, ...]) -> list[dict[str, str]]:
    devices = []
    for value in values:
        parts = value.split(":")
        host = parts[0]
        inside = parts[1] if len(parts) > 1 else host
        perms = parts[2] if len(parts) > 2 else "rwm"
        devices.append({"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms})
    return devices


def _security_opts(values: tuple[str, ...]) -> list[str] | None:
    """`seccomp=FILE` sends the profile's JSON, read here, as the docker CLI does."""
    out = []
    for option in values:
        key, sep, value = option.partition("=")
        if not sep:
            key, sep, value = option.partition(":")
        if key == "seccomp" and value not in ("", "builtin", "unconfined"):
            try:
                with open(value, encoding="utf-8") as f:
                    profile = json.load(f)
            except OSError as e:
                raise click.UsageError(f"opening seccomp profile ({value}) failed: {e}") from None
            except ValueError as e:
                raise click.UsageError(
                    f"compacting json for seccomp profile ({value}) failed: {e}"
                ) from None
            option = "seccomp=" + json.dumps(profile, separators=(",", ":"))
        out.append(option)
    return out or None


def create_body(image: str, command: tuple[str, ...], o: dict[str, Any]) -> dict[str, Any]:
    from dockyard.cli import mountflags

    try:
        volumes, binds = mountflags.volume_flags(o["volume"])
        mounts = [mountflags.mount_flag(m) for m in o["mount"]]
    except mountflags.MountFlagError as e:
        raise click.UsageError(f"invalid argument for --mount flag: {e}") from None
    env = []
    for path in o["env_file"]:
        env += read_env_file(path)
    env += list(o["env"])
    try:
        nano_cpus = parse_cpus(o["cpus"]) if o["cpus"] else 0
        stop_timeout = o["stop_timeout"]
    except UnitError as e:
        raise click.UsageError(str(e)) from None
    labels = {}
    for label in o["label"]:
        key, _, value = label.partition("=")
        labels[key] = value
    interactive = o["interactive"]
    attach = not o["detach"]
    host_config: dict[str, Any] = {
        "AutoRemove": o["auto_remove"],
        "NetworkMode": o["network"] or "default",
        "RestartPolicy": _restart_policy(o["restart"]),
        "Memory": _size(o["memory"], "-m, --memory"),
        "MemorySwap": _size(o["memory_swap"], "--memory-swap"),
        "MemoryReservation": _size(o["memory_reservation"], "--memory-reservation"),
        "NanoCpus": nano_cpus,
        "CpuShares": o["cpu_shares"] or 0,
        "CpusetCpus": o["cpuset_cpus"] or "",
        "PidsLimit": o["pids_limit"],
        "Init": True if o["init"] else None,
        "ReadonlyRootfs": o["read_only"],
        "CapAdd": list(o["cap_add"]) or None,
        "CapDrop": list(o["cap_drop"]) or None,
        "SecurityOpt": _security_opts(o["security_opt"]),
        "Privileged": o["privileged"],
        "Ulimits": _ulimits(o["ulimit"]),
        "Dns": list(o["dns"]),
        "DnsSearch": list(o["dns_search"]),
        "DnsOptions": list(o["dns_option"]),
        "ExtraHosts": list(o["add_host"]) or None,
        "Runtime": o["runtime"] or "",
        "GroupAdd": list(o["group_add"]) or None,
        "ShmSize": _size(o["shm_size"], "--shm-size"),
        "LogConfig": {
            "Type": o["log_driver"] or "",
            "Config": dict(opt.partition("=")[::2] for opt in o["log_opt"]),
        },
        "PidMode": o["pid"] or "",
        "IpcMode": o["ipc"] or "",
        "UTSMode": o["uts"] or "",
        "Devices": _devices(o["device"]),
        "Sysctls": dict(s.partition("=")[::2] for s in o["sysctl"]) or None,
        "OomKillDisable": o["oom_kill_disable"] or None,
        "OomScoreAdj": o["oom_score_adj"] or 0,
        "Binds": binds or None,
        "Mounts": mounts or None,
        "Tmpfs": mountflags.tmpfs_flags(o["tmpfs"]) or None,
        "VolumesFrom": list(o["volumes_from"]) or None,
        "VolumeDriver": o["volume_driver"] or "",
        "PortBindings": port_bindings(o["publish"]),
        "PublishAllPorts": o["publish_all"],
        "Links": list(o["link"]) or None,
    }
    body: dict[str, Any] = {
        "Image": image,
        "Cmd": list(command) or None,
        "Env": env,
        "Labels": labels,
        "Hostname": o["hostname"] or "",
        "User": o["user"] or "",
        "WorkingDir": o["workdir"] or "",
        "Tty": o["tty"],
        "OpenStdin": interactive,
        "StdinOnce": interactive and attach,
        "AttachStdin": interactive and attach,
        "AttachStdout": attach,
        "AttachStderr": attach,
        "ExposedPorts": {
            **{p if "/" in p else p + "/tcp": {} for p in o["expose"]},
            **{port: {} for port in host_config["PortBindings"]},
        },
        "Volumes": volumes,
        "HostConfig": host_config,
    }
    network = o["network"] or "default"
    settings = endpoint_settings(
        o["network_alias"], o["ip"], o["ip6"], o["link_local_ip"], o["mac_address"]
    )
    if o["link"] and network not in ("default", "bridge", "host", "none"):
        # On a user-defined network a link is a DNS alias of the endpoint (Docker's CLI).
        settings["Links"] = list(o["link"])
    if settings:
        name = "bridge" if network == "default" else network
        body["NetworkingConfig"] = {"EndpointsConfig": {name: settings}}
    if o["entrypoint"] is not None:
        body["Entrypoint"] = [o["entrypoint"]] if o["entrypoint"] else []
    if o["stop_signal"]:
        body["StopSignal"] = o["stop_signal"]
    if stop_timeout is not None:
        body["StopTimeout"] = stop_timeout
    healthcheck = _healthcheck(o)
    if healthcheck is not None:
        body["Healthcheck"] = healthcheck
    return body


def _healthcheck(o: dict[str, Any]) -> dict[str, Any] | None:
    """`Healthcheck` from the --health-* flags, as the docker CLI builds it (None: the
    image's stays)."""
    durations = {}
    for flag, key in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start_period", "StartPeriod"),
        ("start_interval", "StartInterval"),
    ):
        text = o[f"health_{flag}"]
        if not text:
            continue
        dashed = "--health-" + flag.replace("_", "-")
        try:
            value = parse_duration(text.removeprefix("-"))
        except UnitError as e:
            raise click.UsageError(f'invalid argument "{text}" for "{dashed}" flag: {e}') from None
        if text.startswith("-") and value:
            raise click.UsageError(f"{dashed} cannot be negative")
        if value:
            durations[key] = value
    retries = o["health_retries"] or 0
    if retries < 0:
        raise click.UsageError("--health-retries cannot be negative")
    wanted = bool(o["health_cmd"] or durations or retries)
    if o["no_healthcheck"]:
        if wanted:
            raise click.UsageError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not wanted:
        return None
    config: dict[str, Any] = {}
    if o["health_cmd"]:
        config["Test"] = ["CMD-SHELL", o["health_cmd"]]
    config.update(durations)
    if retries:
        config["Retries"] = retries
    return config


def endpoint_settings(
    aliases: tuple[str, ...],
    ip: str | None,
    ip6: str | None,
    link_local: tuple[str, ...],
    mac: str | None,
) -> dict[str, Any]:
    """EndpointSettings from the per-network flags (--alias/--network-alias, --ip, --ip6,
    --link-local-ip, --mac-address); {} when none is given."""
    settings: dict[str, Any] = {}
    if aliases:
        settings["Aliases"] = list(aliases)
    ipam: dict[str, Any] = {}
    if ip:
        ipam["IPv4Address"] = ip
    if ip6:
        ipam["IPv6Address"] = ip6
    if link_local:
        ipam["LinkLocalIPs"] = list(link_local)
    if ipam:
        settings["IPAMConfig"] = ipam
    if mac:
        settings["MacAddress"] = mac
    return settings


def port_bindings(values: tuple[str, ...]) -> dict[str, list[dict[str, str]]]:
    """`-p [ip:][hostPort:]containerPort[/proto]` as Docker's PortBindings."""
    bindings: dict[str, list[dict[str, str]]] = {}
    for value in values:
        spec, _, proto = value.partition("/")
        parts = spec.rsplit(":", 2)
        host_ip, host_port = "", ""
        if len(parts) == 3:
            host_ip, host_port, container_port = parts
        elif len(parts) == 2:
            host_port, container_port = parts
        else:
            container_port = parts[0]
        host_ip = host_ip.strip("[]")
        first, sep, last = container_port.partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise click.UsageError(f"invalid containerPort: {container_port}")
        numbers = list(range(int(first), int(last) + 1)) if sep else [int(first)]
        host_first, host_sep, _ = host_port.partition("-")
        for offset, number in enumerate(numbers):
            port = host_port
            if sep and host_port and host_sep:
                port = str(int(host_first) + offset)
            key = f"{number}/{proto or 'tcp'}"
            bindings.setdefault(key, []).append({"HostIp": host_ip, "HostPort": port})
    return bindings


def _create(client: Client, image: str, command: tuple[str, ...], options: dict[str, Any]) -> str:
    body = create_body(image, command, options)
    params = {"name": options["name"]} if options["name"] else None
    try:
        result = client.json("POST", "/containers/create", params=params, body=body)
    except APIError as e:
        fail(f"dockyard: Error response from daemon: {e.message}.", 125)
        raise
    return str(result["Id"])


def _exit_code_for(message: str) -> int:
    lowered = message.lower()
    if any(
        s in lowered
        for s in (
            "executable file not found",
            "no such file or directory",
            "system cannot find the file specified",
        )
    ):
        return 127
    if "permission denied" in lowered or "is a directory" in lowered:
        return 126
    return 125


@click.command("run", context_settings={"allow_interspersed_args": False})
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_context
def run(ctx: Context, image: str, command: tuple[str, ...], **options: Any) -> None:
    """Create and run a new container from an image."""
    client = ctx.client
    container_id = _create(client, image, command, options)
    if options["detach"]:
        try:
            client.request("POST", f"/containers/{container_id}/start")
        except APIError as e:
            fail(f"dockyard: Error response from daemon: {e.message}.", _exit_code_for(e.message))
        click.echo(container_id)
        return
    tty = options["tty"]
    interactive = options["interactive"]
    keys_param, keys = _detach_keys(options["detach_keys"])
    sock, initial = client.hijack(
        f"/containers/{container_id}/attach",
        params={
            "stream": True,
            "stdout": True,
            "stderr": True,
            "stdin": interactive,
            **keys_param,
        },
    )
    waiter = client.open_wait(container_id, "removed" if options["auto_remove"] else "next-exit")
    try:
        client.request("POST", f"/containers/{container_id}/start")
    except APIError as e:
        sock.close()
        fail(f"dockyard: Error response from daemon: {e.message}.", _exit_code_for(e.message))

    def resize(height: int, width: int) -> None:
        try:
            client.request(
                "POST", f"/containers/{container_id}/resize", params={"h": height, "w": width}
            )
        except (APIError, OSError):
            pass

    with terminal.raw_mode(tty and interactive), terminal.on_resize(resize if tty else None):
        if tty:
            resize(*terminal.size())
        detached = terminal.relay(sock, initial, tty=tty, stdin=interactive, detach_keys=keys)
    if detached:
        sys.exit(0)  # docker run: detaching is a success, the container runs on
    sys.exit(waiter.result())


@click.command("create", context_settings={"allow_interspersed_args": False})
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@pass_context
def create(ctx: Context, image: str, command: tuple[str, ...], **options: Any) -> None:
    """Create a new container."""
    options["detach"] = True
    click.echo(_create(ctx.client, image, command, options))


def _each(ctx: Context, containers: tuple[str, ...], action: Any) -> None:
    """Apply `action` to every container at once (as docker does), report in order."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt(name: str) -> str | None:
        try:
            action(name)
            return None
        except APIError as e:
            return e.message

    with ThreadPoolExecutor(max_workers=min(16, len(containers))) as pool:
        errors = list(pool.map(attempt, containers))
    for name, error in zip(containers, errors, strict=True):
        if error is None:
            click.echo(name)
        else:
            click.echo(f"Error response from daemon: {error}", err=True)
    if any(errors):
        sys.exit(1)


@click.command("start")
@click.option("-a", "--attach", is_flag=True, help="Attach to the container's output.")
@click.option("-i", "--interactive", is_flag=True, help="Attach the container's stdin.")
@click.option("--detach-keys", help="Key sequence for detaching (default ctrl-p,ctrl-q).")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def start(
    ctx: Context,
    attach: bool,
    interactive: bool,
    detach_keys: str | None,
    containers: tuple[str, ...],
) -> None:
    """Start one or more stopped containers."""
    client = ctx.client
    if not attach and not interactive:

        def do(name: str) -> None:
            status, _ = client.request("POST", f"/containers/{name}/start", check=False)
            if status >= 400:
                client.request("POST", f"/containers/{name}/start")

        _each(ctx, containers, do)
        return
    name = containers[0]
    info = client.json("GET", f"/containers/{name}/json")
    tty = bool(info["Config"]["Tty"])
    keys_param, keys = _detach_keys(detach_keys)
    sock, initial = client.hijack(
        f"/containers/{info['Id']}/attach",
        params={
            "stream": True,
            "stdout": True,
            "stderr": True,
            "stdin": interactive,
            **keys_param,
        },
    )
    waiter = client.open_wait(info["Id"], "next-exit")
    client.request("POST", f"/containers/{info['Id']}/start")
    with terminal.raw_mode(tty and interactive):
        if terminal.relay(sock, initial, tty=tty, stdin=interactive, detach_keys=keys):
            sys.exit(0)
    sys.exit(waiter.result())


@click.command("stop")
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing.")
@click.option("-s", "--signal", help="Signal to send.")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def stop(
    ctx: Context, timeout: int | None, signal: str | None, containers: tuple[str, ...]
) -> None:
    """Stop one or more running containers."""
    params = {"t": timeout, "signal": signal}
    _each(
        ctx,
        containers,
        lambda n: ctx.client.request("POST", f"/containers/{n}/stop", params=params),
    )


@click.command("restart")
@click.option("-t", "--time", "timeout", type=int, help="Seconds to wait before killing.")
@click.option("-s", "--signal", help="Signal to send.")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def restart(
    ctx: Context, timeout: int | None, signal: str | None, containers: tuple[str, ...]
) -> None:
    """Restart one or more containers."""
    params = {"t": timeout, "signal": signal}
    _each(
        ctx,
        containers,
        lambda n: ctx.client.request("POST", f"/containers/{n}/restart", params=params),
    )


@click.command("kill")
@click.option("-s", "--signal", help="Signal to send (default KILL).")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def kill(ctx: Context, signal: str | None, containers: tuple[str, ...]) -> None:
    """Kill one or more running containers."""
    _each(
        ctx,
        containers,
        lambda n: ctx.client.request("POST", f"/containers/{n}/kill", params={"signal": signal}),
    )


@click.command("pause")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def pause(ctx: Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    _each(ctx, containers, lambda n: ctx.client.request("POST", f"/containers/{n}/pause"))


@click.command("unpause")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def unpause(ctx: Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    _each(ctx, containers, lambda n: ctx.client.request("POST", f"/containers/{n}/unpause"))


@click.command("rm")
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.option("-v", "--volumes", is_flag=True, help="Remove anonymous volumes.")
@click.option("-l", "--link", is_flag=True, help="Remove the specified link (/parent/alias).")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def rm(ctx: Context, force: bool, volumes: bool, link: bool, containers: tuple[str, ...]) -> None:
    """Remove one or more containers (or, with --link, links)."""
    _each(
        ctx,
        tuple(c.strip("/") for c in containers),
        lambda n: ctx.client.request(
            "DELETE", f"/containers/{n}", params={"force": force, "v": volumes, "link": link}
        ),
    )


@click.command("rename")
@click.argument("container")
@click.argument("new_name")
@pass_context
def rename(ctx: Context, container: str, new_name: str) -> None:
    """Rename a container."""
    ctx.client.request("POST", f"/containers/{container}/rename", params={"name": new_name})


@click.command("wait")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def wait(ctx: Context, containers: tuple[str, ...]) -> None:
    """Block until containers stop, then print their exit codes."""
    for name in containers:
        result = ctx.client.json("POST", f"/containers/{name}/wait")
        click.echo(result["StatusCode"])


_PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Status": "STATUS",
    "Ports": "PORTS",
    "Names": "NAMES",
    "State": "STATE",
    "Labels": "LABELS",
    "Size": "SIZE",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
}
_PS_DEFAULT = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _names(names: list[str], no_trunc: bool) -> list[str]:
    """A container's names as docker ps shows them: its own name, and with --no-trunc also
    the names links give it (`parent/alias`)."""
    names = [n[1:] if n.startswith("/") else n for n in names]
    if no_trunc:
        return names
    return [n for n in names if "/" not in n][:1] or names


def _ps_row(item: dict[str, Any], no_trunc: bool) -> dict[str, Any]:
    command = item["Command"] if no_trunc else _truncate(item["Command"], 20)
    ports = []
    for port in item.get("Ports") or []:
        if port.get("PublicPort"):
            ports.append(
                f"{port.get('IP', '')}:{port['PublicPort']}->{port['PrivatePort']}/{port['Type']}"
            )
        else:
            ports.append(f"{port['PrivatePort']}/{port['Type']}")
    return {
        "ID": item["Id"] if no_trunc else item["Id"][:12],
        "Image": item["Image"],
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(item["Created"])),
        "RunningFor": ago(item["Created"]),
        "Status": item["Status"],
        "Ports": ", ".join(ports),
        "Names": ",".join(_names(item["Names"], no_trunc)),
        "State": item["State"],
        "Labels": ",".join(f"{k}={v}" for k, v in (item.get("Labels") or {}).items()),
        "Networks": ",".join((item.get("NetworkSettings") or {}).get("Networks") or {}),
        "Mounts": ",".join(
            _truncate(m.get("Name") or m.get("Source", ""), 15)
            if not no_trunc
            else m.get("Name") or m.get("Source", "")
            for m in item.get("Mounts") or []
        ),
        "Size": "",
    }


@click.command("ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Show all containers.")
@click.option("-q", "--quiet", is_flag=True, help="Only display IDs.")
@click.option("-f", "--filter", "filters", multiple=True, help="Filter (status=, name=, label=).")
@click.option("-n", "--last", type=int, default=-1, help="Show the n last created containers.")
@click.option("-l", "--latest", is_flag=True, help="Show the latest created container.")
@click.option("--no-trunc", is_flag=True, help="Don't truncate output.")
@click.option("--format", "fmt", help="Go template or 'json'.")
@pass_context
def ps(
    ctx: Context,
    show_all: bool,
    quiet: bool,
    filters: tuple[str, ...],
    last: int,
    latest: bool,
    no_trunc: bool,
    fmt: str | None,
) -> None:
    """List containers."""
    wanted: dict[str, dict[str, bool]] = {}
    for item in filters:
        key, _, value = item.partition("=")
        wanted.setdefault(key, {})[value] = True
    limit = 1 if latest else last
    params = {"all": show_all, "filters": wanted or None, "limit": limit if limit > 0 else None}
    items = ctx.client.json("GET", "/containers/json", params=params)
    if quiet:
        for item in items:
            click.echo(item["Id"] if no_trunc else item["Id"][:12])
        return
    rows = [_ps_row(item, no_trunc) for item in items]
    print_rows(fmt or _PS_DEFAULT, rows, _PS_HEADERS)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Follow log output.")
@click.option("-t", "--timestamps", is_flag=True, help="Show timestamps.")
@click.option("-n", "--tail", default="all", help="Number of lines from the end.")
@click.option("--since", help="Show logs since (unix time or duration like 10m).")
@click.option("--until", help="Show logs before (unix time or duration).")
@click.argument("container")
@pass_context
def logs(
    ctx: Context,
    follow: bool,
    timestamps: bool,
    tail: str,
    since: str | None,
    until: str | None,
    container: str,
) -> None:
    """Fetch the logs of a container."""
    client = ctx.client
    info = client.json("GET", f"/containers/{container}/json")
    params = {
        "stdout": True,
        "stderr": True,
        "follow": follow,
        "timestamps": timestamps,
        "tail": tail,
        "since": _time_param(since),
        "until": _time_param(until),
    }
    demux = None if info["Config"]["Tty"] else terminal.Demux(sys.stdout.buffer, sys.stderr.buffer)
    for chunk in client.stream("GET", f"/containers/{info['Id']}/logs", params=params):
        if demux is None:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        else:
            demux.feed(chunk)


def _time_param(value: str | None) -> str | None:
    if not value:
        return None
    try:
        float(value)
        return value
    except ValueError:
        pass
    try:
        return f"{time.time() - parse_duration(value) / 1e9:.9f}"
    except UnitError:
        return value  # RFC 3339: the daemon parses it


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run the command in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep STDIN open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-TTY.")
@click.option("-e", "--env", multiple=True, help="Set environment variables.")
@click.option("-w", "--workdir", help="Working directory.")
@click.option("-u", "--user", help="User (name|uid[:group|gid]).")
@click.option("--privileged", is_flag=True, help="Extended privileges for the command.")
@click.option("--detach-keys", help="Key sequence for detaching (default ctrl-p,ctrl-q).")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_context
def exec_(
    ctx: Context,
    detach: bool,
    interactive: bool,
    tty: bool,
    env: tuple[str, ...],
    workdir: str | None,
    user: str | None,
    privileged: bool,
    detach_keys: str | None,
    container: str,
    command: tuple[str, ...],
) -> None:
    """Run a command in a running container."""
    client = ctx.client
    keys_param, keys = _detach_keys(detach_keys)
    body = {
        "DetachKeys": keys_param.get("detachKeys", ""),
        "AttachStdin": interactive and not detach,
        "AttachStdout": not detach,
        "AttachStderr": not detach,
        "Tty": tty,
        "Env": list(env),
        "Cmd": list(command),
        "WorkingDir": workdir or "",
        "User": user or "",
        "Privileged": privileged,
    }
    if tty:
        body["ConsoleSize"] = list(terminal.size())
    exec_id = client.json("POST", f"/containers/{container}/exec", body=body)["Id"]
    if detach:
        client.request("POST", f"/exec/{exec_id}/start", body={"Detach": True, "Tty": tty})
        return
    sock, initial = client.hijack(
        f"/exec/{exec_id}/start",
        body={"Detach": False, "Tty": tty, **({"ConsoleSize": body["ConsoleSize"]} if tty else {})},
    )

    def resize(height: int, width: int) -> None:
        try:
            client.request("POST", f"/exec/{exec_id}/resize", params={"h": height, "w": width})
        except (APIError, OSError):
            pass

    with terminal.raw_mode(tty and interactive), terminal.on_resize(resize if tty else None):
        detached = terminal.relay(sock, initial, tty=tty, stdin=interactive, detach_keys=keys)
    if detached:
        fail("read escape sequence", 1)  # as docker exec reports it; the process runs on
    result = client.json("GET", f"/exec/{exec_id}/json")
    code = result.get("ExitCode")
    sys.exit(code if code is not None else 126)


@click.command("attach")
@click.option("--no-stdin", is_flag=True, help="Do not attach STDIN.")
@click.option("--detach-keys", help="Key sequence for detaching (default ctrl-p,ctrl-q).")
@click.argument("container")
@pass_context
def attach(ctx: Context, no_stdin: bool, detach_keys: str | None, container: str) -> None:
    """Attach to a running container's stdio."""
    client = ctx.client
    info = client.json("GET", f"/containers/{container}/json")
    if not info["State"]["Running"]:
        fail("You cannot attach to a stopped container, start it first", 1)
    tty = bool(info["Config"]["Tty"])
    stdin = not no_stdin and bool(info["Config"]["OpenStdin"])
    keys_param, keys = _detach_keys(detach_keys)
    sock, initial = client.hijack(
        f"/containers/{info['Id']}/attach",
        params={"stream": True, "stdout": True, "stderr": True, "stdin": stdin, **keys_param},
    )
    waiter = client.open_wait(info["Id"], "")
    with terminal.raw_mode(tty and stdin):
        if terminal.relay(sock, initial, tty=tty, stdin=stdin, detach_keys=keys):
            fail("read escape sequence", 1)  # as docker attach reports it
    sys.exit(waiter.result())


@click.command("update")
@click.option("--blkio-weight", type=int, help="Block IO relative weight (10 to 1000, 0 off).")
@click.option("--cpu-period", type=int, help="CPU CFS period (microseconds).")
@click.option("--cpu-quota", type=int, help="CPU CFS quota (microseconds, -1 unlimited).")
@click.option("--cpu-rt-period", type=int, help="CPU real-time period (microseconds).")
@click.option("--cpu-rt-runtime", type=int, help="CPU real-time runtime (microseconds).")
@click.option("-c", "--cpu-shares", type=int, help="CPU shares (relative weight).")
@click.option("--cpus", help="Number of CPUs (e.g. 1.5).")
@click.option("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1).")
@click.option("--cpuset-mems", help="Memory nodes in which to allow execution (0-3, 0,1).")
@click.option("-m", "--memory", help="Memory limit (e.g. 64m).")
@click.option("--memory-reservation", help="Memory soft limit.")
@click.option("--memory-swap", help="Memory plus swap limit; -1 for unlimited swap.")
@click.option("--pids-limit", type=int, help="Maximum number of processes (-1 unlimited).")
@click.option("--restart", help="Restart policy: no | on-failure[:N] | always | unless-stopped.")
@click.argument("containers", nargs=-1, required=True)
@pass_context
def update(ctx: Context, containers: tuple[str, ...], **o: Any) -> None:
    """Update the resource limits and restart policy of one or more containers."""
    if all(value is None for value in o.values()):
        fail("you must provide one or more flags when using this command", 1)
    body: dict[str, Any] = {
        "BlkioWeight": o["blkio_weight"] or 0,
        "CpuPeriod": o["cpu_period"] or 0,
        "CpuQuota": o["cpu_quota"] or 0,
        "CpuRealtimePeriod": o["cpu_rt_period"] or 0,
        "CpuRealtimeRuntime": o["cpu_rt_runtime"] or 0,
        "CpuShares": o["cpu_shares"] or 0,
        "CpusetCpus": o["cpuset_cpus"] or "",
        "CpusetMems": o["cpuset_mems"] or "",
        "Memory": _size(o["memory"], "-m, --memory"),
        "MemoryReservation": _size(o["memory_reservation"], "--memory-reservation"),
        "MemorySwap": _size(o["memory_swap"], "--memory-swap"),
        "RestartPolicy": _restart_policy(o["restart"]) if o["restart"] else {},
    }
    if o["cpus"]:
        try:
            body["NanoCpus"] = parse_cpus(o["cpus"])
        except UnitError as e:
            raise click.UsageError(f'invalid argument "{o["cpus"]}" for "--cpus" flag: {e}') from e
    if o["pids_limit"] is not None:
        body["PidsLimit"] = o["pids_limit"]
    failed = False
    for name in containers:
        try:
            result = ctx.client.json("POST", f"/containers/{name}/update", body=body)
        except APIError as e:
            click.echo(f"Error response from daemon: {e.message}", err=True)
            failed = True
            continue
        for warning in result.get("Warnings") or []:
            click.echo(f"WARNING: {warning}", err=True)
        click.echo(name)
    if failed:
        sys.exit(1)


@click.command("top")
@click.argument("container")
@click.argument("ps_args", nargs=-1)
@pass_context
def top(ctx: Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    params = {"ps_args": " ".join(ps_args)} if ps_args else None
    result = ctx.client.json("GET", f"/containers/{container}/top", params=params)
    titles = result["Titles"]
    keys = [f"C{i}" for i in range(len(titles))]
    rows = [dict(zip(keys, proc, strict=False)) for proc in result["Processes"]]
    fmt = "table " + "\t".join(f"{{{{.{key}}}}}" for key in keys)
    print_rows(fmt, rows, dict(zip(keys, titles, strict=True)))


@click.command("inspect")
@click.option("-f", "--format", "fmt", help="Go template.")
@click.option(
    "--type",
    "kind",
    type=click.Choice(["container", "image", "volume", "network"]),
    help="Object type.",
)
@click.argument("names", nargs=-1, required=True)
@pass_context
def inspect(ctx: Context, fmt: str | None, kind: str | None, names: tuple[str, ...]) -> None:
    """Return low-level information on containers or images."""
    client = ctx.client
    results = []
    failed = False
    for name in names:
        found = None
        paths = {
            "container": f"/containers/{name}/json",
            "image": f"/images/{name}/json",
            "volume": f"/volumes/{name}",
            "network": f"/networks/{name}",
        }
        for path in [p for k, p in paths.items() if kind in (None, k)]:
            status, body = client.request("GET", path, check=False)
            if status == 200:
                found = json.loads(body)
                break
        if found is None:
            click.echo(f"Error: No such object: {name}", err=True)
            failed = True
            continue
        results.append(found)
    show(results, fmt)
    if failed:
        sys.exit(1)


container = click.Group("container", help="Manage containers.")
for _command in (
    run,
    create,
    start,
    stop,
    restart,
    kill,
    pause,
    unpause,
    rm,
    rename,
    wait,
    ps,
    logs,
    exec_,
    attach,
    update,
    top,
    inspect,
):
    container.add_command(_command)
container.add_command(ps, "ls")
