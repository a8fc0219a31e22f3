"""Platforms (`linux/arm64/v8`) and choosing one entry of an image index (spec §2.2).

Architectures are normalised the way containerd does (host names such as
`x86_64` become GOARCH names; an empty variant means `v8` on arm64 and `v7`
on arm), attestation entries are never chosen, entries of unknown media type
are skipped, and the first match wins.
"""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidArgument, NotFound
from dockyard.images import oci

_ARCH_ALIASES = {
    "x86_64": ("amd64", ""),
    "x86-64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "armv7l": ("arm", "v7"),
    "i386": ("386", ""),
    "i686": ("386", ""),
}
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7"}
ATTESTATION = "attestation-manifest"


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """`linux/amd64`, `linux/arm64/v8`, or just an architecture (`arm64`)."""
        parts = text.strip().lower().split("/")
        if not parts[0] or len(parts) > 3 or not all(parts):
            raise InvalidArgument(f'"{text}": unknown operating system or architecture')
        if len(parts) == 1:
            parts = ["linux", *parts]
        arch, variant = _normalise(parts[1], parts[2] if len(parts) == 3 else "")
        return cls(parts[0], arch, variant)

    @classmethod
    def host(cls) -> Platform:
        arch, variant = _normalise(_platform.machine().lower(), "")
        return cls("linux", arch, variant)

    @classmethod
    def of(cls, fields: dict[str, Any]) -> Platform:
        """From an index entry's `platform` object or an image config."""
        arch, variant = _normalise(
            str(fields.get("architecture") or ""), str(fields.get("variant") or "")
        )
        return cls(str(fields.get("os") or ""), arch, variant)

    def matches(self, other: Platform) -> bool:
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        # Without a variant asked for (amd64 usually), any variant of the architecture does.
        return not self.variant or not other.variant or self.variant == other.variant

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def _normalise(arch: str, variant: str) -> tuple[str, str]:
    arch, implied = _ARCH_ALIASES.get(arch, (arch, ""))
    variant = variant or implied or _DEFAULT_VARIANT.get(arch, "")
    if arch == "arm64" and variant == "8":
        variant = "v8"
    return arch, variant


def is_attestation(entry: dict[str, Any]) -> bool:
    annotations = entry.get("annotations") or {}
    if annotations.get("vnd.docker.reference.type") == ATTESTATION:
        return True
    fields = entry.get("platform") or {}
    return fields.get("os") == "unknown" and fields.get("architecture") == "unknown"


def select(index: dict[str, Any], wanted: Platform) -> dict[str, Any]:
    """The descriptor of the first runnable entry of `index` that matches `wanted`."""
    for entry in index.get("manifests") or []:
        if not isinstance(entry, dict) or entry.get("mediaType") not in oci.MANIFEST_TYPES:
            continue
        if is_attestation(entry):
            continue
        fields = entry.get("platform")
        if fields is None or wanted.matches(Platform.of(fields)):
            return entry
    raise NotFound(f"no matching manifest for {wanted} in the manifest list entries")
