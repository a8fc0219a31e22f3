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
keyed on (profile, capabilities, arch, kernel); `SeccompPolicy` does.

`SeccompPolicy` holds the daemon's choice (`builtin`, `unconfined` or a profile
file: daemon.json's `seccomp-profile`) and gives each container its filter from
that choice and the container's own `--security-opt seccomp=...`, as dockerd
does. The built-in policy is Docker's default, in `seccomp_policy`.
"""

from __future__ import annotations

import json
import logging
import platform
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from dockyard.errors import InvalidArgument, Unavailable
from dockyard.runtime import seccomp_policy

log = logging.getLogger(__name__)

BUILTIN = seccomp_policy.NAME
UNCONFINED = "unconfined"

# What libseccomp (and so the OCI runtimes) understand; anything else is refused
# when the profile is given, not when a runtime trips over it at start.
ACTIONS = frozenset(
    {
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_TRAP",
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_TRACE",
        "SCMP_ACT_ALLOW",
        "SCMP_ACT_LOG",
        "SCMP_ACT_NOTIFY",
    }
)
OPERATORS = frozenset(
    {
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    }
)

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


def _errno(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 4096:
        raise InvalidArgument(f"seccomp: {what} must be an errno number, not {value!r}")
    return value


def _arg(arg: Mapping[str, Any], syscall: str) -> dict[str, Any]:
    index = arg.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
        raise InvalidArgument(f"seccomp: an argument index of {syscall!r} must be 0 to 5")
    if arg.get("op") not in OPERATORS:
        raise InvalidArgument(
            f"seccomp: unknown operator {arg.get('op')!r} for {syscall!r}"
            f" (one of {', '.join(sorted(OPERATORS))})"
        )
    for key in ("value", "valueTwo"):
        value = arg.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            raise InvalidArgument(f"seccomp: argument {key} of {syscall!r} must be a uint64")
    return {k: arg[k] for k in _OCI_ARG_KEYS if arg.get(k) is not None}


def _syscall(rule: Mapping[str, Any]) -> dict[str, Any]:
    names = _strings(rule.get("names"), "syscall names")
    if rule.get("name"):
        if names:
            raise InvalidArgument("seccomp: a syscall rule has both 'name' and 'names'")
        names = [str(rule["name"])]
    if not names:
        raise InvalidArgument("seccomp: a syscall rule has no names")
    action = rule.get("action")
    if not isinstance(action, str):
        raise InvalidArgument(f"seccomp: syscall rule for {names[0]!r} has no action")
    if action not in ACTIONS:
        raise InvalidArgument(f"seccomp: unknown action {action!r} for {names[0]!r}")
    out: dict[str, Any] = {"names": names, "action": action}
    if rule.get("errnoRet") is not None:
        out["errnoRet"] = _errno(rule["errnoRet"], f"errnoRet of {names[0]!r}")
    args = rule.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, Mapping) for a in args):
        raise InvalidArgument(f"seccomp: args of {names[0]!r} must be a list of objects")
    if args:
        out["args"] = [_arg(a, names[0]) for a in args]
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
    Every rule is checked, also those that do not apply to this container, so a
    profile that passes here passes for any container. The input profile is not
    modified and the result shares no objects with it.
    """
    action = profile.get("defaultAction")
    if not isinstance(action, str) or not action:
        raise InvalidArgument("seccomp: profile has no defaultAction")
    if action not in ACTIONS:
        raise InvalidArgument(f"seccomp: unknown defaultAction {action!r}")
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument(
            "seccomp: 'architectures' and 'archMap' were both specified, use one of them"
        )
    native, scmp = host_arch(arch)
    kver = _kernel_version(kernel if kernel is not None else platform.release(), "host")
    caps = frozenset(_normalize_cap(c) for c in capabilities)

    out: dict[str, Any] = {"defaultAction": action}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = _errno(profile["defaultErrnoRet"], "defaultErrnoRet")

    architectures = _strings(profile.get("architectures"), "architectures")
    if not architectures and scmp is not None:
        architectures = [scmp]
        for entry in profile.get("archMap") or []:
            if isinstance(entry, Mapping) and entry.get("architecture") == scmp:
                architectures += _strings(entry.get("subArchitectures"), "subArchitectures")
                break
    for name in architectures:
        if not name.startswith("SCMP_ARCH_"):
            raise InvalidArgument(f"seccomp: unknown architecture {name!r}")
    if architectures:
        out["architectures"] = architectures
    if profile.get("flags"):
        out["flags"] = _strings(profile["flags"], "flags")

    rules = profile.get("syscalls") or []
    if not isinstance(rules, list) or not all(isinstance(r, Mapping) for r in rules):
        raise InvalidArgument("seccomp: syscalls must be a list of objects")
    checked = [(_syscall(r), _applies(r, caps, native, kver)) for r in rules]
    out["syscalls"] = [syscall for syscall, applies in checked if applies]
    return out


def check_profile(text: str) -> None:
    """Refuse (InvalidArgument) a profile given as JSON text that no container could run."""
    to_oci(parse_profile(text), capabilities=())


def kernel_supports_seccomp() -> bool:
    """Whether this kernel filters system calls (CONFIG_SECCOMP): /proc shows the mode."""
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


class SeccompPolicy:
    """The daemon's seccomp setting and the filter each container gets from it.

    `setting` is daemon.json's `seccomp-profile`: unset or `builtin` for the
    built-in policy (Docker's default), `unconfined` for none, or the path of a
    profile file, read and checked once here. A container's `seccomp=` option
    (`builtin`, `unconfined` or a profile's JSON) overrides the daemon's choice.
    """

    def __init__(self, setting: str | None, *, supported: bool = True) -> None:
        self.name = setting or BUILTIN  # what `info` shows, as dockerd does
        self.supported = supported
        self._default: str | None  # BUILTIN, a profile's JSON text, or None: unconfined
        if self.name == BUILTIN:
            self._default = BUILTIN
        elif self.name == UNCONFINED:
            self._default = None
        else:
            try:
                with open(self.name, encoding="utf-8") as f:
                    self._default = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise InvalidArgument(
                    f"opening seccomp profile ({self.name}) failed: {e}"
                ) from None
            check_profile(self._default)

    def for_container(
        self, capabilities: Iterable[str], option: str | None
    ) -> dict[str, Any] | None:
        """OCI `linux.seccomp` for a container, or None to run it unconfined.

        `capabilities` is the container's final capability set; `option` the
        value of its `seccomp=` security option, if any.
        """
        source = self._default if not option else (None if option == UNCONFINED else option)
        if source is None:
            return None
        if not self.supported:
            if source != BUILTIN:
                raise Unavailable(
                    "seccomp is not enabled in your kernel, cannot run a custom seccomp profile"
                )
            log.warning("seccomp is not enabled in the kernel: running without the default profile")
            return None
        return _evaluate(source, tuple(sorted({_normalize_cap(c) for c in capabilities})))


@lru_cache(maxsize=64)
def _evaluate(source: str, capabilities: tuple[str, ...]) -> dict[str, Any]:
    # The host's arch and kernel are fixed for the daemon's life, so (profile, caps)
    # is the whole key. Callers share the result and must not change it.
    profile = seccomp_policy.profile() if source == BUILTIN else parse_profile(source)
    return to_oci(profile, capabilities=capabilities)
