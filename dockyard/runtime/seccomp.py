"""Docker-style seccomp profiles, turned into an OCI `linux.seccomp` object.

Docker's and containers-common's profiles are not OCI: they carry an `archMap`
(native arch -> sub-architectures) and rules guarded by `includes`/`excludes`
conditions on capabilities, architectures and a minimum kernel. `to_oci`
evaluates those conditions for one container, following moby's
`profiles/seccomp/seccomp_linux.go`:

* `excludes` drops a rule if any listed cap is held, the host arch is listed,
  or the kernel is at least `minKernel`;
* `includes` keeps a rule only if every listed cap is held, the host arch is
  listed, and the kernel is at least `minKernel`;
* conditions compare against the container's final (bounding) capability set;
  arches in conditions are libseccomp's native names (`amd64`, `arm64`, `x86`).

`to_oci` is a pure function of its arguments, so callers may cache its result
keyed on (profile, capabilities, arch, kernel).
"""

from __future__ import annotations

import json
import os
import platform
import re
from collections.abc import Iterable, Mapping
from typing import Any

from dockyard.errors import InvalidArgument

DEFAULT_PROFILE_PATHS = ("/usr/share/containers/seccomp.json", "/etc/containers/seccomp.json")

# libseccomp native arch name -> OCI architecture.
_NATIVE_TO_SCMP = {
    "x86": "SCMP_ARCH_X86",
    "amd64": "SCMP_ARCH_X86_64",
    "x32": "SCMP_ARCH_X32",
    "arm": "SCMP_ARCH_ARM",
    "arm64": "SCMP_ARCH_AARCH64",
    "mips": "SCMP_ARCH_MIPS",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64n32": "SCMP_ARCH_MIPS64N32",
    "mipsel": "SCMP_ARCH_MIPSEL",
    "mipsel64": "SCMP_ARCH_MIPSEL64",
    "mipsel64n32": "SCMP_ARCH_MIPSEL64N32",
    "ppc": "SCMP_ARCH_PPC",
    "ppc64": "SCMP_ARCH_PPC64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390": "SCMP_ARCH_S390",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
    "loong64": "SCMP_ARCH_LOONGARCH64",
}
_SCMP_TO_NATIVE = {v: k for k, v in _NATIVE_TO_SCMP.items()}

# `uname -m` (and a few aliases) -> libseccomp native name.
_MACHINE_TO_NATIVE = {
    "x86_64": "amd64",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "armv6l": "arm",
    "armv7l": "arm",
    "armv8l": "arm",
    "loongarch64": "loong64",
    "mips3l64n32": "mipsel64n32",  # moby's spelling
}

_OCI_ARG_KEYS = ("index", "value", "valueTwo", "op")
_KERNEL_RE = re.compile(r"(\d+)\.(\d+)")


def default_profile_path() -> str | None:
    """The first of `DEFAULT_PROFILE_PATHS` that exists, or None."""
    return next((p for p in DEFAULT_PROFILE_PATHS if os.path.isfile(p)), None)


