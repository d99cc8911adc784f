// seccomp-bpf: the system calls a sandboxed worker may not make.
//
// The policy is data (kSeccompRules in seccomp_policy.cpp): a deny list, each rule with
// the reason it exists, on top of a default of "allow". A deny list, because the
// interpreters and whatever C extensions a script loads use a wide, version-dependent set
// of ordinary calls, while the dangerous ones are few and well known: kernel attack
// surface (bpf, io_uring, userfaultfd, perf_event_open, keyctl), ways out of the other
// layers (mount, namespaces, ptrace, process_vm_*), and host-wide operations that
// capabilities already stop (modules, kexec) kept here as a second wall.
//
// The program is compiled once, in the parent, with libseccomp and exported as BPF; the
// child installs it with prctl() and allocates nothing. A second, hand-written program
// restricts personality() to the default persona and the query, which libseccomp cannot
// express (it allows one comparison per argument). System calls of other architectures
// (i386 through int 0x80, x32) kill the process.
#pragma once

#include <linux/filter.h>

#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/error.hpp"
#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

struct SeccompRule {
    const char* syscall;
    int errno_value;  // the call fails with this errno (EPERM, or ENOSYS to make libc fall back)
    // Condition on one argument: (arg[arg] & mask) == value, or != value with `not_equal`.
    // arg < 0: no condition.
    int arg = -1;
    std::uint64_t mask = 0;
    std::uint64_t value = 0;
    const char* reason = "";
    bool not_equal = false;
};

// Which sandbox the policy is for. A sandbox without namespaces (the landlock tier) shares
// the host's network stack and process table, so it also gets kNoNamespaceRules: no
// socket() at all (AF_UNIX socketpair() only), no signals to a process group or to
// everyone, and the signal guard below.
enum class SeccompTier { namespaces, no_namespaces };

// The policy, in the order it is compiled: the common rules, then the tier's.
std::span<const SeccompRule> seccomp_rules(SeccompTier tier = SeccompTier::namespaces);

// The signal guard (no_namespaces only): kill, tkill, tgkill, rt_sigqueueinfo,
// rt_tgsigqueueinfo and pidfd_open fail with EPERM when their first argument names one of
// two processes (the sandbox's supervisor and the runtime), whose ids are known only in
// the child: it patches its own copy before installing. Landlock's signal scoping (ABI >= 6)
// and distinct uids stop signals to everyone else; seccomp cannot list "everyone else".
inline constexpr std::size_t kSignalGuardLength = 14;

struct SeccompProgram {
    std::vector<sock_filter> main;         // from libseccomp
    std::vector<sock_filter> personality;  // hand-written
    bool signal_guard = false;             // install the guard (no_namespaces)
    std::array<sock_filter, kSignalGuardLength> guard{};
};

// Compiles the policy (parent side). Errc::sandbox_unavailable when libseccomp fails.
Result<SeccompProgram> build_seccomp_program(SeccompTier tier = SeccompTier::namespaces);

// The program's signal guard protecting `protect_a` and `protect_b` (0: no one), as the
// child installs it. Allocates nothing: the child calls it.
std::array<sock_filter, kSignalGuardLength> signal_guard_for(const SeccompProgram& program,
                                                             pid_t protect_a, pid_t protect_b);

// Child side: installs the programs. Needs no_new_privs (or CAP_SYS_ADMIN) first.
// `protect_a`, `protect_b`: the processes the signal guard protects (when it is on).
ChildFailure install_seccomp(const SeccompProgram& program, pid_t protect_a = 0,
                             pid_t protect_b = 0);

}  // namespace sandflow::sandbox::mech
