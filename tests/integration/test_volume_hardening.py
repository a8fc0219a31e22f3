"""Volumes under stress: operations racing on one name, failures half way through a mount."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def test_prune_never_takes_a_volume_created_again_meanwhile(daemon: Daemon) -> None:
    tag = secrets.token_hex(3)
    names = [f"{tag}-{i:02}" for i in range(40)]
    for name in names:
        status, body = daemon.api(
            "POST", "/v1.45/volumes/create", {"Name": name, "Labels": {"prune": tag}}
        )
        assert status == 201, body
        for j in range(50):  # something for prune to measure: it takes a while per volume
            (Path(body["Mountpoint"]) / f"f{j}").write_bytes(b"x" * 100)
    result: dict[str, Any] = {}

    def prune() -> None:
        filters = json.dumps({"all": ["true"], "label": [f"prune={tag}"]})
        result["prune"] = daemon.api("POST", f"/v1.45/volumes/prune?filters={quote(filters)}")

    thread = threading.Thread(target=prune)
    thread.start()
    # While prune runs, each volume is removed (unless prune was first) and created again
    # without the prune label: the new volume is not the prune's to take. (In the opposite
    # order to prune's, so that prune meets volumes already made again.)
    for name in reversed(names):
        assert daemon.api("DELETE", f"/v1.45/volumes/{name}")[0] in (204, 404)
        created = daemon.api("POST", "/v1.45/volumes/create", {"Name": name, "Labels": {}})
        assert created[0] == 201, created
    thread.join()
    assert result["prune"][0] == 200
    missing = [n for n in names if daemon.api("GET", f"/v1.45/volumes/{n}")[0] != 200]
    for name in names:
        daemon.api("DELETE", f"/v1.45/volumes/{name}")
    assert missing == []


def test_a_failed_mount_of_a_local_volume_with_options_leaves_no_mount(daemon: Daemon) -> None:
    name = "m-" + secrets.token_hex(4)
    daemon.cli("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", name, check=True)
    data = daemon.data_root / "volumes" / name / "_data"
    # Where the driver keeps the volume's references, something that is not a directory:
    # recording the reference fails.
    (data.parent / "mounts").write_text("")
    try:
        result = daemon.cli("run", "--rm", "-v", f"{name}:/data", IMAGE, "true")
        assert result.returncode != 0
        mounted = subprocess.run(["findmnt", "-n", str(data)], capture_output=True, text=True)
        assert mounted.stdout == "", mounted.stdout
    finally:
        (data.parent / "mounts").unlink()
        subprocess.run(["umount", "-l", str(data)], capture_output=True)
        daemon.cli("volume", "rm", name)
    # With its references' directory back, the volume mounts and works.
    daemon.cli("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", name, check=True)
    try:
        used = daemon.cli(
            "run", "--rm", "-v", f"{name}:/data", IMAGE, "sh", "-c", "grep /data /proc/mounts"
        )
        assert "tmpfs" in used.stdout
    finally:
        daemon.cli("volume", "rm", name)
