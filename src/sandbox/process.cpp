#include "sandbox/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "sandbox/mechanisms/child_report.hpp"

namespace sandflow::sandbox {

UniqueFd& UniqueFd::operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
}

void UniqueFd::reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
}

std::string ExitStatus::describe() const {
    std::string s;
    if (WIFEXITED(raw)) {
        s = "exited with status " + std::to_string(WEXITSTATUS(raw));
    } else if (WIFSIGNALED(raw)) {
        const int sig = WTERMSIG(raw);
        const char* name = sigabbrev_np(sig);
        s = "killed by signal " + std::to_string(sig) +
            (name ? std::string(" (SIG") + name + ")" : "");
    } else {
        s = "ended with wait status " + std::to_string(raw);
    }
    if (!limit.empty())
        s += "; it crossed its " + limit + " limit (" + std::to_string(limit_value) + ")";
    return s;
}

bool ExitStatus::killed_by(int sig) const {
    return WIFSIGNALED(raw) && WTERMSIG(raw) == sig;
}

Process::~Process() {
    kill_and_wait();
}

void Process::kill() {
    if (status_) return;
    // The group first (grandchildren), then the leader in case it left the group.
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);
}

std::optional<ExitStatus> Process::try_wait() {
    if (status_) return status_;
    int st = 0;
    pid_t r;
    do {
        r = ::waitpid(pid_, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) reaped(st);
    return status_;
}

void Process::reaped(int raw) {
    ExitStatus s;
    s.raw = raw;
    on_exit(s);
    status_ = std::move(s);
}

ExitStatus Process::kill_and_wait() {
    if (status_) return *status_;
    kill();
    int st = 0;
    pid_t r;
    do {
        r = ::waitpid(pid_, &st, 0);
    } while (r < 0 && errno == EINTR);
    reaped(r == pid_ ? st : 0);
    return *status_;
}

namespace {

// Steps reported by a failing child; the parent names them in its error.
enum ChildStep : int { kStepDup = 1, kStepSetpgid, kStepPdeathsig, kStepChdir, kStepExec };

const char* step_name(int step) {
    switch (step) {
        case kStepDup:
            return "setting up descriptors";
        case kStepSetpgid:
            return "setpgid";
        case kStepPdeathsig:
            return "prctl(PR_SET_PDEATHSIG)";
        case kStepChdir:
            return "chdir to the working directory";
        case kStepExec:
            return "execve";
        default:
            return "child setup";
    }
}

void close_range_fds(unsigned first, unsigned last) {
    if (first > last) return;
#ifdef SYS_close_range
    if (::syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
    const long max = ::sysconf(_SC_OPEN_MAX);
    for (long fd = first; fd < max && fd <= static_cast<long>(last); ++fd)
        ::close(static_cast<int>(fd));
}

}  // namespace

Result<WorkerFds> WorkerFds::create() {
    WorkerFds f;
    int chan[2], out[2], err[2], report[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, chan) != 0)
        return tl::unexpected(system_error("socketpair for the worker channel", errno));
    f.chan_parent.reset(chan[0]);
    f.chan_child.reset(chan[1]);
    if (::pipe2(out, O_CLOEXEC) != 0) return tl::unexpected(system_error("pipe for stdout", errno));
    f.out_r.reset(out[0]);
    f.out_w.reset(out[1]);
    if (::pipe2(err, O_CLOEXEC) != 0) return tl::unexpected(system_error("pipe for stderr", errno));
    f.err_r.reset(err[0]);
    f.err_w.reset(err[1]);
    if (::pipe2(report, O_CLOEXEC) != 0)
        return tl::unexpected(system_error("pipe for child errors", errno));
    f.report_r.reset(report[0]);
    f.report_w.reset(report[1]);
    f.devnull.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!f.devnull) return tl::unexpected(system_error("open /dev/null", errno));
    return f;
}

void WorkerFds::close_child_ends() {
    chan_child.reset();
    out_w.reset();
    err_w.reset();
    report_w.reset();
    devnull.reset();
}

