"""Fuzzing the Engine API with schemathesis, driven by Docker's own OpenAPI document.

`docker-engine-api-v1.45.yaml` is moby's `api/swagger.yaml` at v26.1.4 (Apache-2.0,
vendored with its origin in its header). For each operation it describes, schemathesis
generates requests, both valid ones (positive) and ones that break the document's rules
(negative), and each is sent to a private daemon. What must hold for every request:

* the daemon answers, and is still alive after it;
* no 500, except the few Docker documents as the OCI runtime's failures (`ALLOWED_500`,
  each with the operation and the message it must carry);
* an error reply is Docker's `{"message": "..."}` JSON (clients decode it);
* a refused request (4xx, 501, 503) changes no state: containers, images, volumes,
  networks and plugins are the same before and after it.

Path parameters are sometimes replaced by real objects (a running container, the image,
a volume, a network, an exec instance), so that requests get past the lookup to the
decoding and validation behind it; the objects are made again when a request removed or
stopped them. Half the container creations name the image that is there; a container a
create accepted is started (unless its configuration reaches outside the daemon's own
objects: host paths, devices, namespaces, ports; see `HOST_REACHING`) and must not get
a 500 there either, since a value create lets through and start cannot use is create's
bug, and then removed. Requests that would reach the network (pulls, pushes, logins, searches,
remote build contexts) or hold their connection open (attach, events, exec start) are
left out or tamed, each with its reason below; network creations are kept to the
daemon's private address range, so the fuzz never routes a host's address to a bridge.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import schemathesis
from docker.transport import UnixHTTPAdapter
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.harness import Daemon

SPEC = Path(__file__).with_name("docker-engine-api-v1.45.yaml")
BASE_URL = "http://dockyard/v1.45"
REQUEST_TIMEOUT = 120  # only so that a hung request fails the run instead of stalling it
IMAGE = "demo/busybox:1"
FIXTURE_LABEL = "dockyard.fuzz.fixture"

EXCLUDED = {
    "GET /events": "a stream that lasts as long as its client",
    "POST /containers/{id}/attach": "hijacks the connection",
    "GET /containers/{id}/attach/ws": "a websocket",
    "POST /exec/{id}/start": "hijacks the connection",
    "POST /session": "hijacks the connection for BuildKit's gRPC",
    "POST /images/create": "pulls from a registry (no network at test time)",
    "POST /images/{name}/push": "pushes to a registry",
    "GET /images/search": "asks a registry",
    "POST /auth": "logs in to a registry",
    "GET /distribution/{name}/json": "asks a registry",
    "GET /plugins/privileges": "asks a registry",
    "POST /plugins/pull": "pulls from a registry",
    "POST /plugins/{name}/upgrade": "pulls from a registry",
    "POST /plugins/{name}/push": "pushes to a registry",
}
# Operations whose path parameter is never a real object: on the running fixture they
# would wait for it to stop.
NOT_SEEDED = {"POST /containers/{id}/wait"}
# Query parameters dropped everywhere: `remote` makes a build fetch its context from a
# URL, `pull` makes it pull its base image; on a real container `follow` keeps logs open.
DROPPED_QUERY = {
    "POST /build": ("remote", "pull"),
    "GET /containers/{id}/logs": ("follow",),
}
# ...and set: stats stream by default, as long as their client reads.
FORCED_QUERY = {"GET /containers/{id}/stats": {"stream": "false"}}
REFUSALS = range(400, 500)
REFUSING_5XX = (501, 503)  # not implemented here; swarm is inactive


@dataclass(frozen=True)
class Allowed500:
    """A 500 Docker documents: the OCI runtime (or the kernel through it) refused."""

    label: str  # "METHOD /path" as the document writes it
    messages: tuple[str, ...]  # the reply's message carries one of these
    reason: str
    # ...but not one of these: Docker answers 400 when the command is missing or cannot
    # be run (moby's translateContainerdStartErr)
    not_when: tuple[str, ...] = ()

    def allows(self, what: str, message: str) -> bool:
        lowered = message.lower()
        return (
            what == self.label
            and any(m.lower() in lowered for m in self.messages)
            and not any(m in lowered for m in self.not_when)
        )


RUNTIME_FAILURES = ("runc", "crun", "OCI runtime", "container monitor")
COMMAND_ERRORS = ("executable file not found", "no such file or directory", "permission denied")
ALLOWED_500 = (
    Allowed500(
        "POST /containers/{id}/start",
        RUNTIME_FAILURES,
        "the OCI runtime cannot run what the container's config asks",
        COMMAND_ERRORS,
    ),
    Allowed500(
        "POST /containers/{id}/restart",
        RUNTIME_FAILURES,
        "the OCI runtime cannot run what the container's config asks",
        COMMAND_ERRORS,
    ),
    Allowed500(
        "POST /containers/{id}/update",
        ("Cannot update container",),
        "the kernel refuses a resource value (Docker answers 500 too)",
    ),
)


@schemathesis.serializer("application/x-tar")
def _tar_body(ctx: Any, value: Any) -> bytes:
    """Image loads and plugin creations take a tar stream: the generated bytes are sent as
    they are, or (for every other value) as one member of a real tar, so that requests get
    past the tar reader to what looks at the archive's content."""
    data = value if isinstance(value, bytes) else json.dumps(value, default=repr).encode()
    if hashlib.sha256(data).digest()[0] % 2:
        return data
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        name = "manifest.json" if data[:1] in (b"[", b"{") else "config.json"
        member = tarfile.TarInfo(name)
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return out.getvalue()


