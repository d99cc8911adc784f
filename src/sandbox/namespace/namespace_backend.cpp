#include "sandbox/namespace/namespace_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/log.hpp"
#include "sandbox/mechanisms/capabilities.hpp"
#include "sandbox/mechanisms/worker_exec.hpp"
#include "sandbox/namespace/namespaces.hpp"
#include "sandbox/start_report.hpp"
#include "sandbox/trial_run.hpp"

namespace sandflow::sandbox {

using namespace ns;
using namespace mech;

namespace {

// How long a dead worker's init gets to report the worker's status (it needs microseconds).
constexpr int kStatusGraceMs = 200;

// Descriptor numbers in init and the worker: 0-3 stdin, stdout, stderr, channel.
constexpr int kReportFd = kReportFdInChild;  // {step, errno} on failure; close-on-exec
static_assert(kReportFd == kChannelFd + 1, "the pipes above the channel are close-on-exec");
constexpr int kSyncFd = 5;    // read end: one byte from the parent releases the child
constexpr int kStatusFd = 6;  // init writes the worker's wait status here

// Everything the child reads, prepared by the parent. Only pointers into memory the
// parent owns; the child's copy of it is the copy-on-write image made by clone().
struct ChildContext {
    const IdMapping* ids;
    const MountPlan* mounts;
    const RlimitPlan* rlimits;
    const LandlockPlan* landlock;
    const SeccompProgram* seccomp;
    const NamespaceOptions::Layers* layers;
    const std::string* hostname;
    const RuntimeImage* image;
    const char* workdir;
    char* const* argv;
    char* const* envp;
    int last_cap;
    StartTimeline* timeline;  // null unless the start is being timed
    const CgroupEntry* cgroups;
    int src_fds[7];  // devnull, out, err, channel, report, sync, status (parent's numbers)
};

[[noreturn]] void run_worker(const ChildContext& c) {
    mark(c.timeline, StartMark::worker_forked);
    ::close(kStatusFd);
    if (!reset_signals()) report_and_exit(kReportFd, failed_at(kStepSignals));
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        report_and_exit(kReportFd, failed_at(kStepDeathSignal));
    if (::setsid() < 0) report_and_exit(kReportFd, failed_at(kStepSetsid));
    if (auto f = apply_rlimits(*c.rlimits)) report_and_exit(kReportFd, f);
    if (::chdir(c.workdir) != 0) report_and_exit(kReportFd, failed_at(kStepChdir));
    mark(c.timeline, StartMark::rlimits_set);
    if (c.layers->drop_capabilities) {
        if (auto f = drop_all_capabilities(c.last_cap)) report_and_exit(kReportFd, f);
    }
    if (auto f = set_no_new_privs()) report_and_exit(kReportFd, f);
    mark(c.timeline, StartMark::ids_dropped);
    confine_and_exec({c.layers->landlock ? c.landlock : nullptr,
                      c.layers->seccomp ? c.seccomp : nullptr, 0, 0, c.argv, c.envp, c.timeline},
                     kReportFd);
}

[[noreturn]] void run_child(const ChildContext& c) {
    mark(c.timeline, StartMark::child_running);
    // Into its groups first, through the parent's descriptors (placing ours closes them).
    if (auto f = enter_cgroups(*c.cgroups)) report_and_exit(c.src_fds[4], f);
    mark(c.timeline, StartMark::cgroups_entered);
    // Descriptors 0..3 as the worker sees them; the report, sync and status pipes above,
    // close-on-exec; nothing else.
    if (!place_descriptors(c.src_fds, 7, kReportFd)) ::_exit(127);  // no report pipe yet
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
        report_and_exit(kReportFd, failed_at(kStepDeathSignal));
    // The parent writes our id maps, then one byte. EOF: it gave up or died
    // (the death signal covers a parent that dies later).
    char go = 0;
    ssize_t n;
    do {
        n = ::read(kSyncFd, &go, 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) ::_exit(127);
    ::close(kSyncFd);
    mark(c.timeline, StartMark::child_released);
    hide_runtime_memory(*c.image);

    if (auto f = become_sandbox_root(*c.ids)) report_and_exit(kReportFd, f);
    mark(c.timeline, StartMark::became_root);
    if (auto f = enter_cgroup_namespace()) report_and_exit(kReportFd, f);
    mark(c.timeline, StartMark::cgroup_namespace);
    if (auto f = apply_mount_plan(*c.mounts)) report_and_exit(kReportFd, f);
    mark(c.timeline, StartMark::mounts_done);
    if (auto f = set_hostname(*c.hostname)) report_and_exit(kReportFd, f);
    mark(c.timeline, StartMark::hostname_set);
    // Its own process group, so that Process::kill's kill(-pid) names this sandbox.
    ::setpgid(0, 0);

    // A raw clone, not fork(): glibc's fork runs atfork handlers and takes locks that a
    // thread of the parent may have held at the moment of our clone().
    const long worker = ::syscall(SYS_clone, SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (worker < 0) report_and_exit(kReportFd, failed_at(kStepForkWorker));
    if (worker == 0) run_worker(c);

    for (int fd = 0; fd <= kReportFd; ++fd) ::close(fd);
    // init keeps nothing it could be talked into using.
    if (c.layers->drop_capabilities) (void)drop_all_capabilities(c.last_cap);
    (void)set_no_new_privs();
    run_init(static_cast<pid_t>(worker), kStatusFd);
}

Error unavailable(std::string message) {
    return Error(Errc::sandbox_unavailable, std::move(message), {{"backend", "namespace"}});
}

// How to fix a failing step, where something general can be said.
std::string hint_for(int step, int err) {
    if (step >= kStepMountFirst && (err == EPERM || err == EACCES))
        return " (the host may forbid mounts in user namespaces, e.g. inside a container "
               "that masks /proc; run `sandflow doctor`)";
    return general_start_hint(step, err);
}

// The worker's own wait status (from init's status pipe), the limits it runs under and the
// one it crossed.
class NamespaceProcess final : public Process {
  public:
    NamespaceProcess(pid_t pid, UniqueFd channel, UniqueFd out, UniqueFd err, UniqueFd status,
                     SandboxCgroup cgroup, const SandboxLimits& limits, rlim_t nproc)
        : Process(pid, std::move(channel), std::move(out), std::move(err)),
          status_(std::move(status)),
          cgroup_(std::move(cgroup)),
          limits_(limits),
          nproc_(nproc) {}
    ~NamespaceProcess() override {
        kill_and_wait();
        cgroup_.remove();
    }

    // When the worker has already ended (its channel is closed), init is about to report
    // its status: give it a moment, so that the status is the worker's own and not init's
    // SIGKILL. A live worker is killed at once.
    void kill() override {
        pollfd chan{channel_fd(), POLLRDHUP, 0};
        if (!reaped_ && ::poll(&chan, 1, 0) == 1 && (chan.revents & (POLLHUP | POLLRDHUP))) {
            pollfd st{status_.get(), POLLIN, 0};
            ::poll(&st, 1, kStatusGraceMs);
        }
        Process::kill();
    }

    const SandboxLimits* limits() const override { return &limits_; }
    void watch_limits() { cgroup_.watch(); }

    // Only the cgroup's limits can change under running processes: each process holds
    // its own copy of the rlimits, and the tmpfs is mounted.
    Result<bool> update_limits(const SandboxLimits& to) override {
        if (to == limits_) return true;
        if (auto ok = check_positive(to); !ok) return tl::unexpected(ok.error());
        if (!to.same_fixed(limits_)) return false;
        // RLIMIT_NPROC was set above the pids limit the sandbox started with (rlimits.hpp):
        // a pids limit at or above it would not be the one that refuses forks.
        if (to.pids != limits_.pids && to.pids >= nproc_) return false;
        auto r = cgroup_.update(to);
        if (!r || !*r) return r;
        limits_ = to;
        return true;
    }

    int limit_event_fd() const override { return cgroup_.event_fd(); }

    std::optional<LimitHit> limit_crossed() override {
        auto v = cgroup_.crossed();
        if (!v) return std::nullopt;
        return LimitHit{v->limit, v->value};
    }

  protected:
    void on_exit(ExitStatus& s) override {
        reaped_ = true;
        // Without it, init itself was killed (by Process::kill, on a deadline).
        read_worker_status(status_.get(), s);
        const CgroupVerdict v = cgroup_.verdict();
        if (!v.limit.empty()) {
            s.limit = v.limit;
            s.limit_value = v.value;
        } else {
            name_rlimit_signal(s, limits_);
        }
    }

  private:
    UniqueFd status_;
    bool reaped_ = false;
    SandboxCgroup cgroup_;
    SandboxLimits limits_;  // as asked for (spawn, update_limits)
    rlim_t nproc_;          // the RLIMIT_NPROC its processes have
};

}  // namespace

// Paths as the worker sees them after pivot_root (mount_ns.hpp); the same folders exist
// on the host, which is where the plan looks at them.
std::vector<LandlockRule> namespace_landlock_rules() {
    return {{"/", LandlockAccess::list},      {"/usr", LandlockAccess::read_exec},
            {"/etc", LandlockAccess::read},   {"/proc", LandlockAccess::read},
            {"/dev", LandlockAccess::device}, {"/tmp", LandlockAccess::read_write}};
}

Result<std::unique_ptr<NamespaceBackend>> NamespaceBackend::create(NamespaceOptions options) {
    std::unique_ptr<NamespaceBackend> b(new NamespaceBackend(std::move(options)));
    b->ids_ = make_id_mapping();
    auto seccomp = build_seccomp_program();
    if (!seccomp) return tl::unexpected(seccomp.error());
    b->seccomp_ = std::move(*seccomp);
    b->landlock_ = make_landlock_plan(namespace_landlock_rules(), false);
    if (b->options_.use_cgroups) b->cgroups_ = backend_cgroups();
    for (const auto& c : b->cgroups_.controllers) b->pids_cgroup_ |= c.name == "pids" && c.usable();
    b->rlimits_ =
        make_rlimit_plan(b->options_.limits, effective_nproc(b->options_.limits, b->pids_cgroup_));
    b->last_cap_ = last_capability();
    b->image_ = read_runtime_image();
    b->env_ = clean_worker_env();
    MountOptions mo;
    mo.tmpfs_bytes = b->options_.limits.tmpfs_bytes;
    mo.tmpfs_inodes = b->options_.limits.tmpfs_inodes;
    auto plan = make_mount_plan(mo);
    if (!plan) return tl::unexpected(plan.error());
    b->default_mounts_ = std::move(*plan);
    return b;
}

Result<std::unique_ptr<Process>> NamespaceBackend::spawn(const WorkerSpec& spec) {
    if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
        return fail(Errc::internal, "spawn: argv[0] must be an absolute path");

    // Everything the child needs is built now: it must not allocate after clone(). The
    // backend's own limits use the plans built once in create().
    const SandboxLimits& limits = spec.limits ? *spec.limits : options_.limits;
    const bool own_limits = !spec.limits || *spec.limits == options_.limits;
    RlimitPlan custom_rlimits;
    const RlimitPlan* rlimits = &rlimits_;
    if (!own_limits) {
        if (auto ok = check_positive(limits); !ok) return tl::unexpected(ok.error());
        custom_rlimits = make_rlimit_plan(limits, effective_nproc(limits, pids_cgroup_));
        rlimits = &custom_rlimits;
    }
    MountPlan custom;
    const MountPlan* mounts = &default_mounts_;
    if (spec.workdir != "/tmp" || limits.tmpfs_bytes != options_.limits.tmpfs_bytes ||
        limits.tmpfs_inodes != options_.limits.tmpfs_inodes || !spec.shared.empty()) {
        MountOptions mo;
        mo.tmpfs_bytes = limits.tmpfs_bytes;
        mo.tmpfs_inodes = limits.tmpfs_inodes;
        mo.workdir = spec.workdir;
        mo.shared = spec.shared;
        auto plan = make_mount_plan(mo);
        if (!plan) return tl::unexpected(plan.error());
        custom = std::move(*plan);
        mounts = &custom;
    }
    // The package sets' mount points exist in the sandbox's view only.
    LandlockPlan custom_landlock;
    const LandlockPlan* landlock = &landlock_;
    if (!spec.shared.empty()) {
        custom_landlock = landlock_;
        add_sandbox_folder_rule(custom_landlock, std::string(kSharedDirRoot), LandlockAccess::read);
        landlock = &custom_landlock;
    }
    const std::vector<char*> argv = exec_array(spec.argv), envp = exec_array(env_);
    static const std::string hostname = kSandboxHostname;
    StartTimeline* const timeline = spec.timeline;
    mark(timeline, StartMark::plans_built);

    auto cgroup = spare_cgroup_.take(cgroups_, limits);
    if (!cgroup) return tl::unexpected(cgroup.error());
    mark(timeline, StartMark::cgroups_created);
    auto entry = cgroup->open_entry();
    if (!entry) return tl::unexpected(entry.error());

    auto fds = WorkerFds::create();
    if (!fds) return tl::unexpected(fds.error());
    int sync[2], status[2];
    if (::pipe2(sync, O_CLOEXEC) != 0)
        return tl::unexpected(system_error("pipe for the start signal", errno));
    UniqueFd sync_r(sync[0]), sync_w(sync[1]);
    if (::pipe2(status, O_CLOEXEC | O_NONBLOCK) != 0)
        return tl::unexpected(system_error("pipe for the worker's status", errno));
    UniqueFd status_r(status[0]), status_w(status[1]);

    ChildContext ctx{&ids_,
                     mounts,
                     rlimits,
                     landlock,
                     &seccomp_,
                     &options_.layers,
                     &hostname,
                     &image_,
                     spec.workdir.c_str(),
                     argv.data(),
                     envp.data(),
                     last_cap_,
                     timeline,
                     &*entry,
                     {fds->devnull.get(), fds->out_w.get(), fds->err_w.get(), fds->chan_child.get(),
                      fds->report_w.get(), sync_r.get(), status_w.get()}};

    unsigned long flags = kCloneNamespaces;
    if (!options_.layers.network_namespace) flags &= ~static_cast<unsigned long>(CLONE_NEWNET);
    // A raw clone (fork-like: no new stack) so that namespaces and fork happen in one step.
    mark(timeline, StartMark::clone);
    const long pid = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
    if (pid < 0) {
        const int e = errno;
        Error er = unavailable(
            std::string("the namespace sandbox cannot start: clone() with new user, pid, "
                        "mount, network, ipc and uts namespaces failed: ") +
            std::strerror(e) +
            (e == EPERM || e == ENOSPC || e == EUSERS
                 ? " (user namespaces are disabled or exhausted here: check sysctl "
                   "user.max_user_namespaces, kernel.unprivileged_userns_clone and "
                   "kernel.apparmor_restrict_unprivileged_userns, or the container's seccomp "
                   "profile; run `sandflow doctor`)"
                 : " (run `sandflow doctor`)"));
        er.data["errno"] = e;
        return tl::unexpected(std::move(er));
    }
    if (pid == 0) run_child(ctx);

    fds->close_child_ends();
    sync_r.reset();
    status_w.reset();
    *entry = CgroupEntry{};

    // The parent's half of the set-up, then the release.
    auto maps = write_id_maps(static_cast<pid_t>(pid), ids_);
    mark(timeline, StartMark::id_maps_written);
    auto proc = std::make_unique<NamespaceProcess>(
        static_cast<pid_t>(pid), std::move(fds->chan_parent), std::move(fds->out_r),
        std::move(fds->err_r), std::move(status_r), std::move(*cgroup), limits, rlimits->nproc());
    if (!maps) {
        proc->kill_and_wait();
        return tl::unexpected(
            unavailable("the namespace sandbox cannot start: writing its uid/gid maps failed: " +
                        maps.error().message + " (run `sandflow doctor`)"));
    }
    const char go = 1;
    if (::write(sync_w.get(), &go, 1) != 1) {
        const int e = errno;
        proc->kill_and_wait();
        return tl::unexpected(system_error("releasing the sandbox", e));
    }
    sync_w.reset();
    mark(timeline, StartMark::released);
    // While the child sets itself up (a few milliseconds before it can run anything of a
    // script's): its limit events cost the caller nothing then.
    proc->watch_limits();

    const auto step_name = [mounts](int step) {
        std::string what = describe_mount_step(*mounts, step);
        return what.empty() ? std::string(child_step_name(step)) : what;
    };
    if (auto ok = await_start(*proc, fds->report_r.get(), timeline,
                              {"namespace", spec.argv[0], step_name, hint_for});
        !ok)
        return tl::unexpected(ok.error());
    // While the worker's interpreter starts.
    spare_cgroup_.refill(cgroups_, options_.limits);
    return std::unique_ptr<Process>(std::move(proc));
}

Result<void> NamespaceBackend::probe() {
    static const Result<void> result = trial_run(create(), kTrialTimeoutMs);  // once
    return result;
}

}  // namespace sandflow::sandbox