def parse_profile(text: str | bytes) -> dict[str, Any]:
    """Decode a profile from JSON text (e.g. a `seccomp=<json>` security option)."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"Decoding seccomp profile failed: {e}") from None
    if not isinstance(profile, dict):
        raise InvalidArgument("Decoding seccomp profile failed: not a JSON object")
    return profile


def load_profile(path: str) -> dict[str, Any]:
    """Read and decode a profile file. OSError propagates if it cannot be read."""
    with open(path, "rb") as f:
        return parse_profile(f.read())


def host_arch(machine: str | None = None) -> tuple[str, str | None]:
    """(libseccomp native name, SCMP_ARCH_* or None) for a machine/native/SCMP arch name."""
    name = machine if machine is not None else platform.machine()
    if name in _SCMP_TO_NATIVE:
        return _SCMP_TO_NATIVE[name], name
    native = _MACHINE_TO_NATIVE.get(name.lower(), name.lower())
    return native, _NATIVE_TO_SCMP.get(native)


def _kernel_version(release: str, what: str) -> tuple[int, int]:
    # Only "kernel.major" counts, as in moby: 6.1.0-18-amd64 and 6.1 are equal.
    m = _KERNEL_RE.match(release.strip())
    if not m:
        raise InvalidArgument(f"seccomp: invalid {what} kernel version {release!r}")
    return int(m.group(1)), int(m.group(2))


def _normalize_cap(cap: str) -> str:
    cap = cap.strip().upper()
    return cap if cap.startswith("CAP_") else "CAP_" + cap


def _strings(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"seccomp: {what} must be a list of strings")
    return list(value)


def _condition(rule: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    cond = rule.get(key) or {}
    if not isinstance(cond, Mapping):
        raise InvalidArgument(f"seccomp: syscall {key} must be an object")
    return cond


def _applies(
    rule: Mapping[str, Any], caps: frozenset[str], arch: str, kernel: tuple[int, int]
) -> bool:
    exc = _condition(rule, "excludes")
    if arch in _strings(exc.get("arches"), "excludes.arches"):
        return False
    if any(c in caps for c in _strings(exc.get("caps"), "excludes.caps")):
        return False
    if exc.get("minKernel") and kernel >= _kernel_version(str(exc["minKernel"]), "minKernel"):
        return False

    inc = _condition(rule, "includes")
    arches = _strings(inc.get("arches"), "includes.arches")
    if arches and arch not in arches:
        return False
    if not all(c in caps for c in _strings(inc.get("caps"), "includes.caps")):
        return False
    return not (
        inc.get("minKernel") and kernel < _kernel_version(str(inc["minKernel"]), "minKernel")
    )


def _syscall(rule: Mapping[str, Any]) -> dict[str, Any]:
    names = _strings(rule.get("names"), "syscall names")
    if rule.get("name"):
        if names:
            raise InvalidArgument("seccomp: a syscall rule has both 'name' and 'names'")
        names = [str(rule["name"])]
    if not names:
        raise InvalidArgument("seccomp: a syscall rule has no names")
    if not isinstance(rule.get("action"), str):
        raise InvalidArgument(f"seccomp: syscall rule for {names[0]!r} has no action")
    out: dict[str, Any] = {"names": names, "action": rule["action"]}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = rule["errnoRet"]
    args = rule.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, Mapping) for a in args):
        raise InvalidArgument(f"seccomp: args of {names[0]!r} must be a list of objects")
    if args:
        out["args"] = [{k: a[k] for k in _OCI_ARG_KEYS if a.get(k) is not None} for a in args]
    return out


def to_oci(
    profile: dict[str, Any],
    *,
    capabilities: Iterable[str],
    arch: str | None = None,
    kernel: str | None = None,
) -> dict[str, Any]:
    """Evaluate a Docker-style profile for one container; return OCI `linux.seccomp`.

    `capabilities` is the container's final capability set ("CAP_*" names).
    `arch` is a `uname -m`, libseccomp native or SCMP_ARCH_* name (default: this
    host); `kernel` a release string such as "6.1.0-18-amd64" (default: this host).
    The input profile is not modified and the result shares no objects with it.
    """
    action = profile.get("defaultAction")
    if not isinstance(action, str) or not action:
        raise InvalidArgument("seccomp: profile has no defaultAction")
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument(
            "seccomp: 'architectures' and 'archMap' were both specified, use one of them"
        )
    native, scmp = host_arch(arch)
    kver = _kernel_version(kernel if kernel is not None else platform.release(), "host")
    caps = frozenset(_normalize_cap(c) for c in capabilities)

    out: dict[str, Any] = {"defaultAction": action}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]

    architectures = _strings(profile.get("architectures"), "architectures")
    if not architectures and scmp is not None:
        architectures = [scmp]
        for entry in profile.get("archMap") or []:
            if isinstance(entry, Mapping) and entry.get("architecture") == scmp:
                architectures += _strings(entry.get("subArchitectures"), "subArchitectures")
                break
    if architectures:
        out["architectures"] = architectures
    if profile.get("flags"):
        out["flags"] = _strings(profile["flags"], "flags")

    rules = profile.get("syscalls") or []
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        raise InvalidArgument("seccomp: syscalls must be a list of objects")
    out["syscalls"] = [_syscall(r) for r in rules if _applies(r, caps, native, kver)]
    return out
