#include "sandbox/landlock/landlock_backend.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>

#include "core/log.hpp"
#include "sandbox/landlock/supervisor.hpp"
#include "sandbox/landlock/work_dir.hpp"
#include "sandbox/mechanisms/capabilities.hpp"
#include "sandbox/mechanisms/child_report.hpp"
#include "sandbox/mechanisms/worker_exec.hpp"
#include "sandbox/start_report.hpp"
#include "sandbox/trial_run.hpp"

namespace sandflow::sandbox {

using namespace mech;
using namespace landlock;

namespace {

// How long kill() waits for the supervisor's sweep (it needs microseconds; a fork bomb at
// its pids limit a few milliseconds) before it kills the supervisor itself.
constexpr int kSweepGraceMs = 2'000;

// Descriptor numbers in the supervisor and the worker: 0-3 stdin, stdout, stderr, channel.
constexpr int kReportFd = kReportFdInChild;  // {step, errno} on failure; close-on-exec
constexpr int kStatusFd = 5;                 // the supervisor writes the worker's status here

}  // namespace

// What the sandbox's paths are: read and execute the interpreters and their libraries
// (merged /usr: /bin and /lib are links into it; on other hosts they are folders of their
// own); read the two files of /etc the loader and OpenSSL insist on; the five harmless
// devices; everything but execute in its own work folder; its own /proc/<pid>; read its
// package folders (native extension modules are mapped, never executed).
std::vector<LandlockRule> landlock_rules(const std::string& work_dir,
                                         const std::vector<SharedDir>& shared) {
    std::vector<LandlockRule> rules = {{"/usr", LandlockAccess::read_exec},
                                       {"/bin", LandlockAccess::read_exec},
                                       {"/lib", LandlockAccess::read_exec},
                                       {"/lib64", LandlockAccess::read_exec},
                                       {"/etc/ld.so.cache", LandlockAccess::read_file},
                                       {"/etc/ssl/openssl.cnf", LandlockAccess::read_file},
                                       {"/dev/null", LandlockAccess::device},
                                       {"/dev/zero", LandlockAccess::device},
                                       {"/dev/full", LandlockAccess::device},
                                       {"/dev/random", LandlockAccess::device},
                                       {"/dev/urandom", LandlockAccess::device},
                                       {work_dir, LandlockAccess::read_write}};
    for (const auto& d : shared) rules.push_back({d.host, LandlockAccess::read});
    return rules;
}

namespace {

// Everything the child reads, prepared by the parent: pointers into the parent's memory,
// which the child sees as its copy-on-write image.
struct ChildContext {
    const RlimitPlan* rlimits;
    const LandlockPlan* landlock;
    const SeccompProgram* seccomp;
    const LandlockOptions::Layers* layers;
    const RuntimeImage* image;
    UserSwitch user;
    bool holds_setpcap;
    int last_cap;
    long sandbox_uid;  // -1: the runtime's own
    pid_t runtime;
    const char* workdir;
    char* const* argv;
    char* const* envp;
    StartTimeline* timeline;  // null unless the start is being timed
    const CgroupEntry* cgroups;
    int src_fds[6];  // devnull, out, err, channel, report, status (parent's numbers)
};

[[noreturn]] void run_worker(const ChildContext& c, pid_t supervisor) {
    mark(c.timeline, StartMark::worker_forked);
    ::close(kStatusFd);
    if (!reset_signals()) report_and_exit(kReportFd, failed_at(kStepSignals));
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        report_and_exit(kReportFd, failed_at(kStepDeathSignal));
    if (::getppid() != supervisor) ::_exit(127);  // the supervisor is already gone
    if (::setsid() < 0) report_and_exit(kReportFd, failed_at(kStepSetsid));
    if (auto f = drop_privileges(c.last_cap, c.holds_setpcap, c.user))
        report_and_exit(kReportFd, f);
    mark(c.timeline, StartMark::ids_dropped);
    if (auto f = apply_rlimits(*c.rlimits)) report_and_exit(kReportFd, f);
    if (::chdir(c.workdir) != 0) report_and_exit(kReportFd, failed_at(kStepChdir));
    if (auto f = set_no_new_privs()) report_and_exit(kReportFd, f);
    mark(c.timeline, StartMark::rlimits_set);
    // The signal guard protects the supervisor and the runtime from the worker.
    confine_and_exec(
        {c.layers->landlock ? c.landlock : nullptr, c.layers->seccomp ? c.seccomp : nullptr,
         supervisor, c.runtime, c.argv, c.envp, c.timeline},
        kReportFd);
}

[[noreturn]] void run_child(const ChildContext& c) {
    mark(c.timeline, StartMark::child_running);
    // Into its groups first, through the parent's descriptors (placing ours closes them).
    if (auto f = enter_cgroups(*c.cgroups)) report_and_exit(c.src_fds[4], f);
    mark(c.timeline, StartMark::cgroups_entered);
    // Descriptors 0..3 as the worker sees them; the report and status pipes above,
    // close-on-exec; nothing else.
    if (!place_descriptors(c.src_fds, 6, kReportFd)) ::_exit(127);  // no report pipe yet
    // Signals wait for sigwaitinfo() from here on; SIGCHLD must not be ignored (a runtime may
    // ignore it) or children would vanish unreaped.
    sigset_t all;
    sigfillset(&all);
    if (::sigprocmask(SIG_SETMASK, &all, nullptr) != 0)
        report_and_exit(kReportFd, failed_at(kStepSignalMask));
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    ::sigaction(SIGCHLD, &dfl, nullptr);
    // The runtime's death reaches the supervisor as SIGTERM: it sweeps, then exits.
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0)
        report_and_exit(kReportFd, failed_at(kStepDeathSignal));
    // No word from the parent is awaited: the child enters its cgroups itself, and a parent
    // that gives up after clone() kills it (the death signal covers one that dies).
    if (::getppid() != c.runtime) ::_exit(127);
    if (::setsid() < 0) report_and_exit(kReportFd, failed_at(kStepSetsid));
    hide_runtime_memory(*c.image);
    if (::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        report_and_exit(kReportFd, failed_at(kStepSubreaper));

    const auto self = static_cast<pid_t>(::syscall(SYS_getpid));
    // A raw clone, not fork(): glibc's fork runs atfork handlers and takes locks that a
    // thread of the runtime may have held at the moment of our clone().
    const long worker = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (worker < 0) report_and_exit(kReportFd, failed_at(kStepForkWorker));
    if (worker == 0) run_worker(c, self);
    for (int fd = 0; fd <= kReportFd; ++fd) ::close(fd);
    run_supervisor(static_cast<pid_t>(worker), kStatusFd, c.sandbox_uid);
}

Error unavailable(std::string message) {
    return Error(Errc::sandbox_unavailable, std::move(message), {{"backend", "landlock"}});
}

// Tasks (threads included: RLIMIT_NPROC counts them) that `uid` runs now.
std::uint32_t tasks_of(uid_t uid) {
    std::uint32_t total = 0;
    DIR* proc = ::opendir("/proc");
    if (!proc) return 0;
    while (const dirent* e = ::readdir(proc)) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        std::ifstream in(std::string("/proc/") + e->d_name + "/status");
        std::string key;
        long real_uid = -1, threads = 0;
        while (in >> key) {
            if (key == "Uid:") in >> real_uid;
            if (key == "Threads:") {
                in >> threads;
                break;
            }
            in.ignore(4096, '\n');
        }
        if (real_uid == static_cast<long>(uid)) total += static_cast<std::uint32_t>(threads);
    }
    ::closedir(proc);
    return total;
}

class LandlockProcess final : public Process {
  public:
    struct Parts {
        UniqueFd status;
        SandboxCgroup cgroup;
        SandboxLimits limits;
        bool memory_rlimit = false;  // memory is RLIMIT_DATA's, fixed for its life
        bool pids_rlimit = false;    // pids is RLIMIT_NPROC's, fixed for its life
        std::string work_dir;
        std::optional<IdLease> lease;
    };
    LandlockProcess(pid_t pid, UniqueFd channel, UniqueFd out, UniqueFd err, Parts parts)
        : Process(pid, std::move(channel), std::move(out), std::move(err)), p_(std::move(parts)) {}
    ~LandlockProcess() override {
        kill_and_wait();
        watch_.reset();
        p_.cgroup.remove();
        remove_work_dir(p_.work_dir);
    }

