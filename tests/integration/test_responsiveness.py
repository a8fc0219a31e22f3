"""The API keeps answering while big logs are read and a big image is loaded: no request
does work proportional to a log's size on the event loop (issue 12, defect 2)."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.harness import Daemon
from tests.load import MB, image_archive, write_log

IMAGE = "demo/busybox:1"
LOG_SIZE = 200 * MB
IMAGE_SIZE = 50 * MB
CLIENTS = 50


def test_ps_answers_while_a_big_log_is_tailed_and_an_image_loads(
    daemon: Daemon, name: str, tmp_path: Path
) -> None:
    d = daemon
    assert d.docker("run", "--name", name, IMAGE, "true").returncode == 0
    container_id = json.loads(d.docker("inspect", name).stdout)[0]["Id"]
    log = d.data_root / "containers" / container_id / "container.log"
    write_log(log, LOG_SIZE, ["last-1", "last-2", "last-3"])
    archive = tmp_path / "big.tar"
    tag = f"load/{name}:1"
    image_archive(archive, IMAGE_SIZE, tag)

    env_docker = ["docker", "-H", d.host]
    results: dict[str, subprocess.CompletedProcess[bytes]] = {}

    def run(key: str, *args: str) -> None:
        results[key] = subprocess.run([*env_docker, *args], capture_output=True, timeout=600)

    heavy = [
        threading.Thread(target=run, args=("tail", "logs", "--tail", "2", name)),
        threading.Thread(target=run, args=("whole", "logs", name)),
        threading.Thread(target=run, args=("load", "load", "-i", str(archive))),
    ]
    for t in heavy:
        t.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = list(
                pool.map(lambda _: d.api("GET", "/containers/json?all=1"), range(CLIENTS))
            )
    finally:
        for t in heavy:
            t.join()
    assert [status for status, _ in answers] == [200] * CLIENTS
    assert all(any(c["Id"] == container_id for c in body) for _, body in answers)
    assert results["tail"].returncode == 0, results["tail"].stderr
    assert results["tail"].stdout == b"last-2\nlast-3\n"
    assert results["whole"].returncode == 0, results["whole"].stderr
    assert len(results["whole"].stdout) > LOG_SIZE * 90 // 137  # the payloads, whole
    assert results["whole"].stdout.endswith(b"last-1\nlast-2\nlast-3\n")
    assert results["load"].returncode == 0, results["load"].stderr
    assert d.docker("image", "inspect", tag).returncode == 0
    d.docker("rmi", tag)
    d.docker("rm", name)
