"""BuildKit sessions: the connections clients open on `/session` for the daemon to call.

A BuildKit client (buildx, compose) runs a gRPC *server* on its end of `/session` and
names what it serves in the upgrade request's headers: the session's ID
(`X-Docker-Expose-Session-Uuid`), a name and shared key, and one
`X-Docker-Expose-Session-Grpc-Method` per method (FileSync for the build context and
Dockerfile, Auth for registry credentials, Secrets, SSH forwarding, Health). A build
(Solve) names the session it belongs to; the daemon then calls those methods as the
gRPC client of that connection.

Lifecycle: `open()` registers a session when the upgrade is answered, `get()` finds it
(waiting for it to arrive: clients open the session and send Solve at the same time),
and the session goes away when its connection closes. One ID is one session at a time.

This increment registers sessions and holds their connections; calling into them is the
next one (see docs/design.md, "BuildKit endpoint").
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument

HEADER_ID = "X-Docker-Expose-Session-Uuid"
HEADER_NAME = "X-Docker-Expose-Session-Name"
HEADER_SHARED_KEY = "X-Docker-Expose-Session-Sharedkey"
HEADER_METHOD = "X-Docker-Expose-Session-Grpc-Method"


@dataclass
class Session:
    id: str
    name: str
    shared_key: str
    methods: frozenset[str]  # `/<package>.<Service>/<Method>`, lower-cased as BuildKit does
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def supports(self, method: str) -> bool:
        return method.lower() in self.methods


class SessionManager:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._changed = asyncio.Condition()

    def check(self, session_id: str) -> None:
        """Refuse an upgrade for an ID that already has a live session (moby's message)."""
        if session_id in self._sessions:
            raise InvalidArgument(f"session {session_id} already exists")

    async def open(
        self, session_id: str, name: str, shared_key: str, methods: list[str]
    ) -> Session:
        self.check(session_id)
        session = Session(session_id, name, shared_key, frozenset(m.lower() for m in methods))
        self._sessions[session_id] = session
        async with self._changed:
            self._changed.notify_all()
        return session

    async def close(self, session: Session) -> None:
        session.closed.set()
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]
        async with self._changed:
            self._changed.notify_all()

    async def get(self, session_id: str) -> Session:
        """The live session `session_id` (a `<prefix>:<id>` form is accepted), waiting for
        it to be opened; the caller bounds the wait."""
        _, _, bare = session_id.rpartition(":")
        async with self._changed:
            await self._changed.wait_for(lambda: bare in self._sessions)
            return self._sessions[bare]