    // Asks the supervisor to sweep the sandbox (SIGTERM) and waits for it to finish; a
    // supervisor that does not is killed.
    void kill() override {
        if (ended_) return;
        if (!term_sent_) {
            ::kill(pid(), SIGTERM);
            term_sent_ = true;
        }
        if (wait_for_end(pid(), kSweepGraceMs)) return;
        spdlog::warn(
            "the landlock sandbox's supervisor (pid {}) did not end within {} ms of "
            "SIGTERM; killing it",
            pid(), kSweepGraceMs);
        Process::kill();
    }

    const SandboxLimits* limits() const override { return &p_.limits; }

    void watch_limits() {
        p_.cgroup.watch();
        int fd = p_.cgroup.event_fd();
        if (fd < 0) {
            own_events_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
            fd = own_events_.get();
        }
        if (fd >= 0)
            watch_ = std::make_unique<WorkDirWatch>(p_.work_dir, p_.limits.tmpfs_bytes,
                                                    p_.limits.tmpfs_inodes, fd);
    }

    Result<bool> update_limits(const SandboxLimits& to) override {
        if (to == p_.limits) return true;
        if (auto ok = check_positive(to); !ok) return tl::unexpected(ok.error());
        if (!to.same_fixed(p_.limits)) return false;
        if (p_.memory_rlimit && to.memory_bytes != p_.limits.memory_bytes) return false;
        if (p_.pids_rlimit && to.pids != p_.limits.pids) return false;
        auto r = p_.cgroup.update(to);
        if (!r || !*r) return r;
        p_.limits = to;
        return true;
    }

