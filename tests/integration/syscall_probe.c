/*
 * syscall_probe: make one system call per named probe and print how it went.
 *
 * Built statically by the seccomp tests and run inside containers, where busybox
 * has no applet for most of these calls. For each argument it prints one line,
 * "<probe> ok" or "<probe> <ERRNO name>". Where a probe passes arguments the kernel
 * refuses before looking at capabilities (a NULL path, a bad fd), the answer tells
 * a seccomp refusal (EPERM) apart from the kernel's own (EFAULT, EBADF, EINVAL):
 * such probes never change anything, even when they are allowed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

/* The result of a raw syscall(2): 0 (or a value) on success, -errno on failure. */
static long raw(long result) { return result < 0 ? -errno : 0; }

/* A child made by clone/clone3 leaves at once; the parent reaps it. */
static long reap(long pid) {
    if (pid < 0) return -errno;
    if (pid == 0) syscall(SYS_exit_group, 0);
    waitpid((pid_t)pid, NULL, __WALL);
    return 0;
}

static long clone_flags(unsigned long flags) { return reap(syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0)); }

static long clone3_flags(unsigned long long flags) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = flags;
    args.exit_signal = SIGCHLD;
    return reap(syscall(SYS_clone3, &args, sizeof args));
}

static long p_fork(void) { return clone_flags(0); }
static long p_clone_user(void) { return clone_flags(CLONE_NEWUSER); }
static long p_clone_mount(void) { return clone_flags(CLONE_NEWNS); }
static long p_clone3(void) { return clone3_flags(0); }
static long p_clone3_user(void) { return clone3_flags(CLONE_NEWUSER); }

/* unshare in a child, so the probe itself keeps its namespaces for later probes. */
static long in_child(long (*probe)(void)) {
    int fds[2];
    long result = 0;
    if (pipe(fds) < 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        result = probe();
        (void)!write(fds[1], &result, sizeof result);
        _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], &result, sizeof result) != sizeof result) result = -EIO;
    close(fds[0]);
    waitpid(pid, NULL, 0);
    return result;
}

static long do_unshare_user(void) { return raw(unshare(CLONE_NEWUSER)); }
static long do_unshare_mount(void) { return raw(unshare(CLONE_NEWNS)); }
static long do_mount_tmpfs(void) {
    mkdir("/tmp/probe-mnt", 0755);
    return raw(mount("none", "/tmp/probe-mnt", "tmpfs", 0, ""));
}
static long do_setns(void) {
    int fd = open("/proc/self/ns/uts", O_RDONLY);
    if (fd < 0) return -errno;
    long result = raw(setns(fd, CLONE_NEWUTS));
    close(fd);
    return result;
}
static long p_unshare_user(void) { return in_child(do_unshare_user); }
static long p_unshare_mount(void) { return in_child(do_unshare_mount); }
static long p_mount_tmpfs(void) { return in_child(do_mount_tmpfs); }
static long p_setns(void) { return in_child(do_setns); }

static long p_mount_null(void) { return raw(syscall(SYS_mount, NULL, NULL, NULL, 0, NULL)); }
static long p_umount_null(void) { return raw(syscall(SYS_umount2, NULL, 0)); }
static long p_setns_badfd(void) { return raw(syscall(SYS_setns, -1, 0)); }
static long p_pivot_root_null(void) { return raw(syscall(SYS_pivot_root, NULL, NULL)); }
static long p_swapon_null(void) { return raw(syscall(SYS_swapon, NULL, 0)); }
static long p_sethostname_long(void) { return raw(syscall(SYS_sethostname, NULL, 100000)); }

static long p_keyctl(void) {
    return raw(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0));
}
static long p_add_key(void) {
    return raw(syscall(SYS_add_key, "user", "probe", "x", 1, KEY_SPEC_PROCESS_KEYRING));
}
static long p_request_key(void) {
    long r = syscall(SYS_request_key, "user", "probe-missing", NULL, 0);
    return r < 0 && errno == ENOKEY ? 0 : raw(r); /* allowed: the key just is not there */
}

