#include "sandbox/namespace/pid_init.hpp"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace sandflow::sandbox::ns {

void run_init(pid_t worker, int status_fd) {
    int worker_status = 0;
    for (;;) {
        int st = 0;
        const pid_t r = ::waitpid(-1, &st, __WALL);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;  // ECHILD: the worker is gone without being seen (cannot happen)
        }
        if (r == worker) {
            worker_status = st;
            break;
        }
    }
    // The status first: the parent may be about to kill us, having seen the channel close.
    [[maybe_unused]] ssize_t n = ::write(status_fd, &worker_status, sizeof worker_status);
    // From a pid namespace's init, kill(-1) reaches every other process in the namespace.
    ::kill(-1, SIGKILL);
    while (::waitpid(-1, nullptr, __WALL) > 0 || errno == EINTR) {
    }
    if (WIFEXITED(worker_status)) ::_exit(WEXITSTATUS(worker_status));
    ::_exit(128 + (WIFSIGNALED(worker_status) ? WTERMSIG(worker_status) : 0));
}

}  // namespace sandflow::sandbox::ns