def label(case: Any) -> str:
    return f"{case.operation.method.upper()} {case.operation.path}"


def load_schema() -> Any:
    return schemathesis.openapi.from_path(str(SPEC))


def operations() -> list[Any]:
    """Every operation of the document the fuzz sends, in its order."""
    found = []
    for result in load_schema().get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" not in EXCLUDED:
            found.append(operation)
    return found


def strategy(operation: Any) -> Any:
    """Valid and invalid requests for one operation."""
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    try:
        negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    except Exception:  # nothing in the operation can be made invalid
        return positive
    return st.one_of(positive, negative)


@dataclass
class State:
    containers: list[Any]
    fixture: Any
    images: list[Any]
    volumes: list[Any]
    networks: list[Any]
    plugins: list[Any]

    def differences(self, other: State) -> list[str]:
        return [
            name
            for name in ("containers", "fixture", "images", "volumes", "networks", "plugins")
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass
class Target:
    """A private daemon with the objects requests are pointed at."""

    daemon: Daemon
    busybox_tar: Path
    session: requests.Session = field(default_factory=requests.Session)
    image_id: str = ""
    exec_id: str = ""
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    trace: Path | None = None  # every request is appended here before it is sent
    _subnet: int = 100

    def __post_init__(self) -> None:
        self.session.mount("http://", UnixHTTPAdapter("http+unix://" + self.daemon.socket))

    # -- the daemon's objects ------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, BASE_URL + path, timeout=REQUEST_TIMEOUT, **kwargs)

    def ensure(self) -> None:
        """Make the objects requests are pointed at again, if a request took them."""
        if self.api("GET", f"/images/{IMAGE}/json").status_code != 200:
            if self.image_id and self.api("GET", f"/images/{self.image_id}/json").ok:
                self.api("POST", f"/images/{self.image_id}/tag", params={"repo": IMAGE})
            else:
                self.daemon.cli("import", str(self.busybox_tar), IMAGE, check=True)
        self.image_id = self.api("GET", f"/images/{IMAGE}/json").json()["Id"]
        if self.api("GET", "/volumes/fuzz-vol").status_code != 200:
            self.api("POST", "/volumes/create", json={"Name": "fuzz-vol"}).raise_for_status()
        if self.api("GET", "/networks/fuzz-net").status_code != 200:
            body = {"Name": "fuzz-net", "IPAM": {"Config": [{"Subnet": self.daemon.subnet(9)}]}}
            self.api("POST", "/networks/create", json=body).raise_for_status()
        fixture = self.api("GET", "/containers/fuzz-c/json")
        running = fixture.ok and fixture.json()["State"]["Status"] == "running"
        if not running:
            self._fixture_container()
        if not self.exec_id or self.api("GET", f"/exec/{self.exec_id}/json").status_code != 200:
            created = self.api("POST", "/containers/fuzz-c/exec", json={"Cmd": ["true"]})
            created.raise_for_status()
            self.exec_id = created.json()["Id"]

    def _fixture_container(self) -> None:
        listed = self.api("GET", "/containers/json", params={"all": "1"}).json()
        for container in listed:
            if FIXTURE_LABEL in (container.get("Labels") or {}) or "/fuzz-c" in container["Names"]:
                self.api("DELETE", f"/containers/{container['Id']}", params={"force": "1"})
        body = {
            "Image": IMAGE,
            # it ends at SIGTERM (within a second): a stop with any timeout returns
            "Cmd": ["sh", "-c", "trap 'exit 0' TERM; while sleep 1; do :; done"],
            "Labels": {FIXTURE_LABEL: ""},
            "HostConfig": {"Binds": ["fuzz-vol:/data"], "NetworkMode": "fuzz-net"},
        }
        created = self.api("POST", "/containers/create", params={"name": "fuzz-c"}, json=body)
        created.raise_for_status()
        self.api("POST", "/containers/fuzz-c/start").raise_for_status()

    def snapshot(self) -> State:
        def get(path: str, **params: str) -> Any:
            return self.api("GET", path, params=params).json()

        containers = get("/containers/json", all="1")
        fixture = [(c["Id"], c["State"], c["Names"]) for c in containers if "/fuzz-c" in c["Names"]]
        return State(
            containers=sorted((c["Id"], c["Names"], c["ImageID"]) for c in containers),
            fixture=fixture,
            images=sorted(
                (i["Id"], sorted(i["RepoTags"] or []), sorted(i["RepoDigests"] or []))
                for i in get("/images/json", all="1")
            ),
            volumes=sorted((v["Name"], v["Driver"]) for v in get("/volumes")["Volumes"] or []),
            networks=sorted((n["Id"], n["Name"]) for n in get("/networks")),
            plugins=sorted(p["Id"] for p in get("/plugins")),
        )

    # -- one request ----------------------------------------------------------------

    def _seeds(self) -> dict[str, str]:
        return {
            "/containers/": "fuzz-c",
            "/images/": IMAGE,
            "/volumes/": "fuzz-vol",
            "/networks/": "fuzz-net",
            "/exec/": self.exec_id,
        }

    def prepare(self, case: Any) -> None:
        """Point some requests at real objects; keep the rest off the network and the
        host's addresses."""
        what = label(case)
        digest = hashlib.sha256(repr(case.path_parameters).encode()).digest()
        if case.path_parameters and what not in NOT_SEEDED and digest[0] % 2 == 0:
            for prefix, seed in self._seeds().items():
                if case.operation.path.startswith(prefix):
                    key = next(iter(case.path_parameters))
                    case.path_parameters[key] = seed
        if what in DROPPED_QUERY or what in FORCED_QUERY:
            if not isinstance(case.query, dict):
                case.query = {}
            for name in DROPPED_QUERY.get(what, ()):
                case.query.pop(name, None)
            case.query.update(FORCED_QUERY.get(what, {}))
        if what == "POST /networks/create" and isinstance(case.body, dict):
            self._private_network(case.body)
        body_digest = hashlib.sha256(repr(case.body).encode()).digest()
        if what == "POST /containers/create" and isinstance(case.body, dict) and body_digest[0] % 2:
            # half of them with the image there (whose config has no command), on its
            # platform, to get past those checks to the rest
            case.body["Image"] = IMAGE
            case.body.setdefault("Cmd", ["true"])
            if isinstance(case.query, dict):
                case.query.pop("platform", None)

    def _private_network(self, body: dict[str, Any]) -> None:
        options = body.get("Options")
        if isinstance(options, dict):
            options.pop("com.docker.network.bridge.name", None)
        ipam = body.get("IPAM")
        configs = ipam.get("Config") if isinstance(ipam, dict) else None
        if not isinstance(configs, list):
            return
        for config in configs:
            if not isinstance(config, dict):
                continue
            if _is_address(config.get("Subnet")) or _is_address(config.get("IPRange")):
                self._subnet = 100 + (self._subnet - 99) % 100
                version = _version(config.get("Subnet") or config.get("IPRange"))
                private = (
                    self.daemon.subnet6(self._subnet)
                    if version == 6
                    else self.daemon.subnet(self._subnet)
                )
                config["Subnet"] = private
                config.pop("IPRange", None)
                if _is_address(config.get("Gateway")):
                    config.pop("Gateway")
            if isinstance(config.get("AuxiliaryAddresses"), dict):
                config["AuxiliaryAddresses"] = {
                    k: v for k, v in config["AuxiliaryAddresses"].items() if not _is_address(v)
                }

    def send(self, case: Any) -> int:
        """Send one generated request and check what must hold; returns its status."""
        self.ensure()
        self.prepare(case)
        before = self.snapshot()
        kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        reproduce = _reproduction(kwargs)
        if self.trace is not None:
            with open(self.trace, "a") as f:
                f.write(reproduce + "\n")
        try:
            response = self._request(kwargs)
        except requests.ConnectionError as e:
            alive = self._alive()
            raise AssertionError(
                f"{label(case)}: no reply ({e}); daemon {'alive' if alive else 'DEAD'}\n"
                f"{reproduce}\n{self._log_tail() if not alive else ''}"
            ) from None
        status = response.status_code
        self.sent += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        assert self._alive(), f"{label(case)} killed the daemon\n{reproduce}\n{self._log_tail()}"
        body = response.content
        if status == 500:
            message = _message(body)
            allowed = [a for a in ALLOWED_500 if a.allows(label(case), message)]
            assert allowed, f"{label(case)} answered 500: {message}\n{reproduce}"
        if status >= 400 and case.operation.method.upper() != "HEAD":
            assert response.headers.get("Content-Type") == "application/json", (
                f"{label(case)} answered {status} with "
                f"{response.headers.get('Content-Type')}: {body[:200]!r}\n{reproduce}"
            )
            assert isinstance(json.loads(body).get("message"), str), reproduce
        if status in REFUSALS or status in REFUSING_5XX:
            after = self.snapshot()
            changed = before.differences(after)
            assert not changed, (
                f"{label(case)} was refused ({status}: {_message(body)}) but changed "
                f"{', '.join(changed)}:\n"
                + "\n".join(
                    f"  {name}: {getattr(before, name)} -> {getattr(after, name)}"
                    for name in changed
                )
                + f"\n{reproduce}"
            )
        if what_created := self._created(case, status, response):
            if _harmless(case.body):
                self._start_created(what_created, reproduce)
            else:
                self.api("DELETE", f"/containers/{what_created}", params={"force": "1", "v": "1"})
        return status

    def _created(self, case: Any, status: int, response: requests.Response) -> str:
        """The ID of a container this request created ("" if none)."""
        if label(case) != "POST /containers/create" or status != 201:
            return ""
        return str(json.loads(response.content).get("Id", ""))

    def _start_created(self, container_id: str, reproduce: str) -> None:
        """A configuration create accepted must start, or be refused by the runtime for a
        reason Docker also leaves to it: values create should have refused with a 400
        (issue 12's validation gaps) show here as a 500. The container goes afterwards."""
        try:
            started = self.api("POST", f"/containers/{container_id}/start")
            message = _message(started.content)
            assert started.status_code != 500 or any(
                a.allows("POST /containers/{id}/start", message) for a in ALLOWED_500
            ), f"a container create accepted does not start (500: {message})\n{reproduce}"
        finally:
            self.api("DELETE", f"/containers/{container_id}", params={"force": "1", "v": "1"})

    def _request(self, kwargs: dict[str, Any]) -> requests.Response:
        """The reply, read whole within REQUEST_TIMEOUT (a stream that keeps sending would
        never trip a read timeout); chunks are taken as they come, so the deadline is
        looked at whenever the daemon sends something."""
        deadline = time.monotonic() + REQUEST_TIMEOUT
        response = self.session.request(**kwargs, timeout=REQUEST_TIMEOUT, stream=True)
        chunks = []
        with response:
            for chunk in response.iter_content(None):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{kwargs['method']} {kwargs['url']}: the reply did not end within "
                        f"{REQUEST_TIMEOUT}s"
                    )
        response._content = b"".join(chunks)
        return response

    def _alive(self) -> bool:
        try:
            return self.api("GET", "/_ping").status_code == 200
        except requests.ConnectionError:
            return False

    def _log_tail(self) -> str:
        return self.daemon.log_path.read_text(errors="replace")[-3000:]


