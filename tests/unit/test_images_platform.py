"""Platform selection from indexes, document sniffing, pull references, parallel gzip."""

from __future__ import annotations

import gzip
import io
import os

import pytest

from dockyard.api.images import pull_reference
from dockyard.errors import InvalidArgument, NotFound
from dockyard.images import oci
from dockyard.images.platform import Platform, select
from dockyard.layers.compression import compress_gzip, open_decompressed


def _entry(arch: str, os_: str = "linux", variant: str = "", **extra: object) -> dict:
    platform = {"architecture": arch, "os": os_, **({"variant": variant} if variant else {})}
    return {
        "mediaType": oci.MANIFEST,
        "digest": f"sha256:{arch}{variant}",
        "platform": platform,
        **extra,
    }


def test_arm64_host_takes_the_entry_without_variant() -> None:
    index = {"manifests": [_entry("amd64"), _entry("arm64"), _entry("arm", variant="v7")]}
    assert select(index, Platform.parse("linux/arm64/v8"))["digest"] == "sha256:arm64"
    assert select(index, Platform.parse("linux/arm"))["digest"] == "sha256:armv7"


def test_attestations_and_unknown_media_types_are_skipped_first_match_wins() -> None:
    attestation = _entry(
        "unknown",
        "unknown",
        annotations={"vnd.docker.reference.type": "attestation-manifest"},
    )
    weird = {**_entry("amd64"), "mediaType": "application/vnd.example.thing"}
    first, second = _entry("amd64"), {**_entry("amd64"), "digest": "sha256:second"}
    index = {"manifests": [attestation, weird, first, second]}
    assert select(index, Platform.parse("linux/amd64")) is first
    with pytest.raises(NotFound, match="no matching manifest for linux/s390x"):
        select(index, Platform.parse("linux/s390x"))


def test_platform_names_are_normalised() -> None:
    assert Platform.parse("linux/aarch64") == Platform("linux", "arm64", "v8")
    assert Platform.parse("x86_64") == Platform("linux", "amd64", "")
    assert str(Platform.parse("linux/arm/v6")) == "linux/arm/v6"
    with pytest.raises(InvalidArgument):
        Platform.parse("linux//")


def test_document_types_are_sniffed_and_mismatches_rejected() -> None:
    assert oci.document_type({"manifests": []}) == oci.INDEX
    assert oci.document_type({"config": {}, "layers": []}) == oci.MANIFEST
    assert oci.document_type({"schemaVersion": 1}) in oci.SCHEMA1_TYPES
    assert oci.document_type({"config": {}, "layers": []}, oci.DOCKER_MANIFEST) == (
        oci.DOCKER_MANIFEST
    )
    with pytest.raises(ValueError, match="does not match"):
        oci.document_type({"mediaType": oci.INDEX, "manifests": []}, oci.MANIFEST)


def test_pull_reference_from_image_and_tag_or_digest() -> None:
    digest = "sha256:" + "ab" * 32
    assert str(pull_reference("busybox", "")) == "docker.io/library/busybox:latest"
    assert str(pull_reference("127.0.0.1:5000/x", "2")) == "127.0.0.1:5000/x:2"
    assert pull_reference("127.0.0.1:5000/x", digest).digest == digest
    assert pull_reference(f"127.0.0.1:5000/x:1@{digest}", "").digest == digest


def test_parallel_gzip_round_trips_and_is_deterministic() -> None:
    data = os.urandom(3 << 20) + b"\0" * (2 << 20)
    out1, out2 = io.BytesIO(), io.BytesIO()
    compress_gzip(io.BytesIO(data), out1.write)
    compress_gzip(io.BytesIO(data), out2.write)
    assert out1.getvalue() == out2.getvalue()
    assert gzip.decompress(out1.getvalue()) == data
    with open_decompressed(io.BytesIO(out1.getvalue())) as stream:
        assert stream.read() == data
    empty = io.BytesIO()
    compress_gzip(io.BytesIO(b""), empty.write)
    assert gzip.decompress(empty.getvalue()) == b""
