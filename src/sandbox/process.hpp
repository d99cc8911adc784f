// Starting and owning one worker process: its channel, its captured stdout/stderr, and
// its death. Backends build on spawn_process(); everything the child does between fork
// and execve is async-signal-safe (no allocation, no exceptions, no logging): failures
// travel back to the parent through a close-on-exec pipe as {step, errno}.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "sandbox/sandbox_limits.hpp"
#include "sandbox/start_timeline.hpp"

namespace sandflow::sandbox {

// An owned file descriptor.
class UniqueFd {
  public:
    UniqueFd() = default;
    explicit UniqueFd(int fd) : fd_(fd) {}
    UniqueFd(UniqueFd&& o) noexcept : fd_(o.release()) {}
    UniqueFd& operator=(UniqueFd&& o) noexcept;
    UniqueFd(const UniqueFd&) = delete;
    UniqueFd& operator=(const UniqueFd&) = delete;
    ~UniqueFd() { reset(); }
    int get() const { return fd_; }
    int release() {
        int f = fd_;
        fd_ = -1;
        return f;
    }
    void reset(int fd = -1);
    explicit operator bool() const { return fd_ >= 0; }

  private:
    int fd_ = -1;
};

// How a process ended, in words: "exited with status 1", "killed by signal 9 (SIGKILL)".
struct ExitStatus {
    int raw = 0;  // as from waitpid
    // Set by a backend that knows the process died because it crossed a named limit
    // ("memory", "pids", "cpu_seconds", "file_size"), with the limit's value.
    std::string limit;
    std::uint64_t limit_value = 0;
    // "killed by signal 9 (SIGKILL)", plus "; it crossed its memory limit (268435456)".
    std::string describe() const;
    bool killed_by(int sig) const;
};

// The child side is given the channel on this descriptor number.
inline constexpr int kChannelFd = 3;

struct SpawnSpec {
    std::vector<std::string> argv;  // argv[0]: absolute path of the program
    std::vector<std::string> env;   // "NAME=value"; nothing is inherited
    std::string workdir = "/";
    StartTimeline* timeline = nullptr;  // marks the start's steps when set
};

// A running worker. Destroying it kills the whole process group and reaps it.
class Process {
  public:
    Process(pid_t pid, UniqueFd channel, UniqueFd out, UniqueFd err)
        : pid_(pid), channel_(std::move(channel)), out_(std::move(out)), err_(std::move(err)) {}
    virtual ~Process();
    Process(const Process&) = delete;
    Process& operator=(const Process&) = delete;

    pid_t pid() const { return pid_; }
    int channel_fd() const { return channel_.get(); }  // non-blocking, close-on-exec
    int stdout_fd() const { return out_.get(); }       // non-blocking, -1 once closed
    int stderr_fd() const { return err_.get(); }
    void close_stdout() { out_.reset(); }
    void close_stderr() { err_.reset(); }

    // SIGKILL to everything the worker started (idempotent).
    virtual void kill();
    // Reaps without blocking; the status once the process has ended.
    std::optional<ExitStatus> try_wait();
    // Kills if needed and reaps; returns how it ended.
    ExitStatus kill_and_wait();

    // The limits this sandbox enforces now; nullptr when it enforces none (`none`).
    virtual const SandboxLimits* limits() const { return nullptr; }
    // Changes the running sandbox's limits where that can be done live (its cgroup's
    // memory, pids and cpu). True: the sandbox now enforces `limits` as a new one started
    // with them would. False: some limit can only change with a new sandbox (the tmpfs
    // size, an rlimit, a host without that cgroup controller); nothing was changed and the
    // caller starts a new sandbox with them. A backend that enforces nothing returns true.
    virtual Result<bool> update_limits(const SandboxLimits& limits) {
        (void)limits;
        return true;
    }
    // A descriptor that polls readable once the sandbox crossed a limit that it survived
    // (a refused fork at the pids limit, an OOM kill of a process other than the worker);
    // -1 when the backend cannot tell. limit_crossed() then names the limit.
    virtual int limit_event_fd() const { return -1; }
    struct LimitHit {
        std::string limit;  // "pids", "memory"
        std::uint64_t value = 0;
    };
    virtual std::optional<LimitHit> limit_crossed() { return std::nullopt; }

  protected:
    // Called once, when the process has been reaped, before the status is returned: a
    // backend whose process is a stand-in (an init, a supervisor) replaces the status
    // with the worker's own and names the limit that killed it. A subclass that overrides
    // this must call kill_and_wait() in its own destructor.
    virtual void on_exit(ExitStatus& status) { (void)status; }

