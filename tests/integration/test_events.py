"""`events` as Docker's: every action of the objects Dockyard has, in Docker's shape,
with Docker's filters and time windows, read by docker-py and the docker CLI."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.harness import Daemon

IMAGE = "demo/busybox:1"


def events(client: Any, since: float, **filters: Any) -> list[dict[str, Any]]:
    """The events from `since` until now that match `filters`."""
    return list(client.events(since=since, until=time.time(), decode=True, filters=filters))


def actions(found: list[dict[str, Any]]) -> list[str]:
    return [e["Action"] for e in found]


def in_order(found: list[str], expected: list[str]) -> bool:
    """Whether `expected` occurs in `found` in this order (other actions between)."""
    rest = iter(found)
    return all(any(a == wanted for a in rest) for wanted in expected)


def test_container_actions_in_dockers_shape(daemon: Daemon, client: Any, name: str) -> None:
    token = secrets.token_hex(4)
    since = time.time()
    container = client.containers.create(IMAGE, "sleep 300", name=name, labels={"evt": token})
    container.start()
    container.top()
    container.pause()
    container.unpause()
    container.rename(name + "-b")
    assert container.exec_run("true").exit_code == 0
    container.kill(signal="SIGWINCH")  # ignored by sleep: the container goes on
    container.stop(timeout=1)
    container.restart(timeout=1)
    committed = container.commit("evt/committed", "1", message="snapshot")
    container.remove(force=True)
    found = events(client, since, label=f"evt={token}")
    assert in_order(
        actions(found),
        [
            "create",
            "start",
            "top",
            "pause",
            "unpause",
            "rename",
            "exec_die",
            "kill",  # SIGWINCH
            "kill",  # the stop signal
            "die",
            "stop",
            "start",  # restart of a stopped container: just a start
            "restart",
            "commit",
            "kill",
            "die",
            "destroy",
        ],
    ), " ".join(actions(found))
    create = found[0]
    # Docker's field order, the deprecated fields first.
    assert list(create) == [
        "status",
        "id",
        "from",
        "Type",
        "Action",
        "Actor",
        "scope",
        "time",
        "timeNano",
    ]
    assert create["status"] == "create" and create["id"] == container.id
    assert create["from"] == IMAGE and create["Type"] == "container"
    assert create["Actor"] == {
        "ID": container.id,
        "Attributes": {"evt": token, "image": IMAGE, "name": name},
    }
    assert create["scope"] == "local"
    assert create["time"] == create["timeNano"] // 1_000_000_000
    assert since <= create["timeNano"] / 1e9 <= time.time()
    # exec actions carry the command (Docker: `exec_start: true `, entrypoint and args)
    assert any(a.startswith("exec_create: true") for a in actions(found))
    assert any(a.startswith("exec_start: true") for a in actions(found))
    by_action = {e["Action"]: e["Actor"]["Attributes"] for e in found}
    assert by_action["rename"]["oldName"] == "/" + name
    assert by_action["rename"]["name"] == name + "-b"
    assert by_action["exec_die"]["exitCode"] == "0"
    assert by_action["die"]["exitCode"] == "137" and by_action["die"]["execDuration"].isdigit()
    assert by_action["commit"]["imageID"] == committed.id
    assert by_action["commit"]["imageRef"] == "evt/committed:1"
    assert by_action["commit"]["comment"] == "snapshot"
    signals = [e["Actor"]["Attributes"]["signal"] for e in found if e["Action"] == "kill"]
    assert signals[:3] == ["28", "15", "9"]  # SIGWINCH, then stop's TERM and KILL
    client.images.remove(committed.id)


def test_image_actions_carry_the_image_labels(
    daemon: Daemon, client: Any, busybox_tar: Path
) -> None:
    token = secrets.token_hex(4)
    repo = f"evt/img{token}"
    since = time.time()
    client.api.import_image(
        src=str(busybox_tar), repository=repo, tag="1", changes=[f"LABEL evt={token}"]
    )
    image = client.images.get(f"{repo}:1")
    image.tag(repo, "2")
    archive = b"".join(image.save(named=True))
    client.images.remove(f"{repo}:2")
    client.images.remove(f"{repo}:1")
    client.images.load(archive)
    client.images.remove(f"{repo}:1")
    labelled = events(client, since, type="image", label=f"evt={token}")
    # As Docker's: `import` tags first; `load` tags without `tag` events.
    assert actions(labelled) == [
        "tag",
        "import",
        "tag",
        "save",
        "untag",
        "untag",
        "load",
        "untag",
    ]
    for event in labelled:
        assert event["Actor"]["ID"] == image.id and event["id"] == image.id
        assert event["status"] == event["Action"] and "from" not in event
    names = {e["Action"]: e["Actor"]["Attributes"]["name"] for e in labelled}
    # Docker names the new tag in `tag`, and the image itself in the others.
    assert names["tag"] in (f"{repo}:1", f"{repo}:2")
    assert names["untag"] == names["import"] == names["save"] == image.id
    # An image deleted has no labels any more: `delete` is found by its ID.
    deleted = events(client, since, image=image.id, event="delete")
    assert len(deleted) == 2  # once after the import, once after the load
    assert deleted[0]["Actor"]["Attributes"] == {"name": image.id}
    # `image=<name>` matches by reference without its tag.
    tags = events(client, since, image=repo, event="tag")
    assert [e["Actor"]["Attributes"]["name"] for e in tags] == [f"{repo}:1", f"{repo}:2"]


def test_volume_and_network_actions(daemon: Daemon, client: Any, name: str) -> None:
    volume = client.volumes.create(name + "-vol", labels={"evt": "1"})
    network = client.networks.create(name + "-net")
    since = time.time()
    try:
        client.containers.run(IMAGE, "true", volumes={volume.name: {"bind": "/data"}}, remove=True)
        container = client.containers.run(IMAGE, "sleep 300", name=name, detach=True)
        network.connect(container)
        network.disconnect(container)
        container.remove(force=True)
    finally:
        network.remove()
        volume.remove()
    volume_events = events(client, since, volume=volume.name)
    assert in_order(actions(volume_events), ["mount", "unmount", "destroy"])
    mount = volume_events[0]["Actor"]["Attributes"]
    assert mount["driver"] == "local" and mount["destination"] == "/data"
    assert mount["read/write"] == "true" and "container" in mount
    assert "status" not in volume_events[0]  # the deprecated fields are for containers and images
    network_events = events(client, since, network=network.name)
    assert actions(network_events) == ["connect", "disconnect", "destroy"]
    connect = network_events[0]["Actor"]
    assert connect["ID"] == network.id
    assert connect["Attributes"] == {
        "container": container.id,
        "name": network.name,
        "type": "bridge",
    }


def test_prune_builder_and_daemon_events(daemon: Daemon, client: Any) -> None:
    since = time.time()
    client.containers.prune(filters={"label": "nothing-has-this"})
    client.images.prune(filters={"label": "nothing-has-this"})
    client.volumes.prune(filters={"label": "nothing-has-this"})
    client.networks.prune(filters={"label": "nothing-has-this"})
    client.api.prune_builds()
    pruned = events(client, since, event="prune")
    assert sorted(e["Type"] for e in pruned) == [
        "builder",
        "container",
        "image",
        "network",
        "volume",
    ]
    for event in pruned:
        assert event["Actor"]["ID"] == "" and list(event["Actor"]["Attributes"]) == ["reclaimed"]
        assert event["Actor"]["Attributes"]["reclaimed"].isdigit()
        assert "id" not in event  # empty, so left out as Go's omitempty does
    assert daemon.proc is not None
    since = time.time()
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not reloaded and time.monotonic() < deadline:
        reloaded = events(client, since, type="daemon")
        time.sleep(0.1)
    assert actions(reloaded) == ["reload"]
    info = client.info()
    assert reloaded[0]["Actor"]["ID"] == info["ID"]
    assert reloaded[0]["Actor"]["Attributes"]["name"] == socket.gethostname()
    assert json.loads(reloaded[0]["Actor"]["Attributes"]["insecure-registries"]) == []


def test_filters_and_time_windows(daemon: Daemon, client: Any, name: str) -> None:
    since = time.time()
    client.containers.run(IMAGE, "true", name=name, remove=True)
    middle = time.time()
    client.containers.run(IMAGE, "true", name=name + "-2", remove=True)
    end = time.time()
    # A time window holds what happened in it.
    first = list(client.events(since=since, until=middle, decode=True, filters={"container": name}))
    assert in_order(actions(first), ["create", "start", "die", "destroy"])
    assert not list(
        client.events(since=middle, until=end, decode=True, filters={"container": name + "-x"})
    )
    # `container` is a prefix of the name or ID; several values of a key are alternatives.
    both = events(client, since, container=name, event=["start", "destroy"])
    assert actions(both) == ["start", "destroy", "start", "destroy"]
    assert {e["Actor"]["Attributes"]["name"] for e in both} == {name, name + "-2"}
    assert actions(events(client, since, container=name + "-2", event="start")) == ["start"]
    # `image` matches the container's image, with or without its tag.
    assert len(events(client, since, container=name, image="demo/busybox", event="create")) == 2
    # A Go duration reads as "that long ago"; an unknown key is ignored, as by Docker.
    wanted = quote(json.dumps({"container": [name + "-2"], "colour": ["red"]}))
    status, body = daemon.api("GET", f"/v1.45/events?since=1m&until={end:.3f}&filters={wanted}")
    assert status == 200
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert in_order(actions(lines), ["create", "start", "die", "destroy"])
    # Bad windows and filters are 400s with Docker's words.
    status, body = daemon.api("GET", f"/v1.45/events?since={end}&until={since}")
    assert status == 400
    assert body["message"] == f"`since` time ({end}) cannot be after `until` time ({since})"
    status, body = daemon.api("GET", "/v1.45/events?since=yesterday")
    assert status == 400
    assert body["message"] == 'failed to parse value as time or duration: "yesterday"'
    status, body = daemon.api("GET", "/v1.45/events?filters=" + quote("{not json"))
    assert status == 400


def test_docker_cli_reads_the_stream(daemon: Daemon, name: str) -> None:
    since = time.time()
    daemon.docker("run", "--rm", "--name", name, IMAGE, "true")
    result = daemon.docker(
        "events",
        "--since",
        f"{since:.3f}",
        "--until",
        f"{time.time():.3f}",
        "--filter",
        f"container={name}",
        "--filter",
        "event=die",
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"container die {name} 0"]


def test_live_subscribers_see_events_and_leave_quietly(daemon: Daemon, client: Any) -> None:
    token = secrets.token_hex(4)
    log_start = len(daemon.log_path.read_bytes())
    baseline = client.info()["NEventsListener"]
    stream = client.events(decode=True, filters={"type": "volume", "volume": f"live{token}"})
    seen: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: seen.append(next(stream)), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while client.info()["NEventsListener"] <= baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    client.volumes.create(f"live{token}").remove()
    reader.join(30)
    assert seen and seen[0]["Action"] == "create"
    stream.close()
    # A client that goes away while nothing it wants happens leaves too, quietly.
    with socket.socket(socket.AF_UNIX) as raw:
        raw.connect(daemon.socket)
        raw.sendall(b"GET /v1.45/events?filters=%7B%22type%22%3A%5B%22plugin%22%5D%7D HTTP/1.1\r\n")
        raw.sendall(b"Host: d\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 200")
    while client.info()["NEventsListener"] > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.info()["NEventsListener"] == baseline
    log = daemon.log_path.read_bytes()[log_start:].decode(errors="replace")
    assert "Cannot write to closing transport" not in log
    assert "Traceback" not in log
