"""What every plugin class shares: its kind, its endpoints, and how errors travel.

A plugin class declares, per endpoint, which of its methods answers it and how
the request body is decoded. The server (`dockyard.sdk.server`) routes
`POST /<Kind>.<Method>` to that method, decodes the body into the request
model (keys in any case, as Docker's plugins accept them), awaits the method
if it is a coroutine, and encodes what it returns. A method the subclass does
not override answers as the kind's default says: a sensible answer for
optional endpoints, 404 for endpoints an engine treats as optional, and an
error for required ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


class PluginError(Exception):
    """Raise this from a plugin method to answer with an error: HTTP 500 and
    `{"Err": message}`, which engines show to the user as the call's error."""


class NotImplementedEndpoint(PluginError):
    """An endpoint this plugin does not serve (answered with 404)."""


@dataclass(frozen=True)
class Endpoint:
    method: str  # the Python method that answers
    request: type | None  # model the body decodes into; None: no arguments
    optional: bool = False  # not overridden -> 404, engines treat that as "not supported"
    wrap: Callable[[Any], Any] | None = None  # turns a convenient return value into the reply


class Plugin:
    """Base of the five plugin kinds. Subclass one of `VolumePlugin`, `NetworkPlugin`,
    `IpamPlugin`, `AuthzPlugin`, `LogPlugin`; serve one or several with `run()`."""

    kind: ClassVar[str] = ""
    endpoints: ClassVar[dict[str, Endpoint]] = {}

    def overrides(self, name: str) -> bool:
        """Whether this plugin's class overrides the kind's method `name`."""
        base = next(c for c in type(self).__mro__ if "endpoints" in c.__dict__)
        return getattr(type(self), name, None) is not getattr(base, name, None)

    def handler(self, endpoint: Endpoint) -> Callable[..., Any] | None:
        """The bound method for an endpoint, or None when it should answer 404."""
        if endpoint.optional and not self.overrides(endpoint.method):
            return None
        method: Callable[..., Any] = getattr(self, endpoint.method)
        return method


async def call(method: Callable[..., Any], *args: Any) -> Any:
    result = method(*args)
    if inspect.isawaitable(result):
        result = await result
    return result
