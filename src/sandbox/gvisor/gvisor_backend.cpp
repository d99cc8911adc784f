#include "sandbox/gvisor/gvisor_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "core/log.hpp"
#include "sandbox/helper_start.hpp"
#include "sandbox/mechanisms/child_report.hpp"
#include "sandbox/mechanisms/control_file.hpp"
#include "sandbox/trial_run.hpp"

namespace sandflow::sandbox {

namespace fs = std::filesystem;
using namespace gvisor;

class GvisorFolder {
  public:
    explicit GvisorFolder(std::string path) : path_(std::move(path)) {}
    ~GvisorFolder() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    GvisorFolder(const GvisorFolder&) = delete;
    GvisorFolder& operator=(const GvisorFolder&) = delete;
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

namespace {

// How long probe() lets its test sandbox run: gVisor starts in ~0.3 s on an idle 2-vCPU VM.
constexpr std::chrono::seconds kProbeTimeout{30};
// runsc exits with the worker's exit status, or 128 + N when a signal N killed it (as shells
// report it); 128 itself is runsc's own failure, which it explains on stderr.
constexpr int kRunscFailed = 128;
// What probe() quotes of runsc's stderr.
constexpr std::size_t kProbeStderrBytes = 600;

// Descriptors in the child: 0-2 as runsc hands them to the worker, then the report pipe
// ({step, errno} on failure) and the release pipe, both close-on-exec.
constexpr int kReportFd = 3;
constexpr int kSyncFd = 4;

struct ChildContext {
    char* const* argv;
    char* const* envp;
    pid_t parent;
    int src_fds[5];  // channel, stdout, stderr, report, release (the parent's numbers)
};

[[noreturn]] void run_child(const ChildContext& c) {
    // Its own group reaches runsc and its gofer (the sandbox makes a session of its own and
    // goes by its death signal).
    enter_helper_child(c.src_fds, 5, kReportFd, c.parent);
    // The parent moves us into the sandbox's cgroups, then writes one byte. EOF: it gave up.
    char go = 0;
    ssize_t n;
    do {
        n = ::read(kSyncFd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);
    if (::chdir("/") != 0) mech::report_and_exit(kReportFd, mech::failed_at(kHelperChdir));
    ::execve(c.argv[0], c.argv, c.envp);
    mech::report_and_exit(kReportFd, mech::failed_at(kHelperExec));
}

Error unavailable(std::string message) {
    return Error(Errc::sandbox_unavailable, std::move(message), {{"backend", "gvisor"}});
}

// What the host's cgroups get for a sandbox with `l`: they hold runsc, its gofer and gVisor's
// kernel as well as the worker (see kRunscMemoryHeadroom, kRunscBaseTasks).
SandboxLimits host_limits(const SandboxLimits& l) {
    SandboxLimits h = l;
    h.memory_bytes = l.memory_bytes + kRunscMemoryHeadroom;
    h.pids = kRunscBaseTasks + kHostTasksPerWorkerTask * l.pids;
    return h;
}

// The sandbox's own cpu group ("" without one): SandboxCgroup makes it at <base>/<id>.
std::string cpu_group(const mech::CgroupSupport& support, const std::string& id) {
    for (const auto& c : support.controllers)
        if (c.name == "cpu" && c.usable()) return c.base + "/" + id;
    return {};
}

// Lets the sandbox run above its CPU share for a while on quota it left unused before, its
// average staying at the share (cpu.cfs_burst_us, Linux >= 5.14; the kernel allows at most
// one period's quota, which is what it gets). gVisor's own start (runsc, gofer and sentry
// booting on both cores) took ~190 ms longer capped at one CPU without it: ~590 ms against
// ~390 ms to the worker's hello here. Without the file (older kernels) nothing changes.
void allow_cpu_burst(const std::string& group) {
    if (group.empty()) return;
    std::ifstream in(group + "/cpu.cfs_quota_us");
    long long quota = -1;
    if (!(in >> quota) || quota <= 0) return;
    (void)mech::write_control_file(group + "/cpu.cfs_burst_us", std::to_string(quota));
}

// A folder removed when its owner goes.
class OwnedFolder {
  public:
    OwnedFolder() = default;
    explicit OwnedFolder(std::string path) : path_(std::move(path)) {}
    OwnedFolder(OwnedFolder&& o) noexcept : path_(std::exchange(o.path_, {})) {}
    OwnedFolder& operator=(OwnedFolder&&) = delete;
    ~OwnedFolder() { remove(); }
    void remove() {
        if (path_.empty()) return;
        std::error_code ec;
        fs::remove_all(path_, ec);
        path_.clear();
    }
    const std::string& path() const { return path_; }

  private:
    std::string path_;
};

// The runsc process of one sandbox. Its exit status is the worker's (decoded from runsc's
// convention); killing it ends the whole sandbox (the death signal runsc gave its gofer and
// sandbox); its folder and cgroups go with it.
class GvisorProcess final : public Process {
  public:
    GvisorProcess(pid_t pid, UniqueFd channel, UniqueFd out, UniqueFd err,
                  mech::SandboxCgroup cgroup, std::string cpu_group, const SandboxLimits& limits,
                  OwnedFolder folder, std::shared_ptr<GvisorFolder> backend_folder)
        : Process(pid, std::move(channel), std::move(out), std::move(err)),
          cgroup_(std::move(cgroup)),
          cpu_group_(std::move(cpu_group)),
          limits_(limits),
          folder_(std::move(folder)),
          backend_folder_(std::move(backend_folder)) {}
    ~GvisorProcess() override {
        kill_and_wait();
        // Waits (up to ~0.5 s) until the sandbox and gofer, killed by their death signal
        // when runsc went, have left the groups.
        cgroup_.remove();
        folder_.remove();
    }

    const SandboxLimits* limits() const override { return &limits_; }
    void watch_limits() { cgroup_.watch(); }

    // Memory and CPU are the host cgroups' and change live; the rest is fixed inside gVisor's
    // kernel (rlimits, the pids limit among them) or mounted (the tmpfs).
    Result<bool> update_limits(const SandboxLimits& to) override {
        if (to == limits_) return true;
        if (auto ok = check_positive(to); !ok) return tl::unexpected(ok.error());
        if (!to.same_fixed(limits_) || to.pids != limits_.pids) return false;
        // The kernel refuses a quota below the burst: none while the quota changes.
        if (!cpu_group_.empty())
            (void)mech::write_control_file(cpu_group_ + "/cpu.cfs_burst_us", "0");
        auto r = cgroup_.update(host_limits(to));
        allow_cpu_burst(cpu_group_);
        if (!r || !*r) return r;
        limits_ = to;
        return true;
    }

    int limit_event_fd() const override { return cgroup_.event_fd(); }

    std::optional<LimitHit> limit_crossed() override {
        auto v = cgroup_.crossed();
        if (!v) return std::nullopt;
        return LimitHit{v->limit, worker_value(v->limit)};
    }

  protected:
    void on_exit(ExitStatus& s) override {
        if (WIFEXITED(s.raw)) {
            const int code = WEXITSTATUS(s.raw);
            // As the wait status of a process killed by that signal.
            if (code > kRunscFailed && code - kRunscFailed < NSIG) s.raw = code - kRunscFailed;
        }
        const mech::CgroupVerdict v = cgroup_.verdict();
        if (!v.limit.empty()) {
            s.limit = v.limit;
            s.limit_value = worker_value(v.limit);
        } else {
            name_rlimit_signal(s, limits_);
        }
    }

  private:
    // A limit the host's groups crossed, as the sandbox was asked for it (host_limits()).
    std::uint64_t worker_value(const std::string& limit) const {
        if (limit == "memory") return limits_.memory_bytes;
        if (limit == "pids") return limits_.pids;
        return 0;
    }

    mech::SandboxCgroup cgroup_;
    std::string cpu_group_;  // its cpu group's folder, "" without one
    SandboxLimits limits_;
    OwnedFolder folder_;
    std::shared_ptr<GvisorFolder> backend_folder_;  // the shared root the sandbox runs on
};

// A name for a backend's folder or a sandbox (its folder, runsc's container id, its
// cgroups), unique on this host: "<runtime pid>-<random>-<counter>". The pid is read at
// each call, so that a runtime forked from another names its own (remove_stale_folders()
// and mech::remove_stale_groups() go by it).
std::string new_id() {
    static std::atomic<std::uint64_t> counter{0};
    std::uint32_t token = 0;
    if (::getrandom(&token, sizeof token, 0) != static_cast<ssize_t>(sizeof token))
        token =
            static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08x", token);
    return std::to_string(::getpid()) + "-" + hex + "-" + std::to_string(++counter);
}

std::string default_state_dir() {
    if (::geteuid() == 0) return std::string(kRootStateDir);
    if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg == '/')
        return std::string(xdg) + "/sandflow/gvisor";
    return "/tmp/sandflow-gvisor-" + std::to_string(::geteuid());
}

// Creates the state folder (and its parents), and checks that it is a folder of this user's
// that no one else may write into: its sandboxes' bundles and runsc's state live there.
Result<void> prepare_state_dir(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(fs::path(dir).parent_path(), ec);
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
        return tl::unexpected(system_error("create the gvisor state folder " + dir, errno));
    struct stat st {};
    if (::lstat(dir.c_str(), &st) != 0)
        return tl::unexpected(system_error("stat the gvisor state folder " + dir, errno));
    if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() || (st.st_mode & 022) != 0)
        return fail(Errc::sandbox_unavailable,
                    "the gvisor state folder " + dir +
                        " is not a folder of this user's that only it can write; remove it, or "
                        "choose another (GvisorOptions::state_dir)",
                    {{"backend", "gvisor"}, {"path", dir}});
    return {};
}

// Removes the folders of backends whose runtime is gone (a runtime killed with SIGKILL
// cannot remove its own; its runsc processes died with it, by their death signal). A
// folder is named "<runtime pid>-..."; one whose pid runs again is kept until that ends.
std::size_t remove_stale_folders(const std::string& dir) {
    std::size_t removed = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        const auto dash = name.find('-');
        if (dash == std::string::npos || dash == 0) continue;
        const long pid = std::strtol(name.substr(0, dash).c_str(), nullptr, 10);
        if (pid <= 0 || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
        std::error_code rm;
        if (fs::remove_all(entry.path(), rm) > 0 && !rm) ++removed;
    }
    return removed;
}

}  // namespace

const std::string& GvisorBackend::folder() const {
    return folder_->path();
}

Result<std::unique_ptr<GvisorBackend>> GvisorBackend::create(GvisorOptions options) {
    if (std::find(kPlatforms.begin(), kPlatforms.end(), options.platform) == kPlatforms.end())
        return fail(Errc::invalid_argument,
                    "unknown gVisor platform '" + options.platform +
                        "'; known: ptrace, systrap, kvm (`runsc help platforms` lists the ones "
                        "this host's runsc has)",
                    {{"backend", "gvisor"}, {"platform", options.platform}});
    if (auto ok = check_positive(options.limits); !ok) return tl::unexpected(ok.error());
    if (::access(options.runsc.c_str(), X_OK) != 0)
        return tl::unexpected(unavailable(
            "gVisor's runsc is not installed at " + options.runsc + " (" + std::strerror(errno) +
            "): install it (Debian 12: `apt-get install runsc`), or choose another backend"));
    if (!options.init.starts_with("/usr/") || ::access(options.init.c_str(), X_OK) != 0)
        return tl::unexpected(unavailable(
            "the gvisor sandbox's init, " + options.init +
            ", is not an executable under /usr (the only host folder the sandbox sees): install "
            "it (Debian 12: `apt-get install tini`), or choose another backend"));
    std::unique_ptr<GvisorBackend> b(new GvisorBackend(std::move(options)));
    // runsc needs root for its namespaces and chroots; an ordinary user's runsc must make a
    // user namespace of its own to get them (--rootless), where the host allows that.
    b->rootless_ = ::geteuid() != 0;
    if (b->options_.state_dir.empty()) b->options_.state_dir = default_state_dir();
    if (auto ok = prepare_state_dir(b->options_.state_dir); !ok) return tl::unexpected(ok.error());
    if (const auto n = remove_stale_folders(b->options_.state_dir))
        spdlog::info("removed {} gvisor folder(s) left behind by runtimes that are gone", n);
    if (b->options_.use_cgroups) b->cgroups_ = mech::backend_cgroups();

    const std::string path = b->options_.state_dir + "/" + new_id();
    if (::mkdir(path.c_str(), 0700) != 0)
        return tl::unexpected(system_error("create the gvisor backend's folder " + path, errno));
    b->folder_ = std::make_shared<GvisorFolder>(path);
    std::error_code ec;
    fs::create_directory(path + "/sandboxes", ec);
    if (ec) return tl::unexpected(system_error("create " + path + "/sandboxes", ec.value()));
    b->layout_ = read_root_layout();
    if (auto ok = write_root(path + "/root", b->layout_); !ok) return tl::unexpected(ok.error());
    b->env_ = clean_worker_env();
    return b;
}

Result<std::unique_ptr<Process>> GvisorBackend::spawn(const WorkerSpec& spec) {
    auto checked = check_tmp_worker(spec, options_.limits, "the gvisor sandbox's");
    if (!checked) return tl::unexpected(checked.error());
    const SandboxLimits& limits = **checked;

    // The sandbox's folder: its bundle (config.json) and runsc's state.
    const std::string id = new_id();
    const std::string dir = folder_->path() + "/sandboxes/" + id;
    if (::mkdir(dir.c_str(), 0700) != 0)
        return tl::unexpected(system_error("create the gvisor sandbox's folder " + dir, errno));
    OwnedFolder owned(dir);
    gvisor::BundleSpec bundle;
    bundle.argv = {options_.init, "--"};
    bundle.init_tasks = 1;
    bundle.argv.insert(bundle.argv.end(), spec.argv.begin(), spec.argv.end());
    bundle.env = env_;
    bundle.workdir = spec.workdir;
    bundle.root = folder_->path() + "/root";
    bundle.limits = limits;
    bundle.shared = spec.shared;
    {
        std::ofstream out(dir + "/config.json", std::ios::binary);
        out << oci_config(bundle, layout_);
        out.close();
        if (!out) return tl::unexpected(system_error("write " + dir + "/config.json", EIO));
    }

    // Everything the child needs is built now: it must not allocate after fork().
    std::vector<std::string> args = {options_.runsc, "--root=" + dir + "/state", "--network=none",
                                     "--platform=" + options_.platform,
                                     // The sandbox's cgroups are Sandflow's own (below).
                                     "--ignore-cgroups",
                                     // linux.seccomp of config.json, applied inside gVisor.
                                     "--oci-seccomp"};
    if (rootless_) args.push_back("--rootless");
    for (const char* a : {"run", "--bundle"}) args.emplace_back(a);
    args.push_back(dir);
    args.push_back(id);
    const std::vector<std::string> runsc_env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    const std::vector<char*> argv = exec_array(args), envp = exec_array(runsc_env);

    auto cgroup = mech::SandboxCgroup::create(cgroups_, id, host_limits(limits));
    if (!cgroup) return tl::unexpected(cgroup.error());
    const std::string cpu = cpu_group(cgroups_, id);
    allow_cpu_burst(cpu);
    auto fds = WorkerFds::create();
    if (!fds) return tl::unexpected(fds.error());
    int sync[2];
    if (::pipe2(sync, O_CLOEXEC) != 0)
        return tl::unexpected(system_error("pipe for the start signal", errno));
    UniqueFd sync_r(sync[0]), sync_w(sync[1]);

    const ChildContext ctx{argv.data(),
                           envp.data(),
                           ::getpid(),
                           {fds->chan_child.get(), fds->out_w.get(), fds->err_w.get(),
                            fds->report_w.get(), sync_r.get()}};
    const pid_t pid = ::fork();
    if (pid < 0) return tl::unexpected(system_error("fork", errno));
    if (pid == 0) run_child(ctx);

    fds->close_child_ends();
    sync_r.reset();
    // The child's cgroups are written before runsc runs, so everything it starts is inside.
    auto attached = cgroup->attach(pid);
    auto proc = std::make_unique<GvisorProcess>(
        pid, std::move(fds->chan_parent), std::move(fds->out_r), std::move(fds->err_r),
        std::move(*cgroup), cpu, limits, std::move(owned), folder_);
    if (!attached) {
        proc->kill_and_wait();
        return tl::unexpected(
            unavailable("the gvisor sandbox cannot start: moving runsc into its cgroups failed: " +
                        attached.error().message));
    }
    const char go = 1;
    if (::write(sync_w.get(), &go, 1) != 1) {
        const int e = errno;
        proc->kill_and_wait();
        return tl::unexpected(system_error("releasing the gvisor sandbox's runsc", e));
    }
    sync_w.reset();
    proc->watch_limits();

    if (auto ok = await_helper_start(*proc, fds->report_r.get(),
                                     {"gvisor", "runsc", options_.runsc, "the gvisor sandbox"});
        !ok)
        return tl::unexpected(ok.error());
    return std::unique_ptr<Process>(std::move(proc));
}

Result<void> GvisorBackend::probe() {
    static const Result<void> result = [] {
        auto backend = create();
        return trial_run(
            backend, static_cast<int>(kProbeTimeout / std::chrono::milliseconds(1)),
            [&](const TrialEnd& end) {
                if (end.killed)
                    return unavailable(
                        "a test gvisor sandbox running /usr/bin/true did not end "
                        "within " +
                        std::to_string(kProbeTimeout.count()) + " s; it was killed");
                const std::string said =
                    tail_line(read_available(end.process.stderr_fd(), kProbeStderrBytes * 4),
                              kProbeStderrBytes);
                const std::string hint =
                    ::geteuid() != 0 ? "runsc runs as root, or with --rootless (which Sandflow "
                                       "uses for an ordinary user) where the host lets it make "
                                       "user namespaces: run the runtime as root"
                                     : "`runsc --network=none do /usr/bin/true` shows gVisor's "
                                       "own diagnosis; the platform (--gvisor-platform, now " +
                                           (*backend)->options().platform +
                                           ") must be one this host's runsc runs";
                return unavailable(
                    "a test gvisor sandbox running /usr/bin/true " + end.status.describe() +
                    (said.empty() ? "" : " (runsc said: " + said + ")") + "; " + hint);
            });
    }();
    return result;
}

}  // namespace sandflow::sandbox
