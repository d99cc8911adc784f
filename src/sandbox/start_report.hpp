// The parent's side of a sandbox's start, after clone(): what the child's report pipe says
// (wait_for_exec, process.hpp) turned into the start's result. The namespace and landlock
// tiers share await_start (their children report {step, errno} of
// mechanisms/child_report.hpp); gvisor and microvm await_helper_start.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "sandbox/process.hpp"
#include "sandbox/start_timeline.hpp"

namespace sandflow::sandbox {

struct StartWords {
    std::string_view tier;     // "namespace": the sandbox the errors name, and their backend
    std::string_view program;  // argv[0]
    // A failed step in words; unset: mech::child_step_name.
    std::function<std::string(int step)> step_name;
    // How to fix a failed step, appended to the error; unset: general_start_hint.
    std::function<std::string(int step, int err)> hint;
};

// " (the interpreter is not installed under /usr on this host)" for an execve that found
// nothing, else " (run `sandflow doctor` ...)".
std::string general_start_hint(int step, int err);

// Waits for the child's report on `report_fd` (the timeline marks it). A child that did not
// reach execve is killed and the start fails with Errc::sandbox_unavailable: it did not get
// there in time, or "starting <program> in the <tier> sandbox failed at <step>: <errno>",
// the data naming the backend, the step and errno. Otherwise the worker's descriptors are
// made non-blocking.
Result<void> await_start(Process& proc, int report_fd, StartTimeline* timeline,
                         const StartWords& words);

// The same for a backend whose child execs a helper that runs the sandbox (gVisor's runsc,
// QEMU), reporting {step, errno} in the backend's own numbering.
struct HelperWords {
    std::string_view backend;       // "gvisor": the errors' backend
    std::string_view helper;        // "runsc": named when it did not start in time
    std::string_view program;       // the helper's path
    std::string_view for_what;      // "the gvisor sandbox"
    const char* (*step_name)(int);  // a failed step in words
};
// A child that did not reach execve is killed and the start fails with
// Errc::sandbox_unavailable: "<helper> was not started within N s", or "starting <program>
// for <for_what> failed at <step>: <errno>", the data naming the backend and errno.
// Otherwise the worker's descriptors are made non-blocking.
Result<void> await_helper_start(Process& proc, int report_fd, const HelperWords& words);

}  // namespace sandflow::sandbox
