"""OCI and Docker image media types, and the documents Dockyard writes.

Documents are serialised once, hashed as bytes and stored as those exact bytes
(a JSON document is never re-serialised after it has been hashed).
"""

from __future__ import annotations

import json
import platform
import time
from typing import Any

from dockyard.snapshots.layers import chain_ids

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA1_TYPES = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

INDEX_TYPES = (INDEX, DOCKER_LIST)
IMAGE_MANIFEST_TYPES = (MANIFEST, DOCKER_MANIFEST)
MANIFEST_TYPES = INDEX_TYPES + IMAGE_MANIFEST_TYPES
CONFIG_TYPES = (CONFIG, DOCKER_CONFIG)
UNCOMPRESSED_LAYER_TYPES = (LAYER, DOCKER_LAYER)
# What a registry is asked for: without the index types it may choose a platform itself.
ACCEPT = ", ".join(MANIFEST_TYPES)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def host_arch() -> str:
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def canonical_json(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def now_rfc3339() -> str:
    return rfc3339(time.time_ns())


def rfc3339(ns: int) -> str:
    """RFC 3339 UTC with exactly nine fractional digits, as Docker prints times."""
    seconds, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


ZERO_TIME = "0001-01-01T00:00:00Z"


def document_type(doc: Any, content_type: str = "") -> str:
    """The media type of a manifest or index document (spec §2.1's sniffing rules).

    The document's own `mediaType` wins, and must agree with the transport's
    Content-Type when both are known; without either, the shape decides.
    """
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    declared = doc.get("mediaType")
    content_type = content_type.split(";")[0].strip()
    if isinstance(declared, str) and declared:
        if content_type in MANIFEST_TYPES + SCHEMA1_TYPES and content_type != declared:
            raise ValueError(f"mediaType {declared} does not match Content-Type {content_type}")
        return declared
    if content_type in MANIFEST_TYPES + SCHEMA1_TYPES:
        return content_type
    if doc.get("schemaVersion") == 1:
        return SCHEMA1_TYPES[0]
    if isinstance(doc.get("manifests"), list):
        return INDEX
    if isinstance(doc.get("config"), dict) and isinstance(doc.get("layers"), list):
        return MANIFEST
    raise ValueError("neither an image manifest nor an index")


def descriptor(media_type: str, digest: str, size: int) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": digest, "size": size}


def manifest(config: dict[str, Any], layers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": layers}


class ConfigAccessors:
    """What records that carry an image config (`self.config`) read from it."""

    config: dict[str, Any]

    @property
    def diff_ids(self) -> list[str]:
        return list((self.config.get("rootfs") or {}).get("diff_ids") or [])

    @property
    def chain_id(self) -> str | None:
        """The ChainID of the whole layer stack (None for an image without layers)."""
        chains = chain_ids(self.diff_ids)
        return chains[-1] if chains else None

    @property
    def run_config(self) -> dict[str, Any]:
        """The config's `config` object: Env, Cmd, Entrypoint, WorkingDir, ..."""
        return dict(self.config.get("config") or {})