bool place_descriptors(const int* src, int count, int cloexec_from) {
    constexpr int kMax = 16;
    if (count > kMax) {
        errno = EINVAL;
        return false;
    }
    int high[kMax];
    for (int i = 0; i < count; ++i) {
        high[i] = ::fcntl(src[i], F_DUPFD_CLOEXEC, 10);
        if (high[i] < 0) return false;
    }
    for (int i = 0; i < count; ++i)
        if (::dup3(high[i], i, i >= cloexec_from ? O_CLOEXEC : 0) < 0) return false;
    close_range_fds(static_cast<unsigned>(count), ~0U);
    return true;
}

bool reset_signals() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
    sigset_t none;
    ::sigemptyset(&none);
    return ::sigprocmask(SIG_SETMASK, &none, nullptr) == 0;
}

namespace {

bool set_nonblock_cloexec(int fd) {
    const int fl = ::fcntl(fd, F_GETFL);
    return fl >= 0 && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0 &&
           ::fcntl(fd, F_SETFD, FD_CLOEXEC) == 0;
}

}  // namespace

Result<void> check_positive(const SandboxLimits& l) {
    const std::pair<const char*, std::uint64_t> values[] = {
        {"memory_bytes", l.memory_bytes}, {"pids", l.pids},
        {"cpu_milli", l.cpu_milli},       {"tmpfs_bytes", l.tmpfs_bytes},
        {"tmpfs_inodes", l.tmpfs_inodes}, {"open_files", l.open_files},
        {"cpu_seconds", l.cpu_seconds},   {"nproc", l.nproc}};
    for (const auto& [name, value] : values)
        if (value == 0)
            return fail(Errc::invalid_argument,
                        std::string("sandbox limit ") + name + " is 0; it must be positive",
                        {{"limit", name}});
    return {};
}

ExecReport wait_for_exec(int report_fd, int timeout_ms) {
    int msg[2] = {0, 0};
    std::size_t got = 0;
    for (;;) {
        pollfd p{report_fd, POLLIN, 0};
        const int r = ::poll(&p, 1, timeout_ms);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return {ExecReport::timed_out};
        const ssize_t n = ::read(report_fd, reinterpret_cast<char*>(msg) + got, sizeof msg - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += static_cast<std::size_t>(n);
        if (got == sizeof msg) return {ExecReport::failed, msg[0], msg[1]};
    }
    return {ExecReport::reached_exec};
}

bool wait_for_end(pid_t pid, int timeout_ms) {
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
    if (pidfd) {
        pollfd p{pidfd.get(), POLLIN, 0};
        int r;
        do {
            r = ::poll(&p, 1, timeout_ms);
        } while (r < 0 && errno == EINTR);
        return r == 1;
    }
    // No pidfd (Linux < 5.3, or a profile that refuses it): look every half millisecond.
    for (int waited_us = 0; waited_us <= timeout_ms * 1000; waited_us += 500) {
        siginfo_t info{};
        if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
            info.si_pid != 0)
            return true;
        ::usleep(500);
    }
    return false;
}

ExitStatus wait_or_kill(Process& proc, int timeout_ms, bool* killed) {
    if (auto s = proc.try_wait()) return *s;
    if (wait_for_end(proc.pid(), timeout_ms))
        if (auto s = proc.try_wait()) return *s;
    if (killed) *killed = true;
    return proc.kill_and_wait();
}

std::string read_available(int fd, std::size_t max) {
    std::string out;
    char buf[4096];
    while (fd >= 0 && out.size() < max) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

std::string tail_line(std::string text, std::size_t max) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
        text.pop_back();
    if (text.size() > max) text = "..." + text.substr(text.size() - max);
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::replace(text.begin(), text.end(), '\r', ' ');
    return text;
}

