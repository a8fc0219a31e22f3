"""Dockyard's built-in seccomp policy: which system calls a container may make.

This is the policy Docker applies by default (moby's `profiles/seccomp`), kept here
as Dockyard's own table so that every container is as confined as under Docker,
whatever profile the host happens to have installed. It reads as four parts:

* `ALLOWED`: calls every container may make, grouped by what they are for. They
  act on the caller's own processes, files, memory and sockets, or on kernel
  objects that are namespaced or already guarded by a capability or the device
  cgroup.
* Argument filters: `socket`, `personality` and `clone` are allowed only with
  the arguments that cannot reach what the rest of the policy refuses.
* `CAPABILITY_GATED`: calls whose purpose is what a capability grants (mounting,
  namespaces, modules, the clock, tracing ...). A container gets them only when
  it holds that capability, so `--cap-add` gives the call together with the
  permission, as Docker does.
* `NEVER`: calls refused whatever the capabilities, each with the reason. Like
  every call not listed at all, they fail with EPERM.

`profile()` renders the table as a Docker-style profile, the format
`--security-opt seccomp=FILE` and daemon.json's `seccomp-profile` take;
`dockyard.runtime.seccomp.to_oci` evaluates it for each container like any other
profile. `python -m dockyard.runtime.seccomp_policy` prints it, a starting point
for a custom profile.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

NAME = "builtin"  # the policy's name in `info` and in `--security-opt seccomp=builtin`

EPERM = 1
ENOSYS = 38

# Address families (linux/socket.h) the socket filter refuses.
AF_ALG = 38  # the kernel's crypto API: a large attack surface few programs need
AF_VSOCK = 40  # virtio sockets: a path from the container to the hypervisor's host

# Namespace flags of clone(2) (linux/sched.h): CLONE_NEWNS, NEWCGROUP, NEWUTS,
# NEWIPC, NEWUSER, NEWPID, NEWNET.
CLONE_NAMESPACE_FLAGS = (
    0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000
)

# personality(2) values a container may set (linux/personality.h): the Linux
# personality, its 32-bit variant, UNAME26 with each, and the query 0xffffffff.
# Other bits (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC ...) weaken the container's
# own exploit mitigations.
PERSONALITIES = (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF)

# Each 64-bit architecture with the compatibility architectures its kernel also
# runs: a filter must cover them all, or a 32-bit call (int 0x80 on x86_64)
# would bypass it.
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "SCMP_ARCH_X86_64": ("SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "SCMP_ARCH_AARCH64": ("SCMP_ARCH_ARM",),
    "SCMP_ARCH_MIPS64": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"),
    "SCMP_ARCH_MIPS64N32": ("SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"),
    "SCMP_ARCH_MIPSEL64": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"),
    "SCMP_ARCH_MIPSEL64N32": ("SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"),
    "SCMP_ARCH_S390X": ("SCMP_ARCH_S390",),
    "SCMP_ARCH_RISCV64": (),
    "SCMP_ARCH_LOONGARCH64": (),
}


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Calls every container may make, by purpose. Names the host's libseccomp does not
# know yet (calls newer than it) are skipped by the runtime; such calls then fail
# with ENOSYS, so programs fall back to the older call they replace.
#
# Notes on single calls: name_to_handle_at only makes a handle (opening one,
# open_by_handle_at, is gated below); fanotify_mark needs a group from
# fanotify_init, gated on CAP_SYS_ADMIN; adjtimex and clock_adjtime read the
# clock freely, while adjusting it checks CAP_SYS_TIME in the kernel; ioctl on a
# device is decided by the device cgroup and the nodes in /dev, not here.
ALLOWED: dict[str, tuple[str, ...]] = {
    "files: open, read, write, seek, sync": _names("""
        open openat openat2 creat close close_range
        read readv pread64 preadv preadv2 readahead
        write writev pwrite64 pwritev pwritev2
        lseek _llseek dup dup2 dup3 fcntl fcntl64 flock
        fsync fdatasync sync syncfs sync_file_range
        fallocate fadvise64 fadvise64_64 truncate truncate64 ftruncate ftruncate64 cachestat
        sendfile sendfile64 splice tee vmsplice copy_file_range
    """),
    "files: names, metadata and permissions (the kernel checks DAC and CAP_MKNOD)": _names("""
        access faccessat faccessat2
        stat stat64 lstat lstat64 fstat fstat64 fstatat64 newfstatat
        statx statfs statfs64 fstatfs fstatfs64
        chmod fchmod fchmodat fchmodat2 umask
        chown chown32 fchown fchown32 fchownat lchown lchown32
        utime utimes utimensat utimensat_time64 futimesat
        mkdir mkdirat rmdir mknod mknodat
        link linkat symlink symlinkat readlink readlinkat
        unlink unlinkat rename renameat renameat2
        chdir fchdir getcwd getdents getdents64 name_to_handle_at
    """),
    "files: extended attributes": _names("""
        getxattr lgetxattr fgetxattr getxattrat setxattr lsetxattr fsetxattr setxattrat
        listxattr llistxattr flistxattr listxattrat
        removexattr lremovexattr fremovexattr removexattrat
    """),
    "the mount table, read only (the container's own mount namespace)": _names("""
        listmount statmount
    """),
    "waiting on file descriptors and events": _names("""
        select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64
        epoll_create epoll_create1 epoll_ctl epoll_ctl_old
        epoll_wait epoll_wait_old epoll_pwait epoll_pwait2
        inotify_init inotify_init1 inotify_add_watch inotify_rm_watch fanotify_mark
        eventfd eventfd2 signalfd signalfd4
        timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
    """),
    "asynchronous I/O (the older aio interface; io_uring is in NEVER)": _names("""
        io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents io_pgetevents_time64
    """),
    "device control": _names("ioctl"),
    "memory": _names("""
        brk mmap mmap2 munmap mremap mprotect madvise mincore msync remap_file_pages
        mseal map_shadow_stack mlock mlock2 mlockall munlock munlockall
        memfd_create memfd_secret membarrier pkey_alloc pkey_free pkey_mprotect
    """),
    "processes and threads (clone and clone3 have rules of their own)": _names("""
        fork vfork execve execveat exit exit_group wait4 waitid waitpid restart_syscall
        getpid getppid gettid getpgid getpgrp setpgid getsid setsid
        set_tid_address set_robust_list get_robust_list rseq get_thread_area set_thread_area
        futex futex_time64 futex_wait futex_wake futex_requeue futex_waitv
        pidfd_open pidfd_send_signal process_mrelease
        prctl capget capset getrusage times getcpu uretprobe riscv_hwprobe
    """),
    "signals": _names("""
        kill tkill tgkill pause alarm
        rt_sigaction rt_sigprocmask rt_sigpending rt_sigqueueinfo rt_tgsigqueueinfo
        rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
        sigaltstack sigprocmask sigreturn
    """),
    "user and group identity (the kernel checks CAP_SETUID and CAP_SETGID)": _names("""
        getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32
        getresuid getresuid32 getresgid getresgid32 getgroups getgroups32
        setuid setuid32 setgid setgid32 setreuid setreuid32 setregid setregid32
        setresuid setresuid32 setresgid setresgid32
        setfsuid setfsuid32 setfsgid setfsgid32 setgroups setgroups32
    """),
    "scheduling and priorities (raising them is checked against CAP_SYS_NICE)": _names("""
        sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr
        sched_getparam sched_setparam sched_getscheduler sched_setscheduler
        sched_get_priority_max sched_get_priority_min
        sched_rr_get_interval sched_rr_get_interval_time64
        getpriority setpriority ioprio_get ioprio_set
    """),
    "resource limits (raising a hard limit is checked against CAP_SYS_RESOURCE)": _names("""
        getrlimit ugetrlimit setrlimit prlimit64
    """),
    "clocks and timers (setting the clock is gated on CAP_SYS_TIME)": _names("""
        time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
        nanosleep clock_nanosleep clock_nanosleep_time64 adjtimex clock_adjtime clock_adjtime64
        getitimer setitimer timer_create timer_delete timer_getoverrun
        timer_gettime timer_gettime64 timer_settime timer_settime64
    """),
    "inter-process communication (System V and POSIX, in the IPC namespace)": _names("""
        pipe pipe2 ipc msgget msgctl msgsnd msgrcv
        semget semctl semop semtimedop semtimedop_time64 shmget shmctl shmat shmdt
        mq_open mq_unlink mq_getsetattr mq_notify
        mq_timedsend mq_timedsend_time64 mq_timedreceive mq_timedreceive_time64
    """),
    # socket() itself is filtered by address family. On 32-bit x86 socket() goes
    # through socketcall(), whose arguments sit in memory a filter cannot read, so
    # the family filter does not cover that path (nor does Docker's).
    "sockets once made": _names("""
        socketpair socketcall bind connect listen accept accept4
        getsockname getpeername getsockopt setsockopt shutdown
        send sendto sendmsg sendmmsg recv recvfrom recvmsg recvmmsg recvmmsg_time64
    """),
    "confining oneself further": _names("""
        seccomp landlock_create_ruleset landlock_add_rule landlock_restrict_self
    """),
    "system information": _names("uname sysinfo getrandom"),
}


@dataclass(frozen=True)
class Gate:
    """Calls a container gets only while it holds `capability`."""

    capability: str
    syscalls: tuple[str, ...]
    why: str


# A call under two gates (bpf, syslog, ptrace ...) comes with either capability.
CAPABILITY_GATED: tuple[Gate, ...] = (
    Gate(
        "CAP_DAC_READ_SEARCH",
        ("open_by_handle_at",),
        "a file handle opens any file on the filesystem, bypassing the container's"
        " directory tree (the 'shocker' escape)",
    ),
    Gate(
        "CAP_SYS_ADMIN",
        _names("""
            bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie
            lsm_get_self_attr lsm_list_modules lsm_set_self_attr
            mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd
            setdomainname sethostname setns syslog umount umount2 unshare
        """),
        "new namespaces (clone with namespace flags, clone3, unshare, setns) and"
        " mounts: an unprivileged user namespace gives root-in-namespace over"
        " kernel code that was never meant for untrusted callers",
    ),
    Gate("CAP_SYS_BOOT", ("reboot",), "rebooting (within the PID namespace)"),
    Gate("CAP_SYS_CHROOT", ("chroot",), "changing the root directory"),
    Gate(
        "CAP_SYS_MODULE",
        ("delete_module", "init_module", "finit_module"),
        "loading code into the host's kernel",
    ),
    Gate("CAP_SYS_PACCT", ("acct",), "process accounting"),
    Gate(
        "CAP_SYS_PTRACE",
        _names("kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
        "inspecting other processes: comparing their kernel objects, taking their"
        " file descriptors, advising on their memory",
    ),
    Gate("CAP_SYS_RAWIO", ("iopl", "ioperm"), "raw I/O port access"),
    Gate(
        "CAP_SYS_TIME",
        ("settimeofday", "stime", "clock_settime", "clock_settime64"),
        "the clock is not namespaced: setting it sets the host's",
    ),
    Gate("CAP_SYS_TTY_CONFIG", ("vhangup",), "hanging up terminals"),
    Gate(
        "CAP_SYS_NICE",
        ("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"),
        "NUMA memory placement",
    ),
    Gate("CAP_SYSLOG", ("syslog",), "the kernel log is the host's"),
    Gate("CAP_BPF", ("bpf",), "loading eBPF programs into the kernel"),
    Gate("CAP_PERFMON", ("perf_event_open",), "performance monitoring, a side channel"),
)

# Refused whatever the capabilities (also the case of anything not listed above).
NEVER: dict[str, str] = {
    "keyctl": "the kernel keyrings are not namespaced: one container could read or"
    " exhaust another's (and the host's) keys",
    "add_key": "the kernel keyrings are not namespaced",
    "request_key": "the kernel keyrings are not namespaced",
    "io_uring_setup": "io_uring operations are not system calls, so a filter cannot see"
    " them; it has also been a steady source of kernel exploits",
    "io_uring_enter": "see io_uring_setup",
    "io_uring_register": "see io_uring_setup",
    "userfaultfd": "lets a program stall the kernel at a chosen point, a staple of kernel exploits",
    "kexec_load": "replaces the host's kernel",
    "kexec_file_load": "replaces the host's kernel",
    "swapon": "swap is the host's",
    "swapoff": "swap is the host's",
    "pivot_root": "container set-up is done before the container starts",
    "nfsservctl": "removed from the kernel",
    "uselib": "obsolete a.out loader",
    "ustat": "obsolete",
    "sysfs": "obsolete",
    "_sysctl": "obsolete, and reaches host settings",
    "vm86": "obsolete, with a history of kernel bugs",
    "vm86old": "obsolete, with a history of kernel bugs",
    "create_module": "obsolete module interface",
    "get_kernel_syms": "obsolete module interface",
    "query_module": "obsolete module interface",
}


def _rule(
    names: tuple[str, ...] | list[str],
    *,
    args: list[dict[str, Any]] | None = None,
    errno: int | None = None,
    caps: tuple[str, ...] = (),
    arches: tuple[str, ...] = (),
    unless_caps: tuple[str, ...] = (),
    unless_arches: tuple[str, ...] = (),
    min_kernel: str | None = None,
    comment: str = "",
) -> dict[str, Any]:
    """One rule in the Docker profile format (`includes`/`excludes` conditions)."""
    rule: dict[str, Any] = {
        "names": list(names),
        "action": "SCMP_ACT_ERRNO" if errno is not None else "SCMP_ACT_ALLOW",
    }
    if errno is not None:
        rule["errnoRet"] = errno
    if args:
        rule["args"] = args
    if comment:
        rule["comment"] = comment
    includes: dict[str, Any] = {}
    if caps:
        includes["caps"] = list(caps)
    if arches:
        includes["arches"] = list(arches)
    if min_kernel:
        includes["minKernel"] = min_kernel
    excludes: dict[str, Any] = {}
    if unless_caps:
        excludes["caps"] = list(unless_caps)
    if unless_arches:
        excludes["arches"] = list(unless_arches)
    if includes:
        rule["includes"] = includes
    if excludes:
        rule["excludes"] = excludes
    return rule


def _arg(index: int, op: str, value: int) -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


def _argument_filters() -> list[dict[str, Any]]:
    s390 = ("s390", "s390x")
    return [
        # Before 4.8 a traced process could change its syscall after seccomp had
        # checked it, so tracing was an escape from the filter itself.
        _rule(
            ("process_vm_readv", "process_vm_writev", "ptrace"),
            min_kernel="4.8",
            comment="tracing one's own children; seccomp holds against it from kernel 4.8",
        ),
        # Every address family but AF_ALG (38) and AF_VSOCK (40); 39 lies between.
        _rule(("socket",), args=[_arg(0, "SCMP_CMP_LT", AF_ALG)]),
        _rule(("socket",), args=[_arg(0, "SCMP_CMP_EQ", AF_ALG + 1)]),
        _rule(("socket",), args=[_arg(0, "SCMP_CMP_GT", AF_VSOCK)]),
        *(_rule(("personality",), args=[_arg(0, "SCMP_CMP_EQ", p)]) for p in PERSONALITIES),
        # Without CAP_SYS_ADMIN, clone makes processes and threads but no namespaces
        # (s390 passes the flags as the second argument).
        _rule(
            ("clone",),
            args=[_arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS)],
            unless_caps=("CAP_SYS_ADMIN",),
            unless_arches=s390,
            comment="processes and threads, no new namespaces",
        ),
        _rule(
            ("clone",),
            args=[_arg(1, "SCMP_CMP_MASKED_EQ", CLONE_NAMESPACE_FLAGS)],
            arches=s390,
            unless_caps=("CAP_SYS_ADMIN",),
            comment="s390 passes clone's flags second",
        ),
        # clone3 takes its flags in memory, out of a filter's reach, so it cannot be
        # masked like clone. ENOSYS (not EPERM) makes glibc and others fall back to clone.
        _rule(
            ("clone3",),
            errno=ENOSYS,
            unless_caps=("CAP_SYS_ADMIN",),
            comment="flags out of reach: ENOSYS so callers fall back to clone",
        ),
    ]


def _architecture_specific() -> list[dict[str, Any]]:
    return [
        _rule(("sync_file_range2", "swapcontext"), arches=("ppc64le",)),
        _rule(
            _names("""
                arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls
            """),
            arches=("arm", "arm64"),
        ),
        _rule(("arch_prctl",), arches=("amd64", "x32")),
        _rule(("modify_ldt",), arches=("amd64", "x32", "x86")),
        _rule(
            _names("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr"),
            arches=("s390", "s390x"),
        ),
        _rule(("riscv_flush_icache",), arches=("riscv64",)),
    ]


def profile() -> dict[str, Any]:
    """The built-in policy as a Docker-style profile (a new object on every call)."""
    everyone = [name for names in ALLOWED.values() for name in names]
    gates = [_rule(g.syscalls, caps=(g.capability,), comment=g.why) for g in CAPABILITY_GATED]
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "archMap": [
            {"architecture": arch, "subArchitectures": list(subs)}
            for arch, subs in ARCHITECTURES.items()
        ],
        "syscalls": [
            _rule(everyone),
            *_argument_filters(),
            *_architecture_specific(),
            # clone and clone3 gated here: their argument rules above are for the rest.
            *gates,
        ],
    }


if __name__ == "__main__":
    print(json.dumps(profile(), indent=2))
