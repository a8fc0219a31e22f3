"""The built-in seccomp policy (Docker's default) as each kind of container gets it,
and the daemon's choice of policy (dockyard.runtime.seccomp_policy, .seccomp)."""

from __future__ import annotations

import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from dockyard.containers.config import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.runtime import seccomp, seccomp_policy

ARCHES = ("x86_64", "aarch64", "s390x", "ppc64le", "riscv64", "mips64", "loongarch64", "i686")


def evaluate(
    caps: tuple[str, ...] = DEFAULT_CAPABILITIES, arch: str = "x86_64", kernel: str = "6.1.0"
) -> dict[str, Any]:
    return seccomp.to_oci(seccomp_policy.profile(), capabilities=caps, arch=arch, kernel=kernel)


def rules_for(out: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [r for r in out["syscalls"] if name in r["names"]]


def allowed(out: dict[str, Any], name: str) -> bool:
    """Allowed whatever its arguments."""
    return any(r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for r in rules_for(out, name))


def untouched(out: dict[str, Any], name: str) -> bool:
    """No rule at all: the default action (EPERM) answers."""
    return not rules_for(out, name)


def test_everything_unlisted_fails_with_eperm() -> None:
    out = evaluate()
    assert out["defaultAction"] == "SCMP_ACT_ERRNO"
    assert out["defaultErrnoRet"] == 1


def test_ordinary_calls_are_allowed_to_every_container() -> None:
    out = evaluate(caps=())
    for name in ("read", "openat", "execve", "fork", "futex", "epoll_wait", "mmap", "ioctl"):
        assert allowed(out, name), name
    for name in ("setuid", "chown", "mknod", "sched_setscheduler", "setrlimit", "capset"):
        assert allowed(out, name), f"{name}: the kernel checks the capability itself"


def test_the_allow_list_has_each_call_once_and_in_one_place() -> None:
    everyone = [n for names in seccomp_policy.ALLOWED.values() for n in names]
    assert [n for n, count in Counter(everyone).items() if count > 1] == []
    gated = {n for gate in seccomp_policy.CAPABILITY_GATED for n in gate.syscalls}
    assert set(everyone) & gated == set()
    assert set(everyone) & set(seccomp_policy.NEVER) == set()
    assert gated & set(seccomp_policy.NEVER) == set()


@pytest.mark.parametrize("arch", ARCHES)
def test_never_allowed_whatever_the_capabilities(arch: str) -> None:
    out = evaluate(caps=ALL_CAPABILITIES, arch=arch)
    for name in seccomp_policy.NEVER:
        assert untouched(out, name), name
    for name in ("keyctl", "add_key", "request_key", "io_uring_setup", "userfaultfd"):
        assert name in seccomp_policy.NEVER


def test_namespaces_and_mounts_need_cap_sys_admin() -> None:
    out = evaluate()
    for name in ("unshare", "setns", "mount", "umount2", "fsopen", "open_tree", "move_mount"):
        assert untouched(out, name), name
    admin = evaluate(caps=(*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    for name in ("unshare", "setns", "mount", "umount2", "fsopen", "clone", "clone3"):
        assert allowed(admin, name), name
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in rules_for(admin, "clone3"))


def test_clone_without_cap_sys_admin_makes_no_namespaces() -> None:
    out = evaluate()
    assert rules_for(out, "clone") == [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}],
        }
    ]
    # Every namespace flag is inside the mask, and nothing else.
    flags = {
        "CLONE_NEWNS": 0x00020000,
        "CLONE_NEWCGROUP": 0x02000000,
        "CLONE_NEWUTS": 0x04000000,
        "CLONE_NEWIPC": 0x08000000,
        "CLONE_NEWUSER": 0x10000000,
        "CLONE_NEWPID": 0x20000000,
        "CLONE_NEWNET": 0x40000000,
    }
    assert sum(flags.values()) == seccomp_policy.CLONE_NAMESPACE_FLAGS
    # s390 passes the flags second.
    (s390,) = rules_for(evaluate(arch="s390x"), "clone")
    assert s390["args"][0]["index"] == 1


