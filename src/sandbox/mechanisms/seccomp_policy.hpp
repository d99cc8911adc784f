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

#include <cstdint>
#include <span>
#include <vector>

#include "core/error.hpp"
#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

struct SeccompRule {
    const char* syscall;
    int errno_value;  // the call fails with this errno (EPERM, or ENOSYS to make libc fall back)
    // Condition on one argument: (arg[arg] & mask) == value. arg < 0: no condition.
    int arg = -1;
    std::uint64_t mask = 0;
    std::uint64_t value = 0;
    const char* reason = "";
};

// The policy, in the order it is compiled.
std::span<const SeccompRule> seccomp_rules();

struct SeccompProgram {
    std::vector<sock_filter> main;         // from libseccomp
    std::vector<sock_filter> personality;  // hand-written
};

// Compiles the policy (parent side). Errc::sandbox_unavailable when libseccomp fails.
Result<SeccompProgram> build_seccomp_program();

// Child side: installs both programs. Needs no_new_privs (or CAP_SYS_ADMIN) first.
ChildFailure install_seccomp(const SeccompProgram& program);

}  // namespace sandflow::sandbox::mech
