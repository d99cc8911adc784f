// How a sandbox's pre-exec code reports a failure: the same convention as
// spawn_process() (sandbox/process.cpp), two ints {step, errno} written to a close-on-exec
// pipe, then _exit(127). Mechanism functions that run in the child return a ChildFailure
// instead of writing it themselves, so that they stay free of descriptors and only the
// orchestrator knows the pipe. Everything here is async-signal-safe.
#pragma once

#include <unistd.h>

#include <cerrno>

namespace sandflow::sandbox::mech {

// Every step the child can fail at, grouped by mechanism. Mount steps are numbered
// kStepMountFirst + the index of the operation in the MountPlan, which names it.
enum ChildStep : int {
    kStepNone = 0,
    kStepDescriptors = 1,
    kStepDeathSignal,
    kStepSyncWait,
    kStepSetgroups,
    kStepSetgid,
    kStepSetuid,
    kStepCgroupNamespace,
    kStepHostname,
    kStepForkWorker,
    kStepSignals,
    kStepSetsid,
    kStepRlimit,
    kStepChdir,
    kStepSecurebits,
    kStepBoundingSet,
    kStepCapset,
    kStepNoNewPrivs,
    kStepLandlock,
    kStepSeccomp,
    kStepExec,
    kStepSubreaper,
    kStepSignalMask,
    kStepCgroupEnter,
    kStepMountFirst = 1000,
};

// "prctl(PR_SET_PDEATHSIG)", "execve", ...: for the parent's error message.
const char* child_step_name(int step);

struct ChildFailure {
    int step = kStepNone;
    int err = 0;
    explicit operator bool() const { return step != kStepNone; }
};

// Captures errno for `step`; call right after the failing system call.
inline ChildFailure failed_at(int step) {
    return ChildFailure{step, errno};
}

[[noreturn]] inline void report_and_exit(int report_fd, ChildFailure f) {
    const int msg[2] = {f.step, f.err};
    [[maybe_unused]] ssize_t n = ::write(report_fd, msg, sizeof msg);
    ::_exit(127);
}

}  // namespace sandflow::sandbox::mech
