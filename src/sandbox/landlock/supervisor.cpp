#include "sandbox/landlock/supervisor.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace sandflow::sandbox::landlock {

namespace {

// Rounds of kill-and-reap before a sweep gives up: each round kills every child the
// supervisor has then; a chain of n processes needs n rounds, and a sandbox holds at most
// its pids limit (RLIMIT_NPROC behind it).
constexpr int kMaxSweepRounds = 100'000;

// Reads /proc/thread-self/children (the supervisor is single-threaded) and SIGKILLs each
// pid in it, without allocating. Returns how many it found.
int kill_children() {
    const int fd = ::open("/proc/thread-self/children", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[4096];
    int found = 0;
    long pid = 0;
    bool in_number = false;
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; ++i) {
            const char c = buf[i];
            if (c >= '0' && c <= '9') {
                pid = pid * 10 + (c - '0');
                in_number = true;
            } else if (in_number) {
                ::kill(static_cast<pid_t>(pid), SIGKILL);
                ++found;
                pid = 0;
                in_number = false;
            }
        }
    }
    if (in_number) {
        ::kill(static_cast<pid_t>(pid), SIGKILL);
        ++found;
    }
    ::close(fd);
    return found;
}

// Reaps every child that has ended; blocks for one when `block`. False: no child left.
bool reap(pid_t worker, int* worker_status, bool* worker_reaped, bool block) {
    for (bool first = true;; first = false) {
        int st = 0;
        const pid_t r = ::waitpid(-1, &st, __WALL | (block && first ? 0 : WNOHANG));
        if (r < 0) {
            if (errno == EINTR) continue;
            return false;  // ECHILD
        }
        if (r == 0) return true;
        if (r == worker && !*worker_reaped) {
            *worker_status = st;
            *worker_reaped = true;
        }
    }
}

// See supervisor.hpp. Returns the worker's wait status if the sweep reaped it, else
// `worker_status`.
int sweep_descendants(pid_t worker, int worker_status, bool* worker_reaped, long sandbox_uid) {
    if (sandbox_uid >= 0) {
        // As the sandbox's uid, kill(-1) reaches every process of it and nothing else. The
        // supervisor exits after the sweep, so giving up its own ids costs nothing.
        const auto id = static_cast<uid_t>(sandbox_uid);
        if (::syscall(SYS_setresgid, id, id, id) == 0 && ::syscall(SYS_setresuid, id, id, id) == 0)
            ::kill(-1, SIGKILL);
    }
    for (int round = 0; round < kMaxSweepRounds; ++round) {
        kill_children();
        if (!reap(worker, &worker_status, worker_reaped, true)) break;
    }
    return worker_status;
}

}  // namespace

void run_supervisor(pid_t worker, int status_fd, long sandbox_uid) {
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGCHLD);
    sigaddset(&wanted, SIGTERM);
    int worker_status = 0;
    bool worker_reaped = false;
    for (;;) {
        // SIGCHLD: reap what ended; the worker's end ends the sandbox. SIGTERM: the runtime
        // asks for the end, or died.
        const int sig = ::sigwaitinfo(&wanted, nullptr);
        if (sig < 0 && errno == EINTR) continue;
        if (sig == SIGCHLD) {
            reap(worker, &worker_status, &worker_reaped, false);
            if (!worker_reaped) continue;
        }
        break;
    }
    worker_status = sweep_descendants(worker, worker_status, &worker_reaped, sandbox_uid);
    if (!worker_reaped) worker_status = SIGKILL;  // as if killed: it is gone, unseen
    [[maybe_unused]] ssize_t n = ::write(status_fd, &worker_status, sizeof worker_status);
    if (WIFEXITED(worker_status)) ::_exit(WEXITSTATUS(worker_status));
    ::_exit(128 + (WIFSIGNALED(worker_status) ? WTERMSIG(worker_status) : 0));
}

}  // namespace sandflow::sandbox::landlock
