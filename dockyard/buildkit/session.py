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

The daemon is the HTTP/2 client on a session's connection (`rpc.Client`). As BuildKit
does, it asks the client's Health service every few seconds and drops a session whose
client stops answering, so a build never waits on a client that is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from dockyard.buildkit import rpc
from dockyard.buildkit.pb import health_pb2
from dockyard.errors import InvalidArgument

log = logging.getLogger(__name__)

HEADER_ID = "X-Docker-Expose-Session-Uuid"
HEADER_NAME = "X-Docker-Expose-Session-Name"
HEADER_SHARED_KEY = "X-Docker-Expose-Session-Sharedkey"
HEADER_METHOD = "X-Docker-Expose-Session-Grpc-Method"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_INTERVAL = 5.0  # seconds between checks, BuildKit's
HEALTH_TIMEOUT = 30.0  # BuildKit's shortest allowance for one check


@dataclass
class Session:
    id: str
    name: str
    shared_key: str
    methods: frozenset[str]  # `/<package>.<Service>/<Method>`, lower-cased as BuildKit does
    client: rpc.Client
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def supports(self, method: str) -> bool:
        return method.lower() in self.methods

    async def call(self, method: str, metadata: rpc.Metadata | None = None) -> rpc.ClientCall:
        """Start a call to one of the methods the client serves."""
        return await self.client.open(method, metadata)

    async def check_health(self) -> str:
        """Ask the client's Health service; its status name (SERVING when all is well)."""
        reply = await asyncio.wait_for(
            self.client.unary(
                HEALTH_CHECK, health_pb2.HealthCheckRequest(), health_pb2.HealthCheckResponse
            ),
            HEALTH_TIMEOUT,
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


class SessionManager:
    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}
        self._reserved: set[str] = set()  # IDs whose upgrade is being answered
        self._changed = asyncio.Condition()

    def reserve(self, session_id: str) -> None:
        """Claim `session_id` before answering the upgrade; an ID that has a live session
        (or one being opened) is refused with moby's message. `serve()` or `release()`
        gives the claim back."""
        if session_id in self._sessions or session_id in self._reserved:
            raise InvalidArgument(f"session {session_id} already exists")
        self._reserved.add(session_id)

    def release(self, session_id: str) -> None:
        self._reserved.discard(session_id)

    async def serve(
        self,
        session_id: str,
        name: str,
        shared_key: str,
        methods: list[str],
        transport: rpc.Transport,
    ) -> None:
        """Hold the session `reserve()`d on `transport` (an upgraded connection) until the
        connection closes."""
        self._reserved.discard(session_id)
        client = rpc.Client(transport)
        session = Session(
            session_id, name, shared_key, frozenset(m.lower() for m in methods), client
        )
        self._sessions[session_id] = session
        async with self._changed:
            self._changed.notify_all()
        watch = asyncio.create_task(self._watch(session, transport))
        try:
            await client.run()
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await self.close(session)

    async def _watch(self, session: Session, transport: rpc.Transport) -> None:
        if not session.supports(HEALTH_CHECK):
            return
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            try:
                status = await session.check_health()
            except (rpc.RpcError, TimeoutError) as e:
                status = f"no answer ({e})"
            if status != "SERVING":
                log.info("session %s: client health %s; closing the session", session.id, status)
                with contextlib.suppress(OSError):
                    transport.close()
                return

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
