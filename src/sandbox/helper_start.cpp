#include "sandbox/helper_start.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstring>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox {

void enter_helper_child(const int* src, int count, int report_fd, pid_t parent) {
    using mech::failed_at;
    using mech::report_and_exit;
    if (!place_descriptors(src, count, report_fd))
        report_and_exit(src[report_fd], failed_at(kHelperDescriptors));
    (void)reset_signals();
    if (::setpgid(0, 0) != 0) report_and_exit(report_fd, failed_at(kHelperSetpgid));
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        report_and_exit(report_fd, failed_at(kHelperDeathSignal));
    if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
}

std::string helper_step_name(int step, std::string_view helper) {
    const std::string h(helper);
    switch (step) {
        case kHelperDescriptors:
            return "setting up descriptors";
        case kHelperCgroups:
            return "entering " + h + "'s cgroups";
        case kHelperSetpgid:
            return "setpgid";
        case kHelperDeathSignal:
            return "prctl(PR_SET_PDEATHSIG)";
        case kHelperNamespaces:
            return "unshare of " + h + "'s namespaces";
        case kHelperNoNewPrivs:
            return "prctl(PR_SET_NO_NEW_PRIVS)";
        case kHelperLandlock:
            return "Landlock";
        case kHelperChdir:
            return "chdir /";
        case kHelperExec:
            return "execve of " + h;
        default:
            return "child set-up";
    }
}

Result<void> await_helper_start(Process& proc, int report_fd, const HelperWords& words) {
    // EOF: the child reached execve. Two ints: a step failed.
    const ExecReport report = wait_for_exec(report_fd, kExecTimeoutMs);
    const std::string backend(words.backend);
    if (report.kind == ExecReport::timed_out) {
        proc.kill_and_wait();
        return fail(Errc::sandbox_unavailable,
                    std::string(words.helper) + " was not started within " +
                        std::to_string(kExecTimeoutMs / 1000) + " s; it was killed",
                    {{"backend", backend}});
    }
    if (report.kind == ExecReport::failed) {
        proc.kill_and_wait();
        return fail(Errc::sandbox_unavailable,
                    "starting " + std::string(words.program) + " for " +
                        std::string(words.for_what) + " failed at " +
                        helper_step_name(report.step, words.helper) + ": " +
                        std::strerror(report.err),
                    {{"backend", backend}, {"errno", report.err}});
    }
    return set_worker_fds_nonblocking(proc);
}

}  // namespace sandflow::sandbox