  private:
    void reaped(int raw);

    pid_t pid_;
    UniqueFd channel_, out_, err_;
    std::optional<ExitStatus> status_;
};

// Options the child applies to itself before execve, in this order.
struct ChildSetup {
    bool new_process_group = true;  // so kill() reaches grandchildren
    bool die_with_parent = true;    // PR_SET_PDEATHSIG(SIGKILL)
};

// The descriptors every worker starts with, made by the parent before it forks: the
// channel (a socketpair), stdout and stderr pipes, a close-on-exec pipe for the child's
// {step, errno} report, and /dev/null for stdin. All close-on-exec in the parent.
struct WorkerFds {
    UniqueFd chan_parent, chan_child, out_r, out_w, err_r, err_w, report_r, report_w, devnull;
    static Result<WorkerFds> create();
    // In the parent, once the child exists: its ends go (the report pipe's read end then
    // sees EOF when the child's copy closes at execve).
    void close_child_ends();
};

// The descriptor number of the child's report pipe after place_descriptors() with
// WorkerFds' order {devnull, out_w, err_w, chan_child, report_w}.
inline constexpr int kReportFdInChild = kChannelFd + 1;

// Child side, async-signal-safe (no allocation): puts src[i] on descriptor i for every
// i < count (close-on-exec from `cloexec_from` on) and closes every other descriptor. The
// sources are first copied above the targets, so that no dup clobbers a source sitting on
// a low number (a parent started with closed standard descriptors). False, with errno,
// when a dup fails.
bool place_descriptors(const int* src, int count, int cloexec_from);

// Child side, async-signal-safe: every signal to its default action and an empty mask; a
// runtime's ignored and blocked signals (a server ignores SIGPIPE, blocks SIGTERM) would
// survive execve. False, with errno, when the mask cannot be set.
bool reset_signals();

// How long a backend waits for its sandbox to reach execve: set-up takes a few milliseconds
// (runsc's start well under a second); this only stops a wedged kernel call or helper from
// hanging the caller.
inline constexpr int kExecTimeoutMs = 10'000;

// Parent side: what a child's report pipe (the read end, the child's copy close-on-exec)
// says within `timeout_ms`: EOF, the child reached execve; two ints, {step, errno} of the
// step that failed; nothing, it is wedged.
struct ExecReport {
    enum Kind { reached_exec, failed, timed_out } kind = reached_exec;
    int step = 0, err = 0;
};
ExecReport wait_for_exec(int report_fd, int timeout_ms);

// True once `pid`, a child of this process, has ended (it is not reaped), within
// `timeout_ms`: woken by the kernel the moment it does (a pidfd; where the kernel or a
// profile refuses pidfds, a look every half millisecond).
bool wait_for_end(pid_t pid, int timeout_ms);

// Waits up to `timeout_ms` for `proc` to end (wait_for_end), then kills it if it still runs
// (and says so in `*killed`); returns how it ended.
ExitStatus wait_or_kill(Process& proc, int timeout_ms, bool* killed = nullptr);

// Up to `max` bytes of what `fd` (non-blocking) holds now: a sandbox's diagnostics.
std::string read_available(int fd, std::size_t max);
// The last lines of `text` that fit in `max` bytes, on one line (CR and LF as spaces), for
// an error message.
std::string tail_line(std::string text, std::size_t max);

// A null-terminated array of pointers into `strings` (which must outlive it) for execve's
// argv or envp: built by the parent before it forks, since the child must not allocate.
std::vector<char*> exec_array(const std::vector<std::string>& strings);

// For a Process whose process is a stand-in for the worker (an init, a supervisor), in its
// on_exit(): the worker's wait status, one int the stand-in wrote to `status_fd` before it
// ended, replaces `s.raw`. Without it (the stand-in itself was killed) `s` stays the
// stand-in's own status, which is then the truth.
void read_worker_status(int status_fd, ExitStatus& s);
// Names on `s` the rlimit whose signal killed the worker, with its value from `limits`:
// SIGXCPU cpu_seconds, SIGXFSZ file_size (the tmpfs's size); any other end leaves `s` as it is.
void name_rlimit_signal(ExitStatus& s, const SandboxLimits& limits);

// The parent's ends of a started worker's channel, stdout and stderr, made non-blocking.
Result<void> set_worker_fds_nonblocking(const Process& proc);

// fork + execve with the channel on kChannelFd, stdin on /dev/null, stdout and stderr on
// pipes, every other descriptor closed.
Result<std::unique_ptr<Process>> spawn_process(const SpawnSpec& spec, const ChildSetup& setup);

}  // namespace sandflow::sandbox
