"""testcontainers-python, as test suites use it, drives a Dockyard daemon.

The library reads its settings from the environment when it is imported, so each
scenario runs in a Python process of its own with DOCKER_HOST pointing at the test
daemon. Ryuk, its reaper, is an image on Docker Hub; it is switched off here, as
offline CI setups do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def run_scenario(daemon: Daemon, code: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DOCKER_HOST": daemon.host,
        "TESTCONTAINERS_RYUK_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_server_container_waits_for_its_log_and_answers_on_its_mapped_port(
    daemon: Daemon, name: str
) -> None:
    result = run_scenario(
        daemon,
        f"""
        import urllib.request
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs

        server = (
            DockerContainer("{IMAGE}")
            .with_name("{name}")
            .with_env("GREETING", "hello from dockyard")
            .with_command(["sh", "-c",
                "mkdir /www && echo $GREETING > /www/index.html && echo ready "
                "&& exec httpd -f -p 8080 -h /www"])
            .with_exposed_ports(8080)
        )
        with server:
            wait_for_logs(server, "ready", timeout=60)
            host = server.get_container_host_ip()
            port = server.get_exposed_port(8080)
            body = urllib.request.urlopen(f"http://{{host}}:{{port}}/", timeout=10).read()
            print("body:", body.decode().strip())
            code, output = server.exec(["cat", "/www/index.html"])
            print("exec:", code, output.decode().strip())
        """,
    )
    assert result.returncode == 0, result.stderr
    assert "body: hello from dockyard" in result.stdout
    assert "exec: 0 hello from dockyard" in result.stdout
    # Leaving the `with` block stopped and removed the container.
    assert daemon.api("GET", f"/v1.45/containers/{name}/json")[0] == 404