static long sock(int family, int type) {
    int fd = socket(family, type, 0);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
}
static long p_socket_inet(void) { return sock(AF_INET, SOCK_STREAM); }
static long p_socket_unix(void) { return sock(AF_UNIX, SOCK_STREAM); }
static long p_socket_vsock(void) { return sock(AF_VSOCK, SOCK_STREAM); }
static long p_socket_alg(void) { return sock(AF_ALG, SOCK_SEQPACKET); }

static long p_personality_query(void) { return raw(syscall(SYS_personality, 0xffffffffUL)); }
static long p_personality_linux32(void) {
    long old = syscall(SYS_personality, 0xffffffffUL);
    long r = raw(syscall(SYS_personality, PER_LINUX32));
    if (r == 0) syscall(SYS_personality, old);
    return r;
}
static long p_personality_norandom(void) {
    long old = syscall(SYS_personality, 0xffffffffUL);
    long r = raw(syscall(SYS_personality, ADDR_NO_RANDOMIZE));
    if (r == 0) syscall(SYS_personality, old);
    return r;
}

static long p_ptrace_self(void) { return raw(syscall(SYS_ptrace, PTRACE_PEEKUSER, getpid(), 0, 0)); }
static long p_process_vm_readv(void) {
    char src[8] = "probe", dst[8];
    struct iovec local = {dst, sizeof dst}, remote = {src, sizeof src};
    return raw(syscall(SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0));
}
static long p_kcmp(void) { return raw(syscall(SYS_kcmp, getpid(), getpid(), 1 /* KCMP_VM */, 0, 0)); }
static long p_pidfd_getfd(void) {
    long pidfd = syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0) return -errno;
    long fd = syscall(SYS_pidfd_getfd, pidfd, 1, 0);
    long r = raw(fd);
    if (fd >= 0) close((int)fd);
    close((int)pidfd);
    return r;
}
static long p_open_by_handle_at(void) {
    struct {
        struct file_handle h;
        unsigned char bytes[MAX_HANDLE_SZ];
    } handle;
    int mount_id;
    handle.h.handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, "/dev", &handle.h, &mount_id, 0) < 0) return -errno;
    int mount_fd = open("/dev", O_RDONLY | O_DIRECTORY);
    if (mount_fd < 0) return -errno;
    long fd = syscall(SYS_open_by_handle_at, mount_fd, &handle.h, O_RDONLY | O_DIRECTORY);
    long r = raw(fd);
    if (fd >= 0) close((int)fd);
    close(mount_fd);
    return r;
}

/* Bad magic: EINVAL when the call gets through with CAP_SYS_BOOT; nothing reboots. */
static long p_reboot_badmagic(void) { return raw(syscall(SYS_reboot, 0, 0, 0, NULL)); }
static long p_chroot_null(void) { return raw(syscall(SYS_chroot, NULL)); }
static long p_finit_module_badfd(void) { return raw(syscall(SYS_finit_module, -1, "", 0)); }
static long p_delete_module_null(void) { return raw(syscall(SYS_delete_module, NULL, 0)); }
static long p_acct_badptr(void) { return raw(syscall(SYS_acct, (char *)1)); }
static long p_clock_settime_null(void) { return raw(syscall(SYS_clock_settime, CLOCK_REALTIME, NULL)); }
static long p_ioperm_off(void) { return raw(syscall(SYS_ioperm, 0, 0, 0)); }
static long p_get_mempolicy(void) { return raw(syscall(SYS_get_mempolicy, NULL, NULL, 0, NULL, 0)); }
static long p_syslog_size(void) { return raw(syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0)); }
static long p_bpf_badcmd(void) { return raw(syscall(SYS_bpf, 9999, NULL, 0)); }
static long p_perf_event_open_null(void) { return raw(syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0)); }
static long p_vhangup(void) { return raw(syscall(SYS_vhangup)); }
static long p_io_uring_setup_null(void) { return raw(syscall(SYS_io_uring_setup, 1, NULL)); }
static long p_getpid(void) { return raw(syscall(SYS_getpid)); }
static long p_mkdir(void) { return raw(mkdir("/tmp/probe-dir", 0755)); }

#ifdef __x86_64__
/* The 32-bit x86 system call table, reached from this 64-bit program with int 0x80:
 * seccomp sees AUDIT_ARCH_I386, so these show the filter covers the sub-architecture. */