def test_clone3_answers_enosys_without_cap_sys_admin() -> None:
    # glibc falls back to clone on ENOSYS, where the flags can be checked.
    assert rules_for(evaluate(), "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
    ]


def test_socket_refuses_af_alg_and_af_vsock_only() -> None:
    out = evaluate()
    rules = rules_for(out, "socket")
    assert rules and not allowed(out, "socket")

    def permits(family: int) -> bool:
        for rule in rules:
            (arg,) = rule["args"]
            assert arg["index"] == 0
            op, value = arg["op"], arg["value"]
            if (
                (op == "SCMP_CMP_LT" and family < value)
                or (op == "SCMP_CMP_EQ" and family == value)
                or (op == "SCMP_CMP_GT" and family > value)
            ):
                return True
        return False

    refused = [family for family in range(64) if not permits(family)]
    assert refused == [seccomp_policy.AF_ALG, seccomp_policy.AF_VSOCK]


def test_personality_allows_only_harmless_values() -> None:
    values = sorted(r["args"][0]["value"] for r in rules_for(evaluate(), "personality"))
    assert values == [0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF]
    assert 0x0040000 not in values  # ADDR_NO_RANDOMIZE


@pytest.mark.parametrize("gate", seccomp_policy.CAPABILITY_GATED, ids=lambda g: g.capability)
def test_each_capability_brings_its_calls(gate: seccomp_policy.Gate) -> None:
    gates = seccomp_policy.CAPABILITY_GATED
    without = tuple(c for c in DEFAULT_CAPABILITIES if c != gate.capability)
    held = (*without, gate.capability)
    for name in gate.syscalls:
        assert allowed(evaluate(caps=held), name), name
        # Without it, only another gate held could let the call through (on a kernel
        # before 4.8, where tracing one's own children is not allowed to everyone).
        if not any(name in g.syscalls and g.capability in without for g in gates):
            assert not allowed(evaluate(caps=without, kernel="4.4"), name), name


