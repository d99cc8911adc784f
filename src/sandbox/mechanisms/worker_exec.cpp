#include "sandbox/mechanisms/worker_exec.hpp"

#include <unistd.h>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox::mech {

void confine_and_exec(const WorkerExec& w, int report_fd) {
    if (w.landlock) {
        if (auto f = apply_landlock(*w.landlock)) report_and_exit(report_fd, f);
        mark(w.timeline, StartMark::landlock_applied);
    }
    if (w.seccomp) {
        if (auto f = install_seccomp(*w.seccomp, w.protect_a, w.protect_b))
            report_and_exit(report_fd, f);
        mark(w.timeline, StartMark::seccomp_installed);
    }
    mark(w.timeline, StartMark::execve);
    ::execve(w.argv[0], w.argv, w.envp);
    report_and_exit(report_fd, failed_at(kStepExec));
}

}  // namespace sandflow::sandbox::mech
