"""Docker-style seccomp profile -> OCI linux.seccomp (dockyard.runtime.seccomp)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dockyard.errors import InvalidArgument
from dockyard.runtime import seccomp

DOCKER_DEFAULT_CAPS = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "listenerPath": "/run/agent.sock",
    "archMap": [
        {
            "architecture": "SCMP_ARCH_X86_64",
            "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        },
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        {
            "names": ["read", "write", "clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [],
            "comment": "always",
            "includes": {},
            "excludes": {},
        },
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 38,
            "errno": "ENOSYS",
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            "names": ["mount", "clone3"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        {
            "name": "arch_prctl",
            "action": "SCMP_ACT_ALLOW",
            "includes": {"arches": ["amd64", "x32"]},
        },
        {
            "names": ["set_tls"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"arches": ["arm", "arm64"]},
        },
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["legacy"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.10"}},
        {"names": ["x86only"], "action": "SCMP_ACT_LOG", "excludes": {"arches": ["arm64"]}},
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        },
        {
            "names": ["both"],
            "action": "SCMP_ACT_ALLOW",
            "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]},
        },
    ],
}


def convert(
    caps: tuple[str, ...] = DOCKER_DEFAULT_CAPS,
    arch: str = "x86_64",
    kernel: str = "6.1.0-18-amd64",
    profile: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return seccomp.to_oci(profile or PROFILE, capabilities=caps, arch=arch, kernel=kernel)


def rules_for(out: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in out["syscalls"] if name in r["names"]]


def test_top_level_is_plain_oci() -> None:
    out = convert()
    assert set(out) == {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}
    assert out["defaultAction"] == "SCMP_ACT_ERRNO"
    assert out["defaultErrnoRet"] == 1
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert convert(arch="aarch64")["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    for rule in out["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}


def test_rule_fields() -> None:
    out = convert()
    assert rules_for(out, "read") == [
        {"names": ["read", "write", "clone"], "action": "SCMP_ACT_ALLOW"}
    ]
    assert rules_for(out, "arch_prctl") == [{"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW"}]
    assert rules_for(out, "personality") == [
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 8, "valueTwo": 0, "op": "SCMP_CMP_EQ"}],
        }
    ]


def test_caps_includes_and_excludes() -> None:
    out = convert()
    assert rules_for(out, "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    ]
    assert rules_for(out, "mount") == []

    admin = convert(caps=(*DOCKER_DEFAULT_CAPS, "CAP_SYS_ADMIN"))
    assert rules_for(admin, "clone3") == [
        {"names": ["mount", "clone3"], "action": "SCMP_ACT_ALLOW"}
    ]
    # Every listed include cap must be held, as in moby.
    assert rules_for(admin, "both") == []
    both = convert(caps=(*DOCKER_DEFAULT_CAPS, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"))
    assert len(rules_for(both, "both")) == 1
    # Short names are accepted for the container's set.
    assert rules_for(convert(caps=("sys_admin",)), "mount") != []


def test_arches() -> None:
    x86 = convert(arch="x86_64")
    arm = convert(arch="aarch64")
    assert rules_for(x86, "arch_prctl") and not rules_for(arm, "arch_prctl")
    assert rules_for(arm, "set_tls") and not rules_for(x86, "set_tls")
    assert rules_for(x86, "x86only") and not rules_for(arm, "x86only")
    # Native and SCMP names mean the same host.
    assert convert(arch="amd64") == x86 == convert(arch="SCMP_ARCH_X86_64")


def test_min_kernel() -> None:
    old = convert(kernel="4.4.0-210-generic")
    new = convert(kernel="5.10")
    assert not rules_for(old, "ptrace") and rules_for(new, "ptrace")
    assert rules_for(old, "legacy") and not rules_for(new, "legacy")
    # Only kernel.major counts; 4.8.x satisfies minKernel 4.8.
    assert rules_for(convert(kernel="4.8.0"), "ptrace")
    assert rules_for(convert(kernel="4.10"), "ptrace")


def test_flags_kept_only_when_present_and_input_untouched() -> None:
    profile = copy.deepcopy(PROFILE)
    profile["flags"] = ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    snapshot = copy.deepcopy(profile)
    out = convert(profile=profile)
    assert out["flags"] == ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    assert "flags" not in convert()
    out["syscalls"][0]["names"].append("mutated")
    out["architectures"].append("mutated")
    assert profile == snapshot
    assert convert(profile=profile) == convert(profile=snapshot)


def test_defaults_to_this_host() -> None:
    out = seccomp.to_oci(PROFILE, capabilities=DOCKER_DEFAULT_CAPS)
    _native, scmp = seccomp.host_arch()
    if scmp in ("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"):
        assert out["architectures"][0] == scmp


@pytest.mark.parametrize(
    "profile",
    [
        {"syscalls": []},
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "archMap": PROFILE["archMap"],
        },
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_LOG"}],
        },
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_LOG"}]},
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["a"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "new"}}
            ],
        },
    ],
)
def test_invalid_profiles(profile: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        convert(profile=profile)


def test_load_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(PROFILE))
    assert seccomp.load_profile(str(path)) == PROFILE
    path.write_text("[1]")
    with pytest.raises(InvalidArgument):
        seccomp.load_profile(str(path))
    path.write_text("{nope")
    with pytest.raises(InvalidArgument):
        seccomp.load_profile(str(path))


REAL = "/usr/share/containers/seccomp.json"


@pytest.mark.skipif(not os.path.isfile(REAL), reason="containers-common seccomp.json not installed")
def test_real_containers_profile() -> None:
    profile = seccomp.load_profile(REAL)

    def allowed(out: dict[str, Any], name: str) -> bool:
        return any(
            r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for r in rules_for(out, name)
        )

    out = seccomp.to_oci(profile, capabilities=DOCKER_DEFAULT_CAPS, arch="x86_64", kernel="6.1.0")
    assert out["defaultAction"] == profile["defaultAction"]
    assert out["architectures"][0] == "SCMP_ARCH_X86_64"
    assert "SCMP_ARCH_X86" in out["architectures"]
    assert json.loads(json.dumps(out)) == out
    for rule in out["syscalls"]:
        assert set(rule) <= {"names", "action", "errnoRet", "args"}
    for name in ("read", "write", "clone"):
        assert allowed(out, name)
    assert allowed(out, "arch_prctl")

    # Syscalls the profile allows only with CAP_SYS_ADMIN (e.g. bpf, perf_event_open);
    # names it also allows unconditionally (setns in some versions) are left out.
    def names(r: dict[str, Any]) -> list[str]:
        return list(r.get("names") or [r.get("name")])

    unconditional = {
        n
        for r in profile["syscalls"]
        if not r.get("includes") and not r.get("excludes") and not r.get("args")
        for n in names(r)
    }
    gated = {
        n
        for r in profile["syscalls"]
        if (r.get("includes") or {}).get("caps") == ["CAP_SYS_ADMIN"]
        for n in names(r)
    } - unconditional
    assert gated
    for name in gated:
        assert not allowed(out, name), name

    # clone3: ENOSYS when the profile gates it, otherwise whatever it says.
    clone3 = [r for r in profile["syscalls"] if "clone3" in names(r)]
    if any(r.get("errnoRet") == 38 for r in clone3):
        assert {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38} in out["syscalls"]
    else:
        assert allowed(out, "clone3")

    admin = seccomp.to_oci(
        profile,
        capabilities=(*DOCKER_DEFAULT_CAPS, "CAP_SYS_ADMIN"),
        arch="x86_64",
        kernel="6.1.0",
    )
    for name in gated:
        assert allowed(admin, name), name
        assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(admin, name)), name
    assert all(r.get("errnoRet") != 38 for r in rules_for(admin, "clone3"))
