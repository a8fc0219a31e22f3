"""What the seccomp policy costs a container's start: built-in policy vs unconfined.

Usage (root): .venv/bin/python bench/seccomp.py [--runs 30]

Starts a private Dockyard daemon, imports the example busybox image and times
`run --rm IMG true` (network none, so networking does not drown the difference)
through docker-py and through the docker CLI, with:

* the built-in policy (the default),
* `--cap-add SYS_ADMIN` (the same policy evaluated for another capability set),
* the built-in policy sent as a custom profile's JSON (`seccomp=<json>`, what
  `docker run --security-opt seccomp=default.json` sends), evaluated per container,
* `seccomp=unconfined` (no filter at all),
* where installed, containers-common's profile (podman's default; Dockyard's until
  the built-in policy), sent as custom JSON.

The variants are measured in turns, so that drift in the host's speed lands on
all of them alike. Then the daemon's own share: evaluating the policy for a
capability set (done once per set, then cached) and a cache hit, in process.
When podman runs here, its start with its default profile and unconfined is shown
beside.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import engines  # noqa: E402
from dockyard.containers.config import DEFAULT_CAPABILITIES  # noqa: E402
from dockyard.runtime import seccomp, seccomp_policy  # noqa: E402
from tests.harness import Daemon, build_busybox_rootfs, new_base  # noqa: E402

IMAGE = f"dybench/busybox:{os.getpid()}"
CONTAINERS_COMMON = "/usr/share/containers/seccomp.json"  # podman's profile, where installed


def in_process(runs: int) -> None:
    """The daemon's part: evaluating the policy for one container's capabilities."""
    profile_json = json.dumps(seccomp_policy.profile())
    samples: dict[str, list[float]] = {
        "evaluate built-in policy (uncached)": [],
        "parse + evaluate custom JSON": [],
    }
    for _ in range(runs):
        start = time.perf_counter()
        seccomp.to_oci(seccomp_policy.profile(), capabilities=DEFAULT_CAPABILITIES)
        samples["evaluate built-in policy (uncached)"].append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        seccomp.to_oci(seccomp.parse_profile(profile_json), capabilities=DEFAULT_CAPABILITIES)
        samples["parse + evaluate custom JSON"].append((time.perf_counter() - start) * 1000)
    policy = seccomp.SeccompPolicy(None)
    policy.for_container(DEFAULT_CAPABILITIES, None)
    hits = []
    for _ in range(runs):
        start = time.perf_counter()
        policy.for_container(DEFAULT_CAPABILITIES, None)
        hits.append((time.perf_counter() - start) * 1000)
    samples["cached lookup (every start after the first)"] = hits
    engines.report("in the daemon, per container start", samples, digits=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    args = engines.parse_as_root(parser)
    runs = args.runs

    daemon = Daemon(new_base())
    podman = None
    try:
        daemon.start()
        tar = build_busybox_rootfs(daemon.base)
        via_docker = engines.docker_cli(daemon)
        via_docker.cmd("import", str(tar), IMAGE)
        client = engines.docker_py(daemon)
        podman = engines.podman(daemon.base)
        print(f"seccomp bench: {runs} runs each; {engines.beside([podman] if podman else [])}")
        # Each variant: (capabilities to add, seccomp= option: a name or a profile file,
        # which the docker CLI reads and docker-py is given the JSON of).
        builtin_file = daemon.base / "builtin.json"
        builtin_file.write_text(json.dumps(seccomp_policy.profile(), indent=2))
        variants: dict[str, tuple[list[str], str | None]] = {
            "built-in policy (default)": ([], None),
            "built-in, --cap-add SYS_ADMIN": (["SYS_ADMIN"], None),
            "built-in sent as custom JSON": ([], str(builtin_file)),
            "unconfined": ([], "unconfined"),
        }
        if os.path.isfile(CONTAINERS_COMMON):
            # Dockyard's default before the built-in policy, for comparison.
            variants["containers-common profile"] = ([], CONTAINERS_COMMON)

        def with_py(caps: list[str], option: str | None) -> Callable[[], object]:
            if option is not None and option.startswith("/"):
                with open(option) as f:
                    option = json.dumps(json.load(f), separators=(",", ":"))
            security = [f"seccomp={option}"] if option else None
            return lambda: client.containers.run(
                IMAGE, "true", remove=True, network_mode="none", cap_add=caps or None,
                security_opt=security,
            )  # fmt: skip

        def with_cli(caps: list[str], option: str | None) -> Callable[[], object]:
            flags = [f for c in caps for f in ("--cap-add", c)]
            if option:
                flags += ["--security-opt", f"seccomp={option}"]
            return lambda: via_docker.cmd("run", "--rm", "--network", "none", *flags, IMAGE, "true")

        rows = engines.alternating({k: with_py(*v) for k, v in variants.items()}, runs)
        engines.report("docker-py: run --rm IMG true", rows, "unconfined")
        rows = engines.alternating({k: with_cli(*v) for k, v in variants.items()}, runs)
        engines.report("docker CLI: run --rm IMG true", rows, "unconfined")
        if podman is not None:
            podman.cmd("import", str(tar), IMAGE)
            pod = podman

            def with_podman(*flags: str) -> Callable[[], object]:
                return lambda: pod.cmd("run", "--rm", "--network", "none", *flags, IMAGE, "true")

            rows = engines.alternating(
                {
                    "podman, its default profile": with_podman(),
                    "podman, unconfined": with_podman("--security-opt", "seccomp=unconfined"),
                },
                runs,
            )
            engines.report("podman: run --rm IMG true", rows, "podman, unconfined")
        client.close()
        in_process(runs)
    finally:
        if podman is not None:
            podman.cmd("rmi", IMAGE, check=False)
        daemon.cleanup()


if __name__ == "__main__":
    main()