# What a generated container may not ask for if it is to be started: anything that
# reaches outside the daemon's own objects (host paths, devices, namespaces, cgroups,
# ports, capabilities), so that starting it cannot touch the host.
HOST_REACHING = {
    "binds", "mounts", "devices", "devicecgrouprules", "cgroupparent", "cgroup", "pidmode",
    "ipcmode", "utsmode", "usernsmode", "privileged", "portbindings", "publishallports",
    "volumesfrom", "capadd", "securityopt", "links", "maskedpaths", "readonlypaths",
    "runtime", "logconfig", "init", "volumedriver",
}  # fmt: skip
PRIVATE_NETWORKS = {"", "default", "bridge", "none", "fuzz-net"}


def _harmless(body: Any) -> bool:
    """Whether a create body keeps its container to what the daemon owns (keys match
    case-insensitively, as Docker decodes them)."""
    if not isinstance(body, dict):
        return False
    fields = {str(k).lower(): v for k, v in body.items()}
    host_config = fields.get("hostconfig") or {}
    if not isinstance(host_config, dict):
        return False
    settings = {str(k).lower(): v for k, v in host_config.items()}
    if any(settings.get(key) for key in HOST_REACHING):
        return False
    if settings.get("networkmode") not in (None, *PRIVATE_NETWORKS):
        return False
    return not fields.get("networkingconfig")  # a network could be `host`


def _is_address(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _version(value: str) -> int:
    return ipaddress.ip_network(value, strict=False).version


def _message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300].decode(errors="replace")
    return str(data.get("message", "")) if isinstance(data, dict) else str(data)[:300]


def _reproduction(kwargs: dict[str, Any]) -> str:
    body = kwargs.get("json", kwargs.get("data"))
    if isinstance(body, bytes):
        shown = repr(body[:500])
    else:
        shown = json.dumps(body, default=repr)[:1500] if body is not None else ""
    return (
        f"request: {kwargs.get('method')} {kwargs.get('url')} params={kwargs.get('params')} "
        f"headers={kwargs.get('headers')} body={shown}"
    )


def fuzz(target: Target, operation: Any, examples: int, *, shrink: bool = False) -> None:
    """Send `examples` generated requests for one operation; the first broken rule fails
    (shrunk to a small request with `shrink`)."""
    phases = [Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])]

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=phases,
        derandomize=False,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy(operation))
    def run(case: Any) -> None:
        target.send(case)

    run()


def labels(ops: list[Any]) -> Iterator[str]:
    for operation in ops:
        yield f"{operation.method.upper()} {operation.path}"
