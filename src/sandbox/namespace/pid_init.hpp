// The sandbox's PID 1.
//
// A new pid namespace needs an init: orphans are re-parented to it and must be reaped,
// and when it exits the kernel kills everything else in the namespace. This init forks
// nothing but the worker (the orchestrator does that), then only waits: it reaps every
// child, and when the worker ends it SIGKILLs whatever is left, writes the worker's wait
// status to the parent, and exits, taking the sandbox down. It never allocates.
//
// Signals from inside the namespace cannot reach it (the kernel drops signals to a pid
// namespace's init unless it has a handler, and it has none); SIGKILL from the host
// (Process::kill) ends it and with it the whole sandbox.
#pragma once

#include <sys/types.h>

#include "sandbox/mechanisms/runtime_image.hpp"

namespace sandflow::sandbox::ns {

using mech::hide_runtime_memory;
using mech::read_runtime_image;
using mech::RuntimeImage;

// Reaps until `worker` has ended, then kills the rest and exits: with the worker's exit
// status, or 128 + its signal. The raw wait status goes to `status_fd` first (4 bytes),
// so the parent can tell "killed by SIGKILL" from "exited with 137".
[[noreturn]] void run_init(pid_t worker, int status_fd);

}  // namespace sandflow::sandbox::ns
