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

namespace sandflow::sandbox::ns {

// init is a copy of the runtime's memory (it never calls execve). hide_runtime_memory()
// makes that copy unreadable from inside: non-dumpable (so /proc/1/mem, environ, maps,
// fd are refused to the worker even though both are uid 0 inside), the runtime's command
// line and environment strings zeroed (/proc/1/cmdline is readable by anyone), and the
// name "sandflow-init". Call it after the parent has written the id maps: a non-dumpable
// process's /proc files belong to root, which an unprivileged parent is not.
struct RuntimeImage {
    // From the runtime's /proc/self/stat: where its argv and environment strings are.
    unsigned long arg_start = 0, arg_end = 0, env_start = 0, env_end = 0;
};
RuntimeImage read_runtime_image();
void hide_runtime_memory(const RuntimeImage& image);

// Reaps until `worker` has ended, then kills the rest and exits: with the worker's exit
// status, or 128 + its signal. The raw wait status goes to `status_fd` first (4 bytes),
// so the parent can tell "killed by SIGKILL" from "exited with 137".
[[noreturn]] void run_init(pid_t worker, int status_fd);

}  // namespace sandflow::sandbox::ns
