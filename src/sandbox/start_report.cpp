#include "sandbox/start_report.hpp"

#include <cerrno>
#include <cstring>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox {

std::string general_start_hint(int step, int err) {
    if (step == mech::kStepExec && err == ENOENT)
        return " (the interpreter is not installed under /usr on this host)";
    return " (run `sandflow doctor` to see which mechanism this host lacks)";
}

Result<void> await_start(Process& proc, int report_fd, StartTimeline* timeline,
                         const StartWords& words) {
    // EOF: every copy of the pipe's write end closed, the worker's at execve. Two ints: a
    // step failed.
    const ExecReport report = wait_for_exec(report_fd, kExecTimeoutMs);
    mark(timeline, StartMark::exec_reported);
    const std::string tier(words.tier);
    if (report.kind == ExecReport::timed_out) {
        proc.kill_and_wait();
        return fail(Errc::sandbox_unavailable,
                    "the " + tier + " sandbox did not reach execve within " +
                        std::to_string(kExecTimeoutMs / 1000) + " s; it was killed",
                    {{"backend", tier}});
    }
    if (report.kind == ExecReport::failed) {
        proc.kill_and_wait();
        const std::string what =
            words.step_name ? words.step_name(report.step) : mech::child_step_name(report.step);
        const std::string hint = words.hint ? words.hint(report.step, report.err)
                                            : general_start_hint(report.step, report.err);
        return fail(Errc::sandbox_unavailable,
                    "starting " + std::string(words.program) + " in the " + tier +
                        " sandbox failed at " + what + ": " + std::strerror(report.err) + hint,
                    {{"backend", tier}, {"step", what}, {"errno", report.err}});
    }
    return set_worker_fds_nonblocking(proc);
}

}  // namespace sandflow::sandbox
