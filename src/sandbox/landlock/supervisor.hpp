// The landlock tier's supervisor: the process between the runtime and the worker.
//
// Without a pid namespace there is no init whose death takes every process of the sandbox
// with it, and a script can leave its process group and session (setsid, double fork). So
// the supervisor, forked from the runtime (it never calls execve, runs no sandbox code and
// allocates nothing), is a child subreaper: every process the worker starts stays beneath
// it, however it detaches, and is re-parented to it when its own parent dies. It sweeps
// them all when
//   - the worker ends (as a pid namespace's init would),
//   - the runtime asks (SIGTERM: Process::kill on a deadline, a limit, an unload),
//   - the runtime dies (PR_SET_PDEATHSIG delivers SIGTERM).
// A sweep SIGKILLs every child it has, reaps, and repeats until none is left (grandchildren
// are re-parented to it as their parents die); with a sandbox uid of its own it first
// becomes that uid and kills everything the uid runs (kill(-1)), which no detaching escapes.
// Then it writes the worker's wait status to the runtime and exits with it.
//
// The worker cannot signal it: another uid, Landlock's signal scoping (ABI >= 6), and the
// seccomp signal guard (which names its pid), whichever apply.
#pragma once

#include <sys/types.h>

namespace sandflow::sandbox::landlock {

// Called in the supervisor once the worker is forked, with every signal blocked.
// `sandbox_uid` < 0: the sandbox runs as the runtime's own uid.
[[noreturn]] void run_supervisor(pid_t worker, int status_fd, long sandbox_uid);

}  // namespace sandflow::sandbox::landlock
