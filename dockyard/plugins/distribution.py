"""Managed plugins in registries: their privileges, fetching them (install, upgrade), pushing.

A plugin travels as an image whose config is the plugin's `config.json`
(media type `application/vnd.docker.plugin.v1+json`, `rootfs.diff_ids` filled
in) and whose layers, gzip tars, make its root filesystem; the manifest is
Docker's schema 2 (registries refuse plugin configs in OCI manifests), OCI
manifests and indexes are accepted on the way in.

`fetch` downloads the manifest, the config and the layers into the plugin blob
store (`<data-root>/plugins/storage`), verified by digest, with progress
events, and pins them until the caller has installed or upgraded the plugin
(`ManagedPlugins.install`/`upgrade` unpack the layers and check the
privileges the user granted). `push` uploads a plugin's blobs and manifest
under the plugin's own name, the way image push does (same upload code).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.images import oci, reference
from dockyard.images.platform import Platform, select
from dockyard.images.reference import Reference
from dockyard.plugins import config as plugin_config
from dockyard.plugins.config import PluginConfig
from dockyard.plugins.managed import PLUGIN_CONFIG, ManagedPlugin, ManagedPlugins, PluginImage
from dockyard.registry.auth import Credentials
from dockyard.registry.client import RegistryError, RegistryService, Repository
from dockyard.registry.progress import Event, Report, short_id
from dockyard.registry.pull import (
    Document,
    checked_descriptor,
    download_blob,
    fetch_manifest,
    fetch_small_blob,
    not_found_message,
)
from dockyard.registry.push import Blob, BlobUploads

_LAYER_TYPES = (oci.DOCKER_LAYER_GZIP, oci.LAYER_GZIP, oci.DOCKER_LAYER, oci.LAYER)


@dataclass(frozen=True)
class Fetched:
    """A plugin image fetched into the plugin blob store, ready to be installed."""

    reference: Reference
    image: PluginImage
    pinned: list[str]  # blobs kept from collection until `ManagedPlugins.unpin(pinned)`


@dataclass(frozen=True)
class _Remote:
    repo: Repository
    top: Document
    manifest: Document
    config: dict[str, Any]  # descriptor
    layers: list[dict[str, Any]]  # descriptors


def local_name(remote: Reference, alias: str = "") -> str:
    """The name a plugin pulled from `remote` gets (Docker's rules): the alias if given
    (`:latest` added when it has no tag; never a digest), else the remote's familiar
    name with its tag (`latest` for a reference by digest only)."""
    if alias:
        named = reference.parse(alias)
        if named.digest:
            raise InvalidArgument("cannot use digest in plugin tag")
        return named.familiar()
    return Reference(remote.domain, remote.path, remote.tag or "latest", None).familiar()


class PluginDistribution:
    def __init__(self, registry: RegistryService, managed: ManagedPlugins) -> None:
        self.registry = registry
        self.managed = managed

    async def _remote(self, ref: Reference, credentials: Credentials) -> _Remote:
        repo = self.registry.repository(ref.domain, ref.path, credentials, ("pull",))
        target = ref.digest or ref.tag or "latest"
        try:
            top = await fetch_manifest(repo, target, ref.digest)
        except RegistryError as e:
            if e.http_status in (401, 403, 404):
                raise NotFound(not_found_message(e, ref)) from None
            raise
        manifest = top
        while manifest.media_type in oci.INDEX_TYPES:
            entry = select(manifest.doc, Platform.host())
            manifest = await fetch_manifest(repo, entry["digest"], entry["digest"])
        config = checked_descriptor(manifest.doc.get("config"), "config")
        if config.get("mediaType") != PLUGIN_CONFIG:
            raise InvalidArgument(
                f"{ref.familiar()} is not a plugin (config media type "
                f"{config.get('mediaType')!r}, not {PLUGIN_CONFIG})"
            )
        layers = manifest.doc.get("layers")
        if not isinstance(layers, list) or not layers:
            raise InvalidArgument(f"invalid plugin manifest for {ref.familiar()}: no layers")
        layers = [checked_descriptor(d, f"layer {i}") for i, d in enumerate(layers)]
        for layer in layers:
            if layer.get("mediaType") not in _LAYER_TYPES:
                raise InvalidArgument(
                    f"invalid plugin manifest for {ref.familiar()}: unsupported layer "
                    f"media type {layer.get('mediaType')!r}"
                )
        return _Remote(repo, top, manifest, config, layers)

    async def _config(self, remote: _Remote) -> tuple[bytes, PluginConfig]:
        """The config blob and the config it holds, validated as at create, with the
        `rootfs` the image declares."""
        raw = await fetch_small_blob(
            remote.repo, remote.config, plugin_config.MAX_CONFIG_SIZE, "plugin config"
        )
        config = plugin_config.parse(raw)
        config.rootfs = PluginConfig.decode(json.loads(raw)).rootfs
        return raw, config

    async def privileges(self, ref: Reference, credentials: Credentials) -> list[dict[str, Any]]:
        """What the plugin at `ref` asks of the host (its config only is downloaded)."""
        remote = await self._remote(ref, credentials)
        _, config = await self._config(remote)
        return plugin_config.privileges(config)

    async def install(
        self,
        remote: Reference,
        name: str,
        granted: Any,
        credentials: Credentials,
        report: Report,
    ) -> ManagedPlugin:
        """`plugin install`: a disabled plugin `name` from `remote`, if `granted` are the
        privileges it asks for (checked before its layers are downloaded)."""
        self.managed.check_available(name)
        fetched = await self.fetch(
            remote, credentials, report, lambda c: plugin_config.check_privileges(c, granted)
        )
        try:
            plugin = await self.managed.install(name, fetched.image, granted, str(remote))
        finally:
            self.managed.unpin(fetched.pinned)
        self.managed.emit_pull(remote.familiar(), name)
        return plugin

    async def upgrade(
        self,
        name: str,
        remote: Reference,
        granted: Any,
        credentials: Credentials,
        report: Report,
    ) -> ManagedPlugin:
        """`plugin upgrade`: the disabled plugin `name` gets `remote`'s rootfs and config."""
        plugin = self.managed.find(name)
        if plugin.enabled:
            raise Conflict(
                f"plugin must be disabled before upgrading: plugin {plugin.name} is enabled"
            )
        fetched = await self.fetch(
            remote, credentials, report, lambda c: plugin_config.check_privileges(c, granted)
        )
        try:
            plugin = await self.managed.upgrade(name, fetched.image, granted, str(remote))
        finally:
            self.managed.unpin(fetched.pinned)
        self.managed.emit_pull(remote.familiar(), plugin.name)
        return plugin

    async def fetch(
        self,
        ref: Reference,
        credentials: Credentials,
        report: Report,
        accept: Callable[[PluginConfig], None] = lambda config: None,
    ) -> Fetched:
        """Download the plugin at `ref` into the plugin blob store; `accept` may refuse its
        config before any layer is downloaded. The blobs stay pinned (safe from
        collection) until `ManagedPlugins.unpin(fetched.pinned)`."""
        remote = await self._remote(ref, credentials)
        raw, config = await self._config(remote)
        accept(config)  # before the first event: a refusal is an ordinary error reply
        report(Event(f"Pulling from {ref.familiar_repository}", ref.tag or "latest", detail=False))
        report(Event(f"Digest: {remote.top.digest}"))
        blobs = self.managed.blobs
        pinned = [remote.config["digest"], *(layer["digest"] for layer in remote.layers)]
        self.managed.pin(pinned)
        try:
            await asyncio.to_thread(blobs.put, raw, remote.config["digest"])
            limit = asyncio.Semaphore(self.registry.settings.max_concurrent_downloads)
            jobs = []
            for layer in remote.layers:
                if blobs.exists(layer["digest"]):
                    report(Event("Already exists", short_id(layer["digest"])))
                else:
                    report(Event("Pulling fs layer", short_id(layer["digest"])))
                    jobs.append(download_blob(remote.repo, layer, blobs, limit, report))
            await asyncio.gather(*jobs)
            manifest = _schema2(remote.manifest, remote.config, remote.layers)
            digest = await asyncio.to_thread(blobs.put, manifest)
            self.managed.pin([digest])
            pinned.append(digest)
        except BaseException:
            self.managed.unpin(pinned)
            raise
        layers = [layer["digest"] for layer in remote.layers]
        diff_ids = config.rootfs.diff_ids if config.rootfs else []
        return Fetched(ref, PluginImage(digest, config, layers, diff_ids), pinned)

    async def push(self, plugin: ManagedPlugin, credentials: Credentials, report: Report) -> None:
        """Upload the plugin under its own name (`registry/repo:tag`)."""
        ref = reference.parse(plugin.name)
        tag = ref.tag or "latest"
        blobs = self.managed.blobs
        if not plugin.manifest or not blobs.exists(plugin.manifest):
            raise NotFound(f"plugin {plugin.name} has no stored image to push")
        body = blobs.read(plugin.manifest)
        manifest = json.loads(body)
        repo = self.registry.repository(ref.domain, ref.path, credentials, ("pull", "push"))
        report(Event(f"The push refers to repository [{ref.familiar_repository}]"))
        layers = [Blob(d["digest"], d["size"], d["mediaType"], True) for d in manifest["layers"]]
        config = manifest["config"]
        for layer in reversed(layers):
            report(Event("Preparing", short_id(layer.digest)))
        uploads = BlobUploads(self.registry, blobs)
        limit = asyncio.Semaphore(self.registry.settings.max_concurrent_uploads)
        tasks = [
            asyncio.create_task(uploads.push(repo, blob, limit, report))
            for blob in [*layers, Blob(config["digest"], config["size"], PLUGIN_CONFIG, False)]
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        url = await repo.url(f"manifests/{tag}")
        async with repo.request(
            "PUT", url, headers={"Content-Type": oci.DOCKER_MANIFEST}, body=body, ok=(200, 201)
        ) as resp:
            announced = resp.headers.get("Docker-Content-Digest", "")
        if announced and announced != plugin.manifest:
            raise Unavailable(
                f"registry stored the manifest as {announced}, but its digest is {plugin.manifest}"
            )
        report(Event(f"{tag}: digest: {plugin.manifest} size: {len(body)}"))
        report(Event("", aux={"Tag": tag, "Digest": plugin.manifest, "Size": len(body)}))


def _schema2(manifest: Document, config: dict[str, Any], layers: list[dict[str, Any]]) -> bytes:
    """The manifest to keep (and push again later): the registry's own bytes when it is a
    schema-2 manifest, else (OCI) the same content as schema 2, which registries require
    for plugins."""
    if manifest.media_type == oci.DOCKER_MANIFEST:
        return manifest.body
    return oci.canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": oci.DOCKER_MANIFEST,
            "config": {
                "mediaType": PLUGIN_CONFIG,
                "digest": config["digest"],
                "size": config["size"],
            },
            "layers": [
                {
                    "mediaType": oci.DOCKER_LAYER_GZIP
                    if layer["mediaType"] in (oci.DOCKER_LAYER_GZIP, oci.LAYER_GZIP)
                    else oci.DOCKER_LAYER,
                    "digest": layer["digest"],
                    "size": layer["size"],
                }
                for layer in layers
            ],
        }
    )