    int limit_event_fd() const override {
        return own_events_ ? own_events_.get() : p_.cgroup.event_fd();
    }

    std::optional<LimitHit> limit_crossed() override {
        if (own_events_) {
            std::uint64_t v = 0;
            (void)!::read(own_events_.get(), &v, sizeof v);
        }
        if (auto v = p_.cgroup.crossed()) return LimitHit{v->limit, v->value};
        if (watch_) {
            const auto w = watch_->crossed();
            if (!w.limit.empty()) return LimitHit{w.limit, w.value};
        }
        return std::nullopt;
    }

  protected:
    void on_exit(ExitStatus& s) override {
        ended_ = true;
        // Without it the supervisor itself was killed.
        read_worker_status(p_.status.get(), s);
        const CgroupVerdict v = p_.cgroup.verdict();
        const auto w = watch_ ? watch_->crossed() : WorkDirWatch::Crossed{};
        if (!v.limit.empty()) {
            s.limit = v.limit;
            s.limit_value = v.value;
        } else if (!w.limit.empty()) {
            s.limit = w.limit;
            s.limit_value = w.value;
        } else {
            name_rlimit_signal(s, p_.limits);
        }
    }

  private:
    Parts p_;
    UniqueFd own_events_;  // the limit events' descriptor when the cgroups have none
    std::unique_ptr<WorkDirWatch> watch_;
    bool term_sent_ = false, ended_ = false;
};

}  // namespace

std::string work_root_default() {
    return "/tmp/sandflow-work-" + std::to_string(::geteuid());
}

Result<std::unique_ptr<LandlockBackend>> LandlockBackend::create(LandlockOptions options) {
    if (mech::landlock_abi() <= 0)
        return tl::unexpected(unavailable(
            "the landlock sandbox cannot run here: the kernel has no Landlock (Linux >= 5.13 "
            "with CONFIG_SECURITY_LANDLOCK=y and `landlock` in the lsm= boot parameter, or a "
            "container profile that allows landlock_create_ruleset); run `sandflow doctor`"));
    if (auto ok = check_positive(options.limits); !ok) return tl::unexpected(ok.error());
    std::unique_ptr<LandlockBackend> b(new LandlockBackend(std::move(options)));
    auto& o = b->options_;
    if (o.work_root.empty()) o.work_root = work_root_default();
    if (auto ok = prepare_work_root(o.work_root); !ok) return tl::unexpected(ok.error());
    b->ids_ = std::make_unique<SandboxIds>(o.ids);
    auto seccomp = build_seccomp_program(SeccompTier::no_namespaces);
    if (!seccomp) return tl::unexpected(seccomp.error());
    b->seccomp_ = std::move(*seccomp);
    if (o.use_cgroups) b->cgroups_ = backend_cgroups();
    for (const auto& c : b->cgroups_.controllers) {
        b->pids_cgroup_ |= c.name == "pids" && c.usable();
        b->memory_cgroup_ |= c.name == "memory" && c.usable();
    }
    b->holds_setpcap_ = holds_capability(CAP_SETPCAP);
    b->last_cap_ = last_capability();
    b->image_ = read_runtime_image();
    return b;
}

