// The worker's last steps before execve in the namespace and landlock tiers, once its ids,
// rlimits and no_new_privs are set: Landlock's rules, then the seccomp filter, each when its
// layer is on, then execve. Child side, async-signal-safe.
#pragma once

#include <sys/types.h>

#include "sandbox/mechanisms/landlock.hpp"
#include "sandbox/mechanisms/seccomp_policy.hpp"
#include "sandbox/start_timeline.hpp"

namespace sandflow::sandbox::mech {

struct WorkerExec {
    const LandlockPlan* landlock = nullptr;   // null: that layer is off
    const SeccompProgram* seccomp = nullptr;  // null: that layer is off
    // The processes the seccomp signal guard protects (0: no one; install_seccomp).
    pid_t protect_a = 0, protect_b = 0;
    char* const* argv = nullptr;
    char* const* envp = nullptr;
    StartTimeline* timeline = nullptr;  // marks landlock_applied, seccomp_installed, execve
};

// Applies the layers and execs argv[0]; a failure is reported on `report_fd`
// (child_report.hpp). Never returns.
[[noreturn]] void confine_and_exec(const WorkerExec& w, int report_fd);

}  // namespace sandflow::sandbox::mech
