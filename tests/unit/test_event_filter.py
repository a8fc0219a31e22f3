"""The `events` filters, as moby's daemon/events/filter.go reads them."""

from __future__ import annotations

from dockyard.events.bus import Event
from dockyard.events.filter import EventFilter

CONTAINER = Event(
    "container",
    "start",
    "4f2b1d0c9a8e" + "0" * 52,
    {"name": "web", "image": "busybox:1.36", "tier": "front"},
)
EXEC = Event(
    "container",
    "exec_start: sh -c true",
    CONTAINER.actor_id,
    {"name": "web", "image": "busybox:1.36", "execID": "e1"},
)
IMAGE = Event("image", "tag", "sha256:" + "a" * 64, {"name": "registry.test/team/app:2"})
NETWORK = Event("network", "create", "9" * 64, {"name": "webnet", "type": "bridge"})
PRUNE = Event("container", "prune", "", {"reclaimed": "0"})


def wants(filters: dict[str, list[str]], event: Event) -> bool:
    return EventFilter(filters).include(event)


def test_no_filter_lets_everything_through() -> None:
    assert all(wants({}, e) for e in (CONTAINER, EXEC, IMAGE, NETWORK, PRUNE))


def test_type_and_scope_match_exactly() -> None:
    assert wants({"type": ["container", "image"]}, IMAGE)
    assert not wants({"type": ["contain"]}, CONTAINER)
    assert wants({"scope": ["local"]}, NETWORK)
    assert not wants({"scope": ["swarm"]}, NETWORK)


def test_event_matches_the_action_and_prefixes_only_for_suffixed_actions() -> None:
    assert wants({"event": ["start"]}, CONTAINER)
    assert not wants({"event": ["exec_start"]}, CONTAINER)
    assert wants({"event": ["exec_start"]}, EXEC)  # `exec_start: sh -c true`
    assert not wants({"event": ["start"]}, EXEC)
    # Naming a suffixed action turns every value into a prefix, as in Docker.
    assert wants({"event": ["health_status", "sta"]}, CONTAINER)
    assert not wants({"event": ["sta"]}, CONTAINER)


def test_named_actors_match_id_or_name_by_prefix() -> None:
    assert wants({"container": ["web"]}, CONTAINER)
    assert wants({"container": ["we"]}, CONTAINER)
    assert wants({"container": ["4f2b1d"]}, CONTAINER)
    assert not wants({"container": ["db"]}, CONTAINER)
    # Like Docker's, the key does not check the type: a network named like it passes.
    assert wants({"container": ["webn"]}, NETWORK)
    assert not wants({"container": ["web"]}, IMAGE)
    assert wants({"network": ["webnet"]}, NETWORK)
    assert not wants({"network": ["webnet"]}, CONTAINER)
    # The prune events name no actor: a named filter leaves them out.
    assert not wants({"container": ["web"]}, PRUNE)


def test_image_matches_id_name_or_name_without_tag() -> None:
    assert wants({"image": ["busybox:1.36"]}, CONTAINER)  # the container's image
    assert wants({"image": ["busybox"]}, CONTAINER)
    assert not wants({"image": ["busy"]}, CONTAINER)  # exact, not a prefix
    assert wants({"image": ["registry.test/team/app"]}, IMAGE)
    assert wants({"image": [IMAGE.actor_id]}, IMAGE)
    assert not wants({"image": ["busybox"]}, NETWORK)


def test_labels_must_all_hold_on_the_attributes() -> None:
    assert wants({"label": ["tier"]}, CONTAINER)
    assert wants({"label": ["tier=front", "name=web"]}, CONTAINER)
    assert not wants({"label": ["tier=back"]}, CONTAINER)
    assert not wants({"label": ["tier", "missing"]}, CONTAINER)
    assert not wants({"label": ["tier"]}, Event("volume", "create", "v", {}))


def test_keys_combine_and_unknown_keys_are_ignored() -> None:
    assert wants({"type": ["container"], "container": ["web"], "colour": ["red"]}, CONTAINER)
    assert not wants({"type": ["container"], "event": ["die"]}, CONTAINER)
