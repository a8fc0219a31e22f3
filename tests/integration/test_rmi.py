"""`rmi` by moby's rules (daemon/images/image_delete.go): what `-f` overrides and what it
cannot, with several tags, by name and by ID, through the docker CLI and docker-py."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.harness import Daemon


def fresh_image(daemon: Daemon, busybox_tar: Path, *tags: str) -> str:
    """A new image (its own ID: a label makes it unique) with `tags`."""
    made = daemon.cli(
        "import", "-c", f"LABEL unique={secrets.token_hex(8)}", str(busybox_tar), tags[0]
    )
    assert made.returncode == 0, made.stderr
    for tag in tags[1:]:
        daemon.cli("tag", tags[0], tag, check=True)
    return made.stdout.strip()


def image_ids(daemon: Daemon) -> set[str]:
    return set(daemon.cli("images", "-q", "--no-trunc").stdout.split())


def test_force_by_name_deletes_an_image_a_stopped_container_uses(
    daemon: Daemon, client: Any, busybox_tar: Path, name: str
) -> None:
    repo = f"rmi/stopped{secrets.token_hex(3)}"
    image_id = fresh_image(daemon, busybox_tar, f"{repo}:1")
    container = client.containers.create(f"{repo}:1", ["cat", "/etc/hostname"], name=name)
    refused = daemon.docker("rmi", f"{repo}:1")
    assert refused.returncode == 1
    assert (
        f'unable to remove repository reference "{repo}:1" (must force) - container '
        f"{container.id[:12]} is using its referenced image {image_id[7:19]}"
    ) in refused.stderr
    forced = daemon.docker("rmi", "-f", f"{repo}:1")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[:2] == [f"Untagged: {repo}:1", f"Deleted: {image_id}"]
    assert image_id not in image_ids(daemon)
    # The container keeps working on its layers, which stay until it goes.
    container.start()
    assert container.wait()["StatusCode"] == 0
    assert container.logs().strip() == container.id[:12].encode()
    assert client.api.inspect_container(container.id)["Image"] == image_id
    container.remove()


def test_force_cannot_delete_what_a_running_container_uses(
    daemon: Daemon, client: Any, busybox_tar: Path
) -> None:
    repo = f"rmi/running{secrets.token_hex(3)}"
    image_id = fresh_image(daemon, busybox_tar, f"{repo}:1")
    container = client.containers.run(f"{repo}:1", "sleep 300", detach=True)
    try:
        by_id = daemon.docker("rmi", "-f", image_id)
        assert by_id.returncode == 1
        assert (
            f"conflict: unable to delete {image_id[7:19]} (cannot be forced) - image is being "
            f"used by running container {container.id[:12]}"
        ) in by_id.stderr
        # By name, forced: the name goes, the image stays for its container (dangling).
        by_name = daemon.docker("rmi", "-f", f"{repo}:1")
        assert by_name.returncode == 0, by_name.stderr
        assert by_name.stdout.splitlines() == [f"Untagged: {repo}:1"]
        assert image_id in image_ids(daemon)
        assert client.images.get(image_id).tags == []
    finally:
        container.remove(force=True)
    daemon.cli("rmi", image_id, check=True)


def test_several_tags(daemon: Daemon, client: Any, busybox_tar: Path) -> None:
    repo = f"rmi/tags{secrets.token_hex(3)}"
    image_id = fresh_image(daemon, busybox_tar, f"{repo}:1", f"{repo}:2", f"{repo}-other:1")
    # By name, even forced: only that tag goes.
    one = daemon.docker("rmi", "-f", f"{repo}:1")
    assert one.stdout.splitlines() == [f"Untagged: {repo}:1"]
    # By ID without force: tags in several repositories are a conflict...
    with pytest.raises(docker.errors.APIError) as refused:
        client.images.remove(image_id)
    assert refused.value.status_code == 409
    assert "(must be forced) - image is referenced in multiple repositories" in str(refused.value)
    # ...which force overrides: every tag, then the image.
    report = client.api.remove_image(image_id, force=True)
    assert sorted(item.get("Untagged", "") for item in report if "Untagged" in item) == [
        f"{repo}-other:1",
        f"{repo}:2",
    ]
    assert {"Deleted": image_id} in report
    assert image_id not in image_ids(daemon)


def test_by_id_a_single_reference_goes_with_the_image_unless_a_container_uses_it(
    daemon: Daemon, client: Any, busybox_tar: Path, name: str
) -> None:
    repo = f"rmi/single{secrets.token_hex(3)}"
    image_id = fresh_image(daemon, busybox_tar, f"{repo}:1")
    container = client.containers.create(image_id, "true", name=name)
    refused = daemon.docker("rmi", image_id[7:19])
    assert refused.returncode == 1
    assert (
        f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is being used "
        f"by stopped container {container.id[:12]}"
    ) in refused.stderr
    assert client.images.get(image_id).tags == [f"{repo}:1"]  # a refusal changes nothing
    container.remove()
    removed = daemon.docker("rmi", "--no-prune", image_id[7:19])
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout.splitlines()[:2] == [f"Untagged: {repo}:1", f"Deleted: {image_id}"]


def test_a_committed_image_names_its_parent_which_stays_while_it_has_children(
    daemon: Daemon, client: Any, busybox_tar: Path, name: str
) -> None:
    repo = f"rmi/parent{secrets.token_hex(3)}"
    parent_id = fresh_image(daemon, busybox_tar, f"{repo}:base")
    container = client.containers.run(f"{repo}:base", ["touch", "/made"], name=name, detach=True)
    container.wait()
    child = client.api.commit(name, repository=repo, tag="child")["Id"]
    container.remove()
    assert client.api.inspect_image(child)["Parent"] == parent_id
    # The parent cannot go while a child needs it, even forced.
    refused = daemon.docker("rmi", "-f", parent_id)
    assert refused.returncode == 1
    assert "image has dependent child images" in refused.stderr
    # Untagged, it becomes an intermediate image: listed with -a only.
    assert daemon.docker("rmi", f"{repo}:base").returncode == 0
    assert parent_id in set(daemon.cli("images", "-a", "-q", "--no-trunc").stdout.split())
    assert parent_id not in image_ids(daemon)
    # Deleting the child takes the untagged parent along (unless --no-prune).
    removed = daemon.docker("rmi", f"{repo}:child")
    assert removed.returncode == 0, removed.stderr
    assert f"Deleted: {parent_id}" in removed.stdout
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(parent_id)
