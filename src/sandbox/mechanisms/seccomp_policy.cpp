#include "sandbox/mechanisms/seccomp_policy.hpp"

#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>

namespace sandflow::sandbox::mech {

namespace {

// int-typed arguments: the kernel uses only the low 32 bits, so only those are compared
// (a caller could set the high ones to slip past an exact 64-bit match).
constexpr std::uint64_t kLow32 = 0xffffffffu;
constexpr int kTiocsti = 0x5412;    // TIOCSTI: push characters into a terminal's input
constexpr int kTioclinux = 0x541c;  // TIOCLINUX: console selection tricks

constexpr SeccompRule kRules[] = {
    // Leaving the mount namespace's view or rebuilding it.
    {"mount", EPERM, -1, 0, 0, "remount or bind host paths into the sandbox's view"},
    {"umount2", EPERM, -1, 0, 0, "uncover what a mount hides"},
    {"pivot_root", EPERM, -1, 0, 0, "swap the root the sandbox was given"},
    {"chroot", EPERM, -1, 0, 0, "classic chroot escapes need a second root"},
    {"move_mount", EPERM, -1, 0, 0, "new mount API: same as mount"},
    {"open_tree", EPERM, -1, 0, 0, "new mount API: clone a mount tree"},
    {"fsopen", EPERM, -1, 0, 0, "new mount API: create a filesystem context"},
    {"fsconfig", EPERM, -1, 0, 0, "new mount API: configure a filesystem"},
    {"fsmount", EPERM, -1, 0, 0, "new mount API: mount a filesystem context"},
    {"fspick", EPERM, -1, 0, 0, "new mount API: reconfigure a mounted filesystem"},
    {"mount_setattr", EPERM, -1, 0, 0, "make read-only mounts writable again"},
    {"open_by_handle_at", EPERM, -1, 0, 0, "open files by handle, bypassing paths (shocker)"},
    // Reading or steering other processes.
    {"ptrace", EPERM, -1, 0, 0, "inspect or control another process"},
    {"process_vm_readv", EPERM, -1, 0, 0, "read another process's memory"},
    {"process_vm_writev", EPERM, -1, 0, 0, "write another process's memory"},
    {"kcmp", EPERM, -1, 0, 0, "probe other processes' kernel objects"},
    // Kernel attack surface a script never needs.
    {"bpf", EPERM, -1, 0, 0, "load eBPF programs: large kernel attack surface"},
    {"perf_event_open", EPERM, -1, 0, 0, "performance counters: side channels and kernel bugs"},
    {"userfaultfd", EPERM, -1, 0, 0, "stall the kernel mid-copy: a race-exploit primitive"},
    {"io_uring_setup", EPERM, -1, 0, 0, "io_uring: large attack surface, bypasses seccomp"},
    {"io_uring_enter", EPERM, -1, 0, 0, "io_uring: large attack surface, bypasses seccomp"},
    {"io_uring_register", EPERM, -1, 0, 0, "io_uring: large attack surface, bypasses seccomp"},
    {"keyctl", EPERM, -1, 0, 0, "kernel keyrings are not namespaced"},
    {"add_key", EPERM, -1, 0, 0, "kernel keyrings are not namespaced"},
    {"request_key", EPERM, -1, 0, 0, "kernel keyrings are not namespaced"},
    {"syslog", EPERM, -1, 0, 0, "read the host kernel log"},
    {"lookup_dcookie", EPERM, -1, 0, 0, "resolve kernel directory cookies"},
    // Host-wide operations (capabilities stop them too).
    {"kexec_load", EPERM, -1, 0, 0, "replace the running kernel"},
    {"kexec_file_load", EPERM, -1, 0, 0, "replace the running kernel"},
    {"init_module", EPERM, -1, 0, 0, "load kernel code"},
    {"finit_module", EPERM, -1, 0, 0, "load kernel code"},
    {"delete_module", EPERM, -1, 0, 0, "unload kernel code"},
    {"acct", EPERM, -1, 0, 0, "write process accounting to a host file"},
    {"swapon", EPERM, -1, 0, 0, "host swap configuration"},
    {"swapoff", EPERM, -1, 0, 0, "host swap configuration"},
    {"reboot", EPERM, -1, 0, 0, "reboot the host (or the pid namespace)"},
    {"quotactl", EPERM, -1, 0, 0, "host filesystem quotas"},
    {"mknod", EPERM, 1, S_IFMT, S_IFCHR, "a device node opens a device past /dev's view"},
    {"mknod", EPERM, 1, S_IFMT, S_IFBLK, "a device node opens a device past /dev's view"},
    {"mknodat", EPERM, 2, S_IFMT, S_IFCHR, "a device node opens a device past /dev's view"},
    {"mknodat", EPERM, 2, S_IFMT, S_IFBLK, "a device node opens a device past /dev's view"},
    // Signals to pid 1, the sandbox's init (the namespace tier's, tini under gVisor, the
    // host's in the landlock tier). Linux ignores them inside a pid namespace; gVisor's kernel
    // delivers them, and the init's end would be the sandbox's.
    {"kill", EPERM, 0, kLow32, 1, "signal the sandbox's init"},
    {"tkill", EPERM, 0, kLow32, 1, "signal the sandbox's init"},
    {"tgkill", EPERM, 0, kLow32, 1, "signal the sandbox's init"},
    {"rt_sigqueueinfo", EPERM, 0, kLow32, 1, "signal the sandbox's init"},
    {"rt_tgsigqueueinfo", EPERM, 0, kLow32, 1, "signal the sandbox's init"},
    {"pidfd_open", EPERM, 0, kLow32, 1, "a handle to signal the sandbox's init"},
    // New namespaces: each one is fresh attack surface and a way to regain capabilities.
    {"unshare", EPERM, -1, 0, 0, "new namespaces give back capabilities inside them"},
    {"setns", EPERM, -1, 0, 0, "join another namespace"},
    {"clone", EPERM, 0, CLONE_NEWNS, CLONE_NEWNS, "clone into a new mount namespace"},
    {"clone", EPERM, 0, CLONE_NEWUSER, CLONE_NEWUSER, "clone into a new user namespace"},
    {"clone", EPERM, 0, CLONE_NEWPID, CLONE_NEWPID, "clone into a new pid namespace"},
    {"clone", EPERM, 0, CLONE_NEWNET, CLONE_NEWNET, "clone into a new network namespace"},
    {"clone", EPERM, 0, CLONE_NEWIPC, CLONE_NEWIPC, "clone into a new ipc namespace"},
    {"clone", EPERM, 0, CLONE_NEWUTS, CLONE_NEWUTS, "clone into a new uts namespace"},
    {"clone", EPERM, 0, CLONE_NEWCGROUP, CLONE_NEWCGROUP, "clone into a new cgroup namespace"},
    {"clone", EPERM, 0, CLONE_NEWTIME, CLONE_NEWTIME, "clone into a new time namespace"},
    // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes glibc
    // and others fall back to clone, whose flags the rules above check.
    {"clone3", ENOSYS, -1, 0, 0, "flags in memory cannot be checked; libc falls back to clone"},
    // Sockets that reach kernel subsystems rather than peers.
    {"socket", EPERM, 0, kLow32, AF_NETLINK, "netlink: kernel configuration interfaces"},
    {"socket", EPERM, 0, kLow32, AF_PACKET, "packet sockets: raw link-layer access"},
    {"socket", EPERM, 1, 0xf, SOCK_RAW, "raw IP sockets: forge packets"},
    // Terminals (the worker has none, but a leaked one must stay inert).
    {"ioctl", EPERM, 1, kLow32, kTiocsti, "inject input into a terminal"},
    {"ioctl", EPERM, 1, kLow32, kTioclinux, "console tricks on a virtual terminal"},
};

// Without namespaces a socket of any family reaches the host: TCP and UDP its network
// (Landlock covers TCP only), unix sockets at a path the host's listeners (Landlock does
// not cover connecting to them), netlink its configuration. socketpair() gives the
// interpreters the local channels they use (multiprocessing, child processes' pipes).
constexpr int kSignBit = static_cast<int>(0x80000000u);
constexpr SeccompRule kNoNamespaceRules[] = {
    {"socket", EPERM, -1, 0, 0, "no network namespace: every socket would reach the host's"},
    {"socketpair", EPERM, 0, kLow32, AF_UNIX, "only AF_UNIX pairs, which reach no one else", true},
    {"kill", EPERM, 0, 0x80000000u, static_cast<std::uint32_t>(kSignBit),
     "no pid namespace: kill(-1) and process groups could reach the host's processes"},
};

#if defined(__x86_64__)
constexpr std::uint32_t kNativeArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr std::uint32_t kNativeArch = AUDIT_ARCH_AARCH64;
#else
#error "seccomp_policy.cpp: add this architecture's AUDIT_ARCH value"
#endif

constexpr std::uint32_t kOffNr = offsetof(seccomp_data, nr);
constexpr std::uint32_t kOffArch = offsetof(seccomp_data, arch);
constexpr std::uint32_t kOffArg0 = offsetof(seccomp_data, args);  // little-endian: low half first
constexpr std::uint32_t kPersonaDefault = 0;                      // PER_LINUX
constexpr std::uint32_t kPersonaQuery = 0xffffffffu;

// The few classic-BPF instructions the hand-written programs use.
constexpr sock_filter stmt(std::uint16_t code, std::uint32_t k) {
    return sock_filter{code, 0, 0, k};
}
constexpr sock_filter jeq(std::uint32_t k, std::uint8_t jt, std::uint8_t jf) {
    return sock_filter{static_cast<std::uint16_t>(BPF_JMP | BPF_JEQ | BPF_K), jt, jf, k};
}
constexpr std::uint16_t kLd = BPF_LD | BPF_W | BPF_ABS;
constexpr std::uint16_t kRet = BPF_RET | BPF_K;

// personality(2) is allowed only to query (0xffffffff) or to set the default persona;
// anything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, other ABIs) fails with EPERM.
// personality takes an unsigned int, so the high half of the argument must be zero.
std::vector<sock_filter> personality_program() {
    return {
        /* 0 */ stmt(kLd, kOffArch),
        /* 1 */ jeq(kNativeArch, 0, 8),  // other architectures: the main program kills them
        /* 2 */ stmt(kLd, kOffNr),
        /* 3 */ jeq(SYS_personality, 0, 6),
        /* 4 */ stmt(kLd, kOffArg0 + 4),
        /* 5 */ jeq(0, 0, 3),  // high half set: deny
        /* 6 */ stmt(kLd, kOffArg0),
        /* 7 */ jeq(kPersonaDefault, 2, 0),
        /* 8 */ jeq(kPersonaQuery, 1, 0),
        /* 9 */ stmt(kRet, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        /* 10 */ stmt(kRet, SECCOMP_RET_ALLOW),
    };
}

// See seccomp_policy.hpp. Slots kGuardA and kGuardB hold the protected pids.
constexpr std::size_t kGuardA = 10, kGuardB = 11;
constexpr std::uint32_t kNoPid = 0xffffffffu;  // kill(-1) is refused by the main program
std::array<sock_filter, kSignalGuardLength> signal_guard_program() {
    return {{
        /* 0 */ stmt(kLd, kOffArch),
        /* 1 */ jeq(kNativeArch, 0, 10),  // other architectures: the main program kills them
        /* 2 */ stmt(kLd, kOffNr),
        /* 3 */ jeq(SYS_kill, 5, 0),
        /* 4 */ jeq(SYS_tkill, 4, 0),
        /* 5 */ jeq(SYS_tgkill, 3, 0),
        /* 6 */ jeq(SYS_rt_sigqueueinfo, 2, 0),
        /* 7 */ jeq(SYS_rt_tgsigqueueinfo, 1, 0),
        /* 8 */ jeq(SYS_pidfd_open, 0, 3),
        /* 9 */ stmt(kLd, kOffArg0),  // the pid: an int, so the low half only
        /* 10 */ jeq(kNoPid, 2, 0),   // protect_a, patched in the child
        /* 11 */ jeq(kNoPid, 1, 0),   // protect_b, patched in the child
        /* 12 */ stmt(kRet, SECCOMP_RET_ALLOW),
        /* 13 */ stmt(kRet, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    }};
}

struct CtxDeleter {
    void operator()(void* ctx) const { seccomp_release(ctx); }
};

Error seccomp_error(const std::string& what, int rc) {
    Error e = system_error("seccomp: " + what, -rc);
    e.code = Errc::sandbox_unavailable;
    e.message +=
        " (is libseccomp older than the kernel's system calls? install libseccomp2 "
        ">= 2.5)";
    return e;
}

}  // namespace

std::span<const SeccompRule> seccomp_rules(SeccompTier tier) {
    static const std::vector<SeccompRule> no_namespaces = [] {
        std::vector<SeccompRule> v;
        // socket() is refused whole here: its conditional rules would only repeat that.
        for (const auto& r : kRules)
            if (std::strcmp(r.syscall, "socket") != 0) v.push_back(r);
        for (const auto& r : kNoNamespaceRules) v.push_back(r);
        return v;
    }();
    if (tier == SeccompTier::no_namespaces) return no_namespaces;
    return kRules;
}

Result<SeccompProgram> build_seccomp_program(SeccompTier tier) {
    std::unique_ptr<void, CtxDeleter> ctx(seccomp_init(SCMP_ACT_ALLOW));
    if (!ctx) return fail(Errc::sandbox_unavailable, "seccomp_init failed (out of memory?)");
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
        rc != 0)
        return tl::unexpected(seccomp_error("setting the foreign-architecture action", rc));
    for (const auto& r : seccomp_rules(tier)) {
        const int nr = seccomp_syscall_resolve_name(r.syscall);
        if (nr == __NR_SCMP_ERROR)
            return tl::unexpected(
                seccomp_error(std::string("unknown system call ") + r.syscall, -ENOSYS));
        scmp_arg_cmp cmp{};
        unsigned ncmp = 0;
        if (r.arg >= 0) {
            cmp = r.not_equal ? scmp_arg_cmp{static_cast<unsigned>(r.arg), SCMP_CMP_NE, r.value, 0}
                              : scmp_arg_cmp{static_cast<unsigned>(r.arg), SCMP_CMP_MASKED_EQ,
                                             r.mask, r.value};
            ncmp = 1;
        }
        if (int rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ERRNO(r.errno_value), nr, ncmp,
                                            ncmp ? &cmp : nullptr);
            rc != 0)
            return tl::unexpected(seccomp_error(std::string("rule for ") + r.syscall, rc));
    }