def test_tracing_is_allowed_from_kernel_4_8_only() -> None:
    assert allowed(evaluate(kernel="4.8.0"), "ptrace")
    assert untouched(evaluate(kernel="4.4.0-210-generic"), "ptrace")
    assert allowed(
        evaluate(caps=(*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"), kernel="4.4.0"), "ptrace"
    )


@pytest.mark.parametrize(
    ("arch", "architectures"),
    [
        ("x86_64", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        ("aarch64", ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        ("s390x", ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
        ("riscv64", ["SCMP_ARCH_RISCV64"]),
    ],
)
def test_the_filter_covers_compat_architectures(arch: str, architectures: list[str]) -> None:
    assert evaluate(arch=arch)["architectures"] == architectures


def test_architecture_specific_calls() -> None:
    x86_64, arm64, x86 = evaluate(arch="x86_64"), evaluate(arch="aarch64"), evaluate(arch="i686")
    assert allowed(x86_64, "arch_prctl") and allowed(x86_64, "modify_ldt")
    assert allowed(x86, "modify_ldt") and untouched(x86, "arch_prctl")
    assert untouched(arm64, "arch_prctl") and untouched(arm64, "modify_ldt")
    assert allowed(arm64, "set_tls") and untouched(x86_64, "set_tls")
    assert allowed(evaluate(arch="s390x"), "s390_runtime_instr")


def test_every_architecture_evaluates_to_plain_oci() -> None:
    for arch in ARCHES:
        out = evaluate(arch=arch, caps=ALL_CAPABILITIES)
        assert json.loads(json.dumps(out)) == out
        for rule in out["syscalls"]:
            assert set(rule) <= {"names", "action", "errnoRet", "args"}


def test_the_profile_round_trips_as_a_custom_profile() -> None:
    # What `python -m dockyard.runtime.seccomp_policy` prints works as seccomp=FILE.
    text = json.dumps(seccomp_policy.profile())
    seccomp.check_profile(text)
    assert seccomp.to_oci(seccomp.parse_profile(text), capabilities=DEFAULT_CAPABILITIES) == (
        seccomp.to_oci(seccomp_policy.profile(), capabilities=DEFAULT_CAPABILITIES)
    )


# The daemon's choice and each container's option.

CUSTOM = {
    "defaultAction": "SCMP_ACT_ALLOW",
    "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
}


def test_the_default_is_the_builtin_policy() -> None:
    policy = seccomp.SeccompPolicy(None)
    assert policy.name == "builtin"
    out = policy.for_container(DEFAULT_CAPABILITIES, None)
    assert out == seccomp.to_oci(seccomp_policy.profile(), capabilities=DEFAULT_CAPABILITIES)
    assert policy.for_container(DEFAULT_CAPABILITIES, "builtin") == out
    assert policy.for_container(DEFAULT_CAPABILITIES, "unconfined") is None
    custom = policy.for_container(DEFAULT_CAPABILITIES, json.dumps(CUSTOM))
    assert custom is not None and custom["defaultAction"] == "SCMP_ACT_ALLOW"


def test_results_are_cached_per_capability_set() -> None:
    policy = seccomp.SeccompPolicy("builtin")
    first = policy.for_container(["CAP_CHOWN", "CAP_KILL"], None)
    assert policy.for_container(["CAP_KILL", "CAP_CHOWN", "kill"], None) is first
    assert policy.for_container(["CAP_KILL"], None) is not first


def test_an_unconfined_daemon_still_honours_builtin_and_custom() -> None:
    policy = seccomp.SeccompPolicy("unconfined")
    assert policy.name == "unconfined"
    assert policy.for_container(DEFAULT_CAPABILITIES, None) is None
    assert policy.for_container(DEFAULT_CAPABILITIES, "builtin") is not None
    assert policy.for_container(DEFAULT_CAPABILITIES, json.dumps(CUSTOM)) is not None


def test_a_daemon_profile_file(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(CUSTOM))
    policy = seccomp.SeccompPolicy(str(path))
    assert policy.name == str(path)
    out = policy.for_container(DEFAULT_CAPABILITIES, None)
    assert out is not None and out["syscalls"] == [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}
    ]
    assert policy.for_container(DEFAULT_CAPABILITIES, "builtin") == evaluate(
        kernel=platform.release()
    )

    with pytest.raises(InvalidArgument, match=r"opening seccomp profile \(.*missing.json\)"):
        seccomp.SeccompPolicy(str(tmp_path / "missing.json"))
    path.write_text('{"defaultAction": "SCMP_ACT_NOPE"}')
    with pytest.raises(InvalidArgument, match="unknown defaultAction"):
        seccomp.SeccompPolicy(str(path))


def test_without_kernel_seccomp_only_the_builtin_policy_is_dropped() -> None:
    policy = seccomp.SeccompPolicy(None, supported=False)
    assert policy.for_container(DEFAULT_CAPABILITIES, None) is None
    with pytest.raises(Unavailable, match="cannot run a custom seccomp profile"):
        policy.for_container(DEFAULT_CAPABILITIES, json.dumps(CUSTOM))


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"defaultAction": "SCMP_ACT_DENY"}, "unknown defaultAction"),
        (
            {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "action": "x"}]},
            "unknown action 'x'",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {
                        "names": ["a"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": 1, "op": "EQ"}],
                    }
                ],
            },
            "unknown operator 'EQ'",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {
                        "names": ["a"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
            "index of 'a' must be 0 to 5",
        ),
        (
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {
                        "names": ["a"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}],
                    }
                ],
            },
            "must be a uint64",
        ),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": "EPERM"}, "errno number"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["x86_64"]}, "unknown architecture"),
        (
            # Checked even where the rule does not apply to the container at hand.
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [
                    {"names": ["a"], "action": "SCMP_ACT_X", "includes": {"caps": ["CAP_BPF"]}}
                ],
            },
            "unknown action",
        ),
    ],
)
def test_profiles_no_runtime_could_load_are_refused(profile: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        seccomp.check_profile(json.dumps(profile))
