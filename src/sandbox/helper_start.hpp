// Starting the program that runs a sandbox for its backend (gVisor's runsc, QEMU): the steps
// its child takes between fork and execve, and the parent's wait for that execve. The child
// reports a failed step as {step, errno} (mechanisms/child_report.hpp) in HelperStep's
// numbering; everything it does is async-signal-safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "core/error.hpp"
#include "sandbox/process.hpp"

namespace sandflow::sandbox {

enum HelperStep : int {
    kHelperDescriptors = 1,
    kHelperCgroups,
    kHelperSetpgid,
    kHelperDeathSignal,
    kHelperNamespaces,
    kHelperNoNewPrivs,
    kHelperLandlock,
    kHelperChdir,
    kHelperExec,
};

// Child side, first: puts src[i] on descriptor i for every i < count, close-on-exec from
// `report_fd` (the report pipe's number) on; default signals; a process group of its own, so
// that Process::kill's kill(-pid) reaches what the helper starts; PR_SET_PDEATHSIG(SIGKILL).
// Exits at once when `parent` died before that; a failed step is reported.
void enter_helper_child(const int* src, int count, int report_fd, pid_t parent);

struct HelperWords {
    std::string_view backend;   // "gvisor": the errors' backend
    std::string_view helper;    // "runsc": named in the errors and the steps' names
    std::string_view program;   // the helper's path
    std::string_view for_what;  // "the gvisor sandbox"
};

// "execve of runsc", "entering QEMU's cgroups"...: a step in words.
std::string helper_step_name(int step, std::string_view helper);

// Parent side: waits for the child's report on `report_fd`. A child that did not reach
// execve is killed and the start fails with Errc::sandbox_unavailable: "<helper> was not
// started within N s", or "starting <program> for <for_what> failed at <step>: <errno>", the
// data naming the backend and errno. Otherwise the worker's descriptors are made
// non-blocking.
Result<void> await_helper_start(Process& proc, int report_fd, const HelperWords& words);

}  // namespace sandflow::sandbox
