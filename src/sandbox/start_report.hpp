// The parent's side of a sandbox's start, after clone(): what the child's report pipe says
// (wait_for_exec, process.hpp) turned into the start's result. The namespace and landlock
// tiers share it; their children report {step, errno} (mechanisms/child_report.hpp). The
// gvisor and microvm backends, whose child execs a helper, have helper_start.hpp.
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

}  // namespace sandflow::sandbox