    const int fd = ::memfd_create("sandflow-seccomp", MFD_CLOEXEC);
    if (fd < 0) return tl::unexpected(system_error("memfd_create for the seccomp program", errno));
    std::vector<char> bytes;
    int rc = seccomp_export_bpf(ctx.get(), fd);
    if (rc == 0) {
        const off_t size = ::lseek(fd, 0, SEEK_END);
        if (size > 0 && ::lseek(fd, 0, SEEK_SET) == 0) {
            bytes.resize(static_cast<std::size_t>(size));
            std::size_t off = 0;
            while (off < bytes.size()) {
                const ssize_t n = ::read(fd, bytes.data() + off, bytes.size() - off);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) break;
                off += static_cast<std::size_t>(n);
            }
            if (off != bytes.size()) rc = -EIO;
        } else {
            rc = -EIO;
        }
    }
    ::close(fd);
    if (rc != 0) return tl::unexpected(seccomp_error("exporting the BPF program", rc));
    if (bytes.empty() || bytes.size() % sizeof(sock_filter) != 0)
        return tl::unexpected(seccomp_error("the exported program has a bad size", -EINVAL));

    SeccompProgram p;
    p.main.resize(bytes.size() / sizeof(sock_filter));
    std::memcpy(p.main.data(), bytes.data(), bytes.size());
    p.personality = personality_program();
    p.signal_guard = tier == SeccompTier::no_namespaces;
    if (p.signal_guard) p.guard = signal_guard_program();
    return p;
}

std::array<sock_filter, kSignalGuardLength> signal_guard_for(const SeccompProgram& program,
                                                             pid_t protect_a, pid_t protect_b) {
    std::array<sock_filter, kSignalGuardLength> guard = program.guard;
    guard[kGuardA].k = protect_a > 0 ? static_cast<std::uint32_t>(protect_a) : kNoPid;
    guard[kGuardB].k = protect_b > 0 ? static_cast<std::uint32_t>(protect_b) : kNoPid;
    return guard;
}

ChildFailure install_seccomp(const SeccompProgram& program, pid_t protect_a, pid_t protect_b) {
    auto install = [](const sock_filter* code, std::size_t n) {
        sock_fprog f{static_cast<unsigned short>(n), const_cast<sock_filter*>(code)};
        return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &f, 0, 0) == 0;
    };
    if (program.signal_guard) {
        const auto guard = signal_guard_for(program, protect_a, protect_b);  // on the stack
        if (!install(guard.data(), guard.size())) return failed_at(kStepSeccomp);
    }
    for (const auto* prog : {&program.personality, &program.main})
        if (!install(prog->data(), prog->size())) return failed_at(kStepSeccomp);
    return {};
}

}  // namespace sandflow::sandbox::mech
