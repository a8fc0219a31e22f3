"""Which events a subscriber wants: the `events` filters, read as Docker reads them.

Every key narrows the stream and the values of one key are alternatives:

* `type` and `scope` match exactly; `event` matches the action exactly, or
  by prefix when one of the values is `exec_create`, `exec_start` or
  `health_status` (their actions carry a suffix: `exec_start: sh -c true`);
* `container`, `network`, `volume`, `plugin` and `daemon` match the actor's
  ID or its `name` attribute, exactly or by prefix. Like Docker's, they do
  not look at the event's type: `container=web` lets a network named `web`
  through, but no other network;
* `image` matches the actor's ID or name (for container events: the image
  the container was created from), exactly or without the tag
  (`image=busybox` matches `busybox:1.36`);
* `label` (`key` or `key=value`, each must hold) matches the actor's
  attributes: a container's labels, an image's labels, ...

Unknown keys are ignored, as Docker ignores them.
"""

from __future__ import annotations

from dockyard.errors import InvalidArgument
from dockyard.events.bus import Event
from dockyard.images import reference

Filters = dict[str, list[str]]

# actions that carry a suffix; naming one of them turns `event` into a prefix match
_PREFIXED_ACTIONS = frozenset({"exec_create", "exec_start", "health_status"})
# keys that name an actor of one of these types, by ID or name
_NAMED = ("container", "daemon", "network", "plugin", "volume")


class EventFilter:
    def __init__(self, wanted: Filters) -> None:
        self.wanted = {key: values for key, values in wanted.items() if values}

    def include(self, event: Event) -> bool:
        return (
            self._event(event)
            and self._exact("type", event.type)
            and self._exact("scope", event.scope)
            and all(self._named(key, event) for key in _NAMED)
            and self._image(event)
            and self._labels(event.attributes)
        )

    def _exact(self, key: str, value: str) -> bool:
        return key not in self.wanted or value in self.wanted[key]

    def _fuzzy(self, key: str, value: str) -> bool:
        values = self.wanted.get(key)
        return values is None or any(value.startswith(v) for v in values)

    def _event(self, event: Event) -> bool:
        values = self.wanted.get("event")
        if values is None:
            return True
        if _PREFIXED_ACTIONS.intersection(values):
            return self._fuzzy("event", event.action)
        return event.action in values

    def _named(self, key: str, event: Event) -> bool:
        return self._fuzzy(key, event.actor_id) or self._fuzzy(
            key, event.attributes.get("name", "")
        )

    def _image(self, event: Event) -> bool:
        values = self.wanted.get("image")
        if values is None:
            return True
        name = event.attributes.get("name" if event.type == "image" else "image", "")
        candidates = {event.actor_id, name, _without_tag(event.actor_id), _without_tag(name)}
        return any(v in candidates for v in values)

    def _labels(self, attributes: dict[str, str]) -> bool:
        values = self.wanted.get("label")
        if values is None:
            return True
        if not attributes:
            return False
        for item in values:
            key, sep, value = item.partition("=")
            if key not in attributes or (sep and attributes[key] != value):
                return False
        return True


def _without_tag(name: str) -> str:
    """`busybox:1.36` -> `busybox`; what does not parse as a reference stays as it is."""
    if not name:
        return name
    try:
        return reference.parse(name, default_tag=None).familiar_repository
    except InvalidArgument:
        return name