static long i386_syscall(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret < 0 && ret > -4096 ? ret : 0;
}
static long p_i386_getpid(void) { return i386_syscall(20, 0, 0, 0); }
static long do_i386_unshare_user(void) { return i386_syscall(310, CLONE_NEWUSER, 0, 0); }
static long p_i386_unshare_user(void) { return in_child(do_i386_unshare_user); }
static long p_i386_keyctl(void) {
    return i386_syscall(288, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
}
static long p_arch_prctl(void) {
    unsigned long fs;
    return raw(syscall(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, &fs));
}
static long p_modify_ldt(void) {
    char buf[16];
    return raw(syscall(SYS_modify_ldt, 0, buf, sizeof buf));
}
#endif

struct probe {
    const char *name;
    long (*run)(void);
};

static const struct probe probes[] = {
    {"getpid", p_getpid},
    {"mkdir", p_mkdir},
    {"fork", p_fork},
    {"clone-user", p_clone_user},
    {"clone-mount", p_clone_mount},
    {"clone3", p_clone3},
    {"clone3-user", p_clone3_user},
    {"unshare-user", p_unshare_user},
    {"unshare-mount", p_unshare_mount},
    {"mount-tmpfs", p_mount_tmpfs},
    {"mount-null", p_mount_null},
    {"umount-null", p_umount_null},
    {"setns", p_setns},
    {"setns-badfd", p_setns_badfd},
    {"pivot_root-null", p_pivot_root_null},
    {"swapon-null", p_swapon_null},
    {"sethostname-long", p_sethostname_long},
    {"keyctl", p_keyctl},
    {"add_key", p_add_key},
    {"request_key", p_request_key},
    {"socket-inet", p_socket_inet},
    {"socket-unix", p_socket_unix},
    {"socket-vsock", p_socket_vsock},
    {"socket-alg", p_socket_alg},
    {"personality-query", p_personality_query},
    {"personality-linux32", p_personality_linux32},
    {"personality-norandom", p_personality_norandom},
    {"ptrace-self", p_ptrace_self},
    {"process_vm_readv", p_process_vm_readv},
    {"kcmp", p_kcmp},
    {"pidfd_getfd", p_pidfd_getfd},
    {"open_by_handle_at", p_open_by_handle_at},
    {"reboot-badmagic", p_reboot_badmagic},
    {"chroot-null", p_chroot_null},
    {"finit_module-badfd", p_finit_module_badfd},
    {"delete_module-null", p_delete_module_null},
    {"acct-badptr", p_acct_badptr},
    {"clock_settime-null", p_clock_settime_null},
    {"ioperm-off", p_ioperm_off},
    {"get_mempolicy", p_get_mempolicy},
    {"syslog-size", p_syslog_size},
    {"bpf-badcmd", p_bpf_badcmd},
    {"perf_event_open-null", p_perf_event_open_null},
    {"vhangup", p_vhangup},
    {"io_uring_setup-null", p_io_uring_setup_null},
#ifdef __x86_64__
    {"i386-getpid", p_i386_getpid},
    {"i386-unshare-user", p_i386_unshare_user},
    {"i386-keyctl", p_i386_keyctl},
    {"arch_prctl", p_arch_prctl},
    {"modify_ldt", p_modify_ldt},
#endif
};

static const char *errno_name(long err) {
    switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case ENOSYS: return "ENOSYS";
    case ENODEV: return "ENODEV";
    case ENOTTY: return "ENOTTY";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
    case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
    case ENOKEY: return "ENOKEY";
    case EEXIST: return "EEXIST";
    default: return NULL;
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const struct probe *found = NULL;
        for (size_t j = 0; j < sizeof probes / sizeof probes[0]; j++)
            if (strcmp(probes[j].name, argv[i]) == 0) found = &probes[j];
        if (!found) {
            printf("%s unknown-probe\n", argv[i]);
            continue;
        }
        errno = 0;
        long result = found->run();
        if (result >= 0) {
            printf("%s ok\n", argv[i]);
        } else {
            const char *name = errno_name(-result);
            if (name) printf("%s %s\n", argv[i], name);
            else printf("%s E%ld\n", argv[i], -result);
        }
        fflush(stdout);
    }
    return 0;
}