std::vector<char*> exec_array(const std::vector<std::string>& strings) {
    std::vector<char*> out;
    out.reserve(strings.size() + 1);
    for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

void read_worker_status(int status_fd, ExitStatus& s) {
    int worker = 0;
    ssize_t n;
    do {
        n = ::read(status_fd, &worker, sizeof worker);
    } while (n < 0 && errno == EINTR);
    if (n == static_cast<ssize_t>(sizeof worker)) s.raw = worker;
}

void name_rlimit_signal(ExitStatus& s, const SandboxLimits& limits) {
    if (s.killed_by(SIGXCPU)) {
        s.limit = "cpu_seconds";
        s.limit_value = limits.cpu_seconds;
    } else if (s.killed_by(SIGXFSZ)) {
        s.limit = "file_size";
        s.limit_value = limits.tmpfs_bytes;
    }
}

Result<void> set_worker_fds_nonblocking(const Process& proc) {
    for (int fd : {proc.channel_fd(), proc.stdout_fd(), proc.stderr_fd()}) {
        const int fl = ::fcntl(fd, F_GETFL);
        if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
            return tl::unexpected(system_error("fcntl on worker descriptors", errno));
    }
    return {};
}

Result<std::unique_ptr<Process>> spawn_process(const SpawnSpec& spec, const ChildSetup& setup) {
    if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
        return fail(Errc::internal, "spawn: argv[0] must be an absolute path");

    // Everything the child needs is built now: it must not allocate after fork.
    const std::vector<char*> argv = exec_array(spec.argv), envp = exec_array(spec.env);
    const char* workdir = spec.workdir.c_str();

    auto fds = WorkerFds::create();
    if (!fds) return tl::unexpected(fds.error());
    const pid_t parent = ::getpid();
    StartTimeline* const tl = spec.timeline;

    mark(tl, StartMark::clone);
    const pid_t pid = ::fork();
    if (pid < 0) return tl::unexpected(system_error("fork", errno));
    if (pid == 0) {
        // Child: async-signal-safe calls only. Descriptors 0..3 as the worker sees them,
        // the report pipe on 4 (close-on-exec), nothing else.
        mark(tl, StartMark::child_running);
        const int src[5] = {fds->devnull.get(), fds->out_w.get(), fds->err_w.get(),
                            fds->chan_child.get(), fds->report_w.get()};
        if (!place_descriptors(src, 5, kReportFdInChild))
            mech::report_and_exit(fds->report_w.get(), mech::failed_at(kStepDup));
        const int rep = kReportFdInChild;
        (void)reset_signals();
        if (setup.new_process_group && ::setpgid(0, 0) != 0)
            mech::report_and_exit(rep, mech::failed_at(kStepSetpgid));
        if (setup.die_with_parent) {
            if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
                mech::report_and_exit(rep, mech::failed_at(kStepPdeathsig));
            if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
        }
        if (::chdir(workdir) != 0) mech::report_and_exit(rep, mech::failed_at(kStepChdir));
        mark(tl, StartMark::execve);
        ::execve(argv[0], argv.data(), envp.data());
        mech::report_and_exit(rep, mech::failed_at(kStepExec));
    }

    fds->close_child_ends();
    auto proc = std::make_unique<Process>(pid, std::move(fds->chan_parent), std::move(fds->out_r),
                                          std::move(fds->err_r));

    int msg[2] = {0, 0};
    ssize_t n;
    do {
        n = ::read(fds->report_r.get(), msg, sizeof msg);
    } while (n < 0 && errno == EINTR);
    mark(tl, StartMark::exec_reported);
    if (n == static_cast<ssize_t>(sizeof msg)) {
        proc->kill_and_wait();
        Error e = system_error(std::string("starting ") + spec.argv[0] + ": " + step_name(msg[0]),
                               msg[1]);
        e.code = Errc::sandbox_unavailable;
        return tl::unexpected(std::move(e));
    }
    if (!set_nonblock_cloexec(proc->channel_fd()) || !set_nonblock_cloexec(proc->stdout_fd()) ||
        !set_nonblock_cloexec(proc->stderr_fd()))
        return tl::unexpected(system_error("fcntl on worker descriptors", errno));
    return proc;
}

}  // namespace sandflow::sandbox
