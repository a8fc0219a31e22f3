"""Typed engine errors.

The engine raises these; the API layer maps each class to one HTTP status code
(see `dockyard.api.app`), and the message text is what clients print, so it
follows Docker's wording where clients match on it.
"""


class DockyardError(Exception):
    """Base of every error the engine reports to a client."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DockyardError):
    """Bad input: malformed JSON, invalid values, bad references (400)."""

    status = 400


class NotFound(DockyardError):
    """The named object does not exist (404)."""

    status = 404


class Conflict(DockyardError):
    """The request conflicts with the object's current state (409)."""

    status = 409


class Forbidden(DockyardError):
    """The operation is not allowed on this object (403)."""

    status = 403


class NotModified(DockyardError):
    """Nothing to do: already started, already stopped (304)."""

    status = 304


class Unavailable(DockyardError):
    """A dependency (runtime, plugin, registry) could not do its part (500)."""

    status = 500


class NotImplementedByEngine(DockyardError):
    """A Docker feature Dockyard does not implement (501)."""

    status = 501


class Unauthorized(DockyardError):
    """Registry or plugin authentication failed (401)."""

    status = 401
