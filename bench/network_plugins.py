"""What a plugin-backed network costs per container start, over the built-in bridge.

Usage (root): .venv/bin/python bench/network_plugins.py [--runs 30]

Starts a private Dockyard daemon (its own bridges, subnets, nftables table and
plugin directories) and, alternating between them, times
`run --rm --network NET IMG true` on:

* a user-defined network of the built-in bridge driver and default IPAM;
* the SDK examples `plugins/net_bridge.py` + `plugins/ipam_file.py`, each its
  own process (the network a Linux bridge made by the plugin, addresses from
  the plugin's file);
* the same network plugin with the built-in IPAM;
* the veth network and in-memory IPAM plugins written without the SDK
  (`tests/bare_network.py`, stdlib HTTP server threads in this process);
* `--network none` (the floor).

It prints medians, the overhead over the built-in bridge, the daemon's own
setup/teardown time per network (from its debug log) and the plugin calls one
container start makes. When podman is installed and working, its bridge
network is timed the same way for scale (podman has no remote network
plugins); a running Docker daemon is measured with its bridge and with the
same SDK plugins, served on /run/docker/plugins for the duration.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from bench.engines import Engine  # noqa: E402
from bench.network import IMAGE, ensure_image, in_daemon, release_image  # noqa: E402
from tests.bare_network import BareIpam, VethNetwork, links_with  # noqa: E402
from tests.bare_plugin import BarePlugin  # noqa: E402
from tests.harness import build_busybox_rootfs  # noqa: E402
from tests.plugin_env import EXAMPLES, PluginDaemon, PluginProcess  # noqa: E402


def engine_runs(engine: Engine, networks: dict[str, str]) -> dict[str, Callable[[], object]]:
    return {
        label: (lambda n=net: engine.cmd("run", "--rm", "--network", n, IMAGE, "true"))
        for label, net in networks.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = engines.parse_as_root(parser)
    daemon = PluginDaemon()
    tag = secrets.token_hex(2)
    prefix = f"bn{tag}"
    processes: list[PluginProcess] = []
    bare: list[BarePlugin] = []
    others: list[Engine] = []
    try:
        daemon.start_with("--debug")
        tar = build_busybox_rootfs(daemon.base)
        daemon.cli("import", str(tar), IMAGE, check=True)
        octet = daemon.net_octet
        env = {"IPAM_STATE": str(daemon.base / "ipam.json"), "IPAM_RANGE": f"10.{octet}.96.0/19"}
        processes.append(
            PluginProcess(f"{EXAMPLES}/net_bridge.py:BridgeNetwork", daemon.sock("vbridge"))
        )
        processes.append(
            PluginProcess(f"{EXAMPLES}/ipam_file.py:FileIpam", daemon.sock("fileipam"), env)
        )
        veth, ipam = VethNetwork(prefix), BareIpam(f"10.{octet}.64.0/19")
        bare.append(BarePlugin(["NetworkDriver"], veth.replies()).serve_unix(daemon.sock("veth")))
        bare.append(BarePlugin(["IpamDriver"], ipam.replies()).serve_unix(daemon.sock("bareipam")))
        daemon.cli("network", "create", "--subnet", daemon.subnet(10), "bnet", check=True)
        daemon.cli(
            "network", "create", "-d", "vbridge", "--ipam-driver", "fileipam", "sdknet",
            check=True,
        )  # fmt: skip
        daemon.cli(
            "network", "create", "-d", "vbridge", "--subnet", daemon.subnet(11), "sdkdefault",
            check=True,
        )  # fmt: skip
        daemon.cli(
            "network", "create", "-d", "veth", "--ipam-driver", "bareipam", "barenet", check=True
        )
        networks = {
            "built-in bridge + default IPAM": "bnet",
            "SDK plugins (vbridge + fileipam)": "sdknet",
            "SDK network plugin + default IPAM": "sdkdefault",
            "no-SDK plugins (veth + in-memory IPAM)": "barenet",
            "--network none": "none",
        }
        ours = engines.dockyard_cli(daemon)
        others += engines.others(daemon.base)
        print(
            f"run --rm --network NET IMG true, {args.runs} runs each, alternating; "
            + engines.beside(others)
        )
        samples = engines.alternating(engine_runs(ours, networks), args.runs)
        engines.report(f"Dockyard ({ours.name})", samples, "built-in bridge + default IPAM")
        bridges = {ours.name: samples["built-in bridge + default IPAM"]}
        in_daemon(daemon.log_path, {k: v for k, v in networks.items() if v != "none"})
        before = len(bare[0].calls) + len(bare[1].calls)
        ours.cmd("run", "--rm", "--network", "barenet", IMAGE, "true")
        calls = [c.path for c in sorted([*bare[0].calls, *bare[1].calls], key=lambda c: c.at)]
        print(f"\nplugin calls per container start and stop: {len(calls) - before}")
        print("  " + " ".join(p.split(".", 1)[1] for p in calls[before:]))

        for engine in others:
            ensure_image(engine, tar)
            theirs = {"bridge network": f"dybench-{tag}", "--network none": "none"}
            engine.cmd("network", "create", "--subnet", daemon.subnet(12), theirs["bridge network"])
            try:
                if engine.name == "dockerd":
                    theirs |= docker_plugin_network(engine, tag, daemon.subnet(13), processes)
                samples = engines.alternating(engine_runs(engine, theirs), args.runs)
                engines.report(engine.name, samples, "bridge network")
                bridges[engine.name] = samples["bridge network"]
                if engine.name == "podman":
                    print("  (podman has no remote network plugins: its bridge is shown for scale)")
            finally:
                for name in theirs.values():
                    if name != "none":
                        engine.cmd("network", "rm", name, check=False)
        if others:
            engines.report("each engine's own bridge, side by side", bridges, ours.name)
    finally:
        for engine in others:
            release_image(engine)
        for name in ("bnet", "sdknet", "sdkdefault", "barenet"):
            daemon.cli("network", "rm", name)
        for process in processes:
            process.stop()
        for plugin in bare:
            plugin.stop()
        daemon.cleanup()
        for link in links_with(prefix):
            os.system(f"ip link del {link}")


def docker_plugin_network(
    engine: Engine, tag: str, subnet: str, processes: list[PluginProcess]
) -> dict[str, str]:
    """The SDK example network plugin served where Docker looks (for this run only)."""
    name = f"dybench{tag}"
    socket = f"/run/docker/plugins/{name}.sock"
    processes.append(PluginProcess(f"{EXAMPLES}/net_bridge.py:BridgeNetwork", socket))
    network = f"dybench-plugin-{tag}"
    engine.cmd("network", "create", "-d", name, "--subnet", subnet, network)
    return {"SDK network plugin + default IPAM": network}


if __name__ == "__main__":
    main()