Result<std::unique_ptr<Process>> LandlockBackend::spawn(const WorkerSpec& spec) {
    if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
        return fail(Errc::internal, "spawn: argv[0] must be an absolute path");
    // The worker's folder is "/tmp" in every tier; here it is the sandbox's own work folder.
    if (spec.workdir != "/tmp" && !spec.workdir.starts_with("/tmp/"))
        return fail(Errc::invalid_argument,
                    "the working directory of a sandboxed worker must be /tmp or a folder "
                    "under it, not '" +
                        spec.workdir + "'");
    const SandboxLimits& limits = spec.limits ? *spec.limits : options_.limits;
    if (auto ok = check_positive(limits); !ok) return tl::unexpected(ok.error());
    if (auto ok = check_shared_dirs(spec.shared); !ok) return tl::unexpected(ok.error());

    std::optional<IdLease> lease;
    if (ids_->per_sandbox()) {
        auto l = ids_->acquire();
        if (!l) return tl::unexpected(l.error());
        lease = std::move(*l);
    }
    const uid_t uid = lease ? lease->id : ::geteuid();
    const gid_t gid = lease ? static_cast<gid_t>(lease->id) : ::getegid();
    const std::string group = new_group_id();
    auto root_dir = make_work_dir(options_.work_root, group, uid, gid);
    if (!root_dir) return tl::unexpected(root_dir.error());
    LandlockProcess::Parts parts;
    parts.work_dir = *root_dir;
    parts.lease = std::move(lease);
    parts.limits = limits;
    // From here the folder goes with `parts` on every path: a failed start removes it.
    struct Cleanup {
        std::string* dir;
        ~Cleanup() {
            if (dir) remove_work_dir(*dir);
        }
    } cleanup{&parts.work_dir};
    std::string workdir = parts.work_dir;
    if (spec.workdir.size() > 4) {
        auto sub = make_work_dir(parts.work_dir, spec.workdir.substr(5), uid, gid);
        if (!sub) return tl::unexpected(sub.error());
        workdir = *sub;
    }

    // Without a pids cgroup RLIMIT_NPROC is the cap. It counts per real uid: a sandbox uid
    // of its own counts this sandbox alone; the runtime's own uid counts everything that uid
    // runs, so the cap is what runs now plus this sandbox's pids (docs/sandbox.md).
    const std::uint32_t nproc = parts.lease || pids_cgroup_
                                    ? effective_nproc(limits, pids_cgroup_)
                                    : tasks_of(::geteuid()) + std::min(limits.nproc, limits.pids);
    parts.pids_rlimit = !pids_cgroup_;
    parts.memory_rlimit = !memory_cgroup_;
    const RlimitPlan rlimits = make_rlimit_plan(
        limits, nproc,
        memory_cgroup_ ? std::nullopt : std::optional<std::uint64_t>(limits.memory_bytes));
    const LandlockPlan landlock =
        make_landlock_plan(landlock_rules(parts.work_dir, spec.shared), true);

    std::vector<std::string> env;
    for (const auto& e : clean_worker_env())
        if (!e.starts_with("HOME=")) env.push_back(e);
    env.push_back("HOME=" + parts.work_dir);
    env.push_back("TMPDIR=" + parts.work_dir);
    const std::vector<char*> argv = exec_array(spec.argv), envp = exec_array(env);

    StartTimeline* const timeline = spec.timeline;
    mark(timeline, StartMark::plans_built);
    auto cgroup = spare_cgroup_.take(cgroups_, limits);
    if (!cgroup) return tl::unexpected(cgroup.error());
    mark(timeline, StartMark::cgroups_created);
    auto entry = cgroup->open_entry();
    if (!entry) return tl::unexpected(entry.error());
    auto fds = WorkerFds::create();
    if (!fds) return tl::unexpected(fds.error());
    int status[2];
    if (::pipe2(status, O_CLOEXEC | O_NONBLOCK) != 0)
        return tl::unexpected(system_error("pipe for the worker's status", errno));
    UniqueFd status_r(status[0]), status_w(status[1]);

    ChildContext ctx{&rlimits,
                     &landlock,
                     &seccomp_,
                     &options_.layers,
                     &image_,
                     UserSwitch{parts.lease.has_value(), uid, gid},
                     holds_setpcap_,
                     last_cap_,
                     parts.lease ? static_cast<long>(uid) : -1,
                     ::getpid(),
                     workdir.c_str(),
                     argv.data(),
                     envp.data(),
                     timeline,
                     &*entry,
                     {fds->devnull.get(), fds->out_w.get(), fds->err_w.get(), fds->chan_child.get(),
                      fds->report_w.get(), status_w.get()}};

    mark(timeline, StartMark::clone);
    const long pid = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (pid < 0)
        return tl::unexpected(unavailable(std::string("the landlock sandbox cannot start: "
                                                      "fork failed: ") +
                                          std::strerror(errno)));
    if (pid == 0) run_child(ctx);

    fds->close_child_ends();
    status_w.reset();
    *entry = CgroupEntry{};
    parts.status = std::move(status_r);
    parts.cgroup = std::move(*cgroup);
    cleanup.dir = nullptr;  // the process owns the folder now
    auto proc = std::make_unique<LandlockProcess>(
        static_cast<pid_t>(pid), std::move(fds->chan_parent), std::move(fds->out_r),
        std::move(fds->err_r), std::move(parts));
    proc->watch_limits();

    if (auto ok =
            await_start(*proc, fds->report_r.get(), timeline, {"landlock", spec.argv[0], {}, {}});
        !ok)
        return tl::unexpected(ok.error());
    // While the worker's interpreter starts.
    spare_cgroup_.refill(cgroups_, options_.limits);
    return std::unique_ptr<Process>(std::move(proc));
}

Result<void> LandlockBackend::probe() {
    static const Result<void> result = trial_run(create(), kTrialTimeoutMs);  // once
    return result;
}

}  // namespace sandflow::sandbox
