#include "sandbox/microvm/microvm_backend.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <poll.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/json.hpp"
#include "core/log.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/mechanisms/landlock.hpp"
#include "sandbox/microvm/guest_protocol.hpp"

namespace sandflow::sandbox {

using namespace microvm;
using Clock = std::chrono::steady_clock;

namespace {

// Descriptors in QEMU: /dev/null on 0 and 1, the console socket on 2 (QEMU's own messages
// join the guest's console), then the channel, stdout and console sockets its chardevs take
// (`fd=3`, `fd=4`, `fd=5`), the monitor's socket (QMP, `fd=6`) and the saved device state a
// restore reads (`fd:7`), /dev/null where unused, then the report pipe, close-on-exec.
constexpr int kChanFd = 3, kOutFd = 4, kConsoleFd = 5, kQmpFd = 6, kStateFd = 7, kReportFd = 8;
constexpr int kChildFds = kReportFd + 1;
// What probe() quotes of the console and QEMU's stderr.
constexpr std::size_t kProbeStderrBytes = 600;

enum ChildStep : int {
    kStepDescriptors = 1,
    kStepCgroups,
    kStepSetpgid,
    kStepDeathSignal,
    kStepNamespaces,
    kStepNoNewPrivs,
    kStepLandlock,
    kStepExec
};

const char* step_name(int step) {
    switch (step) {
        case kStepDescriptors:
            return "setting up descriptors";
        case kStepCgroups:
            return "entering QEMU's cgroups";
        case kStepSetpgid:
            return "setpgid";
        case kStepDeathSignal:
            return "prctl(PR_SET_PDEATHSIG)";
        case kStepNamespaces:
            return "unshare of QEMU's namespaces";
        case kStepNoNewPrivs:
            return "prctl(PR_SET_NO_NEW_PRIVS)";
        case kStepLandlock:
            return "Landlock";
        case kStepExec:
            return "execve of QEMU";
        default:
            return "child set-up";
    }
}

struct ChildContext {
    char* const* argv;
    char* const* envp;
    pid_t parent;
    const mech::LandlockPlan* landlock;
    const mech::CgroupEntry* cgroups;
    int unshare_flags;
    int src_fds[kChildFds];  // as placed on 0..kReportFd
};

[[noreturn]] void child_fail(int report_fd, int step) {
    const int msg[2] = {step, errno};
    [[maybe_unused]] ssize_t n = ::write(report_fd, msg, sizeof msg);
    ::_exit(127);
}

[[noreturn]] void run_child(const ChildContext& c) {
    // Into QEMU's groups first: their descriptors go with place_descriptors().
    if (const mech::ChildFailure f = mech::enter_cgroups(*c.cgroups)) {
        errno = f.err;
        child_fail(c.src_fds[kReportFd], kStepCgroups);
    }
    if (!place_descriptors(c.src_fds, kChildFds, kReportFd))
        child_fail(c.src_fds[kReportFd], kStepDescriptors);
    (void)reset_signals();
    if (::setpgid(0, 0) != 0) child_fail(kReportFd, kStepSetpgid);
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(kReportFd, kStepDeathSignal);
    if (::getppid() != c.parent) ::_exit(127);  // the parent died before prctl
    if (c.unshare_flags != 0 && ::unshare(c.unshare_flags) != 0)
        child_fail(kReportFd, kStepNamespaces);
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(kReportFd, kStepNoNewPrivs);
    if (const mech::ChildFailure f = mech::apply_landlock(*c.landlock)) {
        errno = f.err;
        child_fail(kReportFd, kStepLandlock);
    }
    ::execve(c.argv[0], c.argv, c.envp);
    child_fail(kReportFd, kStepExec);
}

Error unavailable(std::string message) {
    return Error(Errc::sandbox_unavailable, std::move(message), {{"backend", "microvm"}});
}

// The QEMU process of one VM. Its exit status becomes the worker's, as the guest agent
// reported it through isa-debug-exit.
class MicrovmProcess final : public Process {
  public:
    MicrovmProcess(pid_t pid, UniqueFd channel, UniqueFd out, UniqueFd err,
                   const SandboxLimits& limits, mech::SandboxCgroup cgroup)
        : Process(pid, std::move(channel), std::move(out), std::move(err)),
          limits_(limits),
          cgroup_(std::move(cgroup)) {}
    ~MicrovmProcess() override { kill_and_wait(); }

    const SandboxLimits* limits() const override { return &limits_; }
    // The VM's memory and vCPUs are fixed at boot, the guest's rlimits and tmpfs too.
    Result<bool> update_limits(const SandboxLimits& to) override { return to == limits_; }

  protected:
    void on_exit(ExitStatus& s) override {
        if (!WIFEXITED(s.raw)) {
            // QEMU killed: the runtime's kill, a wall clock, or its own cgroup's limit.
            const mech::CgroupVerdict v = cgroup_.verdict();
            if (!v.limit.empty()) {
                s.limit = v.limit;
                s.limit_value = v.value;
            }
            cgroup_.remove();
            return;
        }
        cgroup_.remove();
        const GuestExit g = decode_exit(WEXITSTATUS(s.raw));
        if (g.reported) {
            s.raw = g.signaled ? g.value : (g.value << 8);
            if (g.signaled && g.value == SIGXCPU) {
                s.limit = "cpu_seconds";
                s.limit_value = limits_.cpu_seconds;
            } else if (g.signaled && g.value == SIGXFSZ) {
                s.limit = "file_size";
                s.limit_value = limits_.tmpfs_bytes;
            }
        } else if (WEXITSTATUS(s.raw) == 0) {
            // The guest ended without the agent's report (a kernel panic: panic=-1 and
            // -no-reboot end QEMU with 0); the console's last lines, in the stderr
            // capture, say why. Never read as a worker that exited cleanly.
            s.raw = 1 << 8;
        }
    }

  private:
    SandboxLimits limits_;
    mech::SandboxCgroup cgroup_;  // QEMU's own: its memory, threads and CPU
};

// QEMU's monitor (QMP) on a socketpair: one command at a time, its answer awaited; events
// in between are skipped.
class Qmp {
  public:
    explicit Qmp(int fd) : fd_(fd) {}

    // Reads the greeting and enters command mode.
    Result<void> open(Clock::time_point deadline) {
        auto greeting = next(deadline);
        if (!greeting) return tl::unexpected(greeting.error());
        auto ok = run(R"({"execute":"qmp_capabilities"})", deadline);
        if (!ok) return tl::unexpected(ok.error());
        return {};
    }

    // Sends one command (with `pass_fd` attached, for getfd) and returns its "return".
    Result<json::value> run(std::string_view command, Clock::time_point deadline,
                            int pass_fd = -1) {
        std::string line(command);
        line.push_back('\n');
        iovec iov{line.data(), line.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (pass_fd >= 0) {
            msg.msg_control = control;
            msg.msg_controllen = sizeof control;
            cmsghdr* c = CMSG_FIRSTHDR(&msg);
            c->cmsg_level = SOL_SOCKET;
            c->cmsg_type = SCM_RIGHTS;
            c->cmsg_len = CMSG_LEN(sizeof(int));
            std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        // A command is far smaller than the socket's buffer: one sendmsg takes it whole.
        if (::sendmsg(fd_, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
            return tl::unexpected(system_error("send to QEMU's monitor", errno));
        for (;;) {
            auto v = next(deadline);
            if (!v) return tl::unexpected(v.error());
            const json::object* o = v->if_object();
            if (o == nullptr || o->contains("event")) continue;
            if (const auto* r = o->if_contains("return")) return *r;
            return tl::unexpected(unavailable("QEMU's monitor refused " + std::string(command) +
                                              ": " + to_json_string(*v)));
        }
    }

    // Polls query-migrate until the migration ends; an error when it failed.
    Result<void> wait_migrated(Clock::time_point deadline) {
        for (;;) {
            auto r = run(R"({"execute":"query-migrate"})", deadline);
            if (!r) return tl::unexpected(r.error());
            const json::object* o = r->if_object();
            const json::value* st = o ? o->if_contains("status") : nullptr;
            const std::string status = st && st->is_string() ? std::string(st->get_string()) : "";
            if (status == "completed") return {};
            if (status == "failed" || status == "cancelled")
                return tl::unexpected(
                    unavailable("QEMU's migration " + status + ": " + to_json_string(*r)));
            if (Clock::now() >= deadline)
                return tl::unexpected(unavailable("QEMU's migration did not end within " +
                                                  std::to_string(kQmpTimeout.count()) + " s"));
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }

  private:
    // The next message, a line of JSON.
    Result<json::value> next(Clock::time_point deadline) {
        for (;;) {
            if (auto nl = buf_.find('\n'); nl != std::string::npos) {
                const std::string line = buf_.substr(0, nl);
                buf_.erase(0, nl + 1);
                return parse_json(line, "QEMU's monitor");
            }
            if (buf_.size() > kMaxQmpLine)
                return tl::unexpected(unavailable("QEMU's monitor sent a line over " +
                                                  std::to_string(kMaxQmpLine) + " bytes"));
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0)
                return tl::unexpected(unavailable("QEMU's monitor did not answer within " +
                                                  std::to_string(kQmpTimeout.count()) + " s"));
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR)
                return tl::unexpected(system_error("poll QEMU's monitor", errno));
            char chunk[4096];
            const ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
            if (n == 0) return tl::unexpected(unavailable("QEMU closed its monitor (it ended)"));
            if (n > 0) buf_.append(chunk, static_cast<std::size_t>(n));
        }
    }

    int fd_;
    std::string buf_;
};

// A socketpair's two ends, close-on-exec.
Result<std::pair<UniqueFd, UniqueFd>> socket_pair(const char* what) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return tl::unexpected(system_error(std::string("socketpair for the ") + what, errno));
    return std::pair<UniqueFd, UniqueFd>{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

// One QEMU started: its process, and the host's ends of its monitor.
struct Launched {
    std::unique_ptr<MicrovmProcess> proc;
    UniqueFd qmp;
};

// Starts QEMU with `args`; `frame`, when not empty, waits in the channel for the agent.
// `state` is the saved device state a restore reads (-1: none).
Result<Launched> launch(const std::vector<std::string>& args, const std::string& frame, int state,
                        const SandboxLimits& limits, const MicrovmBackend::Jail& jail) {
    // QEMU's own groups: the guest's RAM and QEMU's own memory, QEMU's threads, the CPU
    // share; nothing is made where no controller is usable.
    SandboxLimits qemu_limits = limits;
    qemu_limits.memory_bytes = jail.memory_bytes;
    qemu_limits.pids = kQemuThreads;
    auto cgroup = mech::SandboxCgroup::create(*jail.cgroups, mech::new_group_id(), qemu_limits);
    if (!cgroup) return tl::unexpected(cgroup.error());
    auto entry = cgroup->open_entry();
    if (!entry) return tl::unexpected(entry.error());
    const std::vector<std::string> qemu_env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : qemu_env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    auto chan = socket_pair("microVM's channel");
    if (!chan) return tl::unexpected(chan.error());
    auto out = socket_pair("microVM's stdout");
    if (!out) return tl::unexpected(out.error());
    auto console = socket_pair("microVM's console");
    if (!console) return tl::unexpected(console.error());
    auto qmp = socket_pair("QEMU's monitor");
    if (!qmp) return tl::unexpected(qmp.error());
    int rp[2];
    if (::pipe2(rp, O_CLOEXEC) != 0)
        return tl::unexpected(system_error("pipe for the report", errno));
    UniqueFd report_r(rp[0]), report_w(rp[1]);
    UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull) return tl::unexpected(system_error("open /dev/null", errno));

    // The start frame waits in the channel's buffer until the guest's agent reads it.
    if (!frame.empty()) {
        const int sndbuf = static_cast<int>(kMaxStartFrameBytes) * 2;
        (void)::setsockopt(chan->first.get(), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        std::size_t done = 0;
        while (done < frame.size()) {
            const ssize_t n = ::send(chan->first.get(), frame.data() + done, frame.size() - done,
                                     MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0)
                return tl::unexpected(system_error(
                    "write the start frame (" + std::to_string(frame.size()) +
                        " bytes) into the microVM's channel; it must fit the socket's buffer "
                        "(net.core.wmem_max)",
                    errno));
            done += static_cast<std::size_t>(n);
        }
    }

    const ChildContext ctx{argv.data(),
                           envp.data(),
                           ::getpid(),
                           &jail.landlock,
                           &*entry,
                           jail.unshare_flags,
                           {devnull.get(), devnull.get(), console->second.get(), chan->second.get(),
                            out->second.get(), console->second.get(), qmp->second.get(),
                            state >= 0 ? state : devnull.get(), report_w.get()}};
    const pid_t pid = ::fork();
    if (pid < 0) return tl::unexpected(system_error("fork", errno));
    if (pid == 0) run_child(ctx);

    chan->second.reset();
    out->second.reset();
    console->second.reset();
    qmp->second.reset();
    report_w.reset();
    auto proc =
        std::make_unique<MicrovmProcess>(pid, std::move(chan->first), std::move(out->first),
                                         std::move(console->first), limits, std::move(*cgroup));
    const ExecReport report = wait_for_exec(report_r.get(), kExecTimeoutMs);
    if (report.kind == ExecReport::timed_out) {
        proc->kill_and_wait();
        return tl::unexpected(unavailable("QEMU was not started within " +
                                          std::to_string(kExecTimeoutMs / 1000) +
                                          " s; it was killed"));
    }
    if (report.kind == ExecReport::failed) {
        proc->kill_and_wait();
        Error e = unavailable("starting " + args[0] + " for the microVM failed at " +
                              step_name(report.step) + ": " + std::strerror(report.err));
        e.data["errno"] = report.err;
        return tl::unexpected(std::move(e));
    }
    if (auto ok = set_worker_fds_nonblocking(*proc); !ok) return tl::unexpected(ok.error());
    return Launched{std::move(proc), std::move(qmp->first)};
}

const std::string kMigrateCaps =
    R"({"execute":"migrate-set-capabilities","arguments":{"capabilities":)"
    R"([{"capability":"x-ignore-shared","state":true}]}})";

// Whether a child may enter new user, network, IPC and UTS namespaces here (a container may
// refuse them): found once by forking one that tries.
int qemu_namespaces() {
    static const int flags = [] {
        const int want = CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;
        const pid_t pid = ::fork();
        if (pid == 0) ::_exit(::unshare(want) == 0 ? 0 : 1);
        int st = 0;
        if (pid < 0 || ::waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 0;
        return want;
    }();
    return flags;
}

// Boots one guest running /usr/bin/true on `backend` within `timeout`. The guest's console
// is drained while it runs (a full socket would stall the guest).
Result<void> run_true(MicrovmBackend& backend, std::chrono::milliseconds timeout) {
    WorkerSpec spec;
    spec.argv = {"/usr/bin/true"};
    auto proc = backend.spawn(spec);
    if (!proc) return tl::unexpected(proc.error());
    std::string console;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::optional<ExitStatus> st;
    while (!(st = (*proc)->try_wait()) && std::chrono::steady_clock::now() < deadline) {
        console =
            tail_line(console + read_available((*proc)->stderr_fd(), 1 << 16), kProbeStderrBytes);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const std::string accel = backend.accel() == VmAccel::kvm ? "KVM" : "TCG";
    if (!st) {
        (*proc)->kill_and_wait();
        return tl::unexpected(unavailable(
            "a test microVM (" + accel + ") running /usr/bin/true did not end within " +
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(timeout).count()) +
            " s; it was killed" + (console.empty() ? "" : " (console: " + console + ")")));
    }
    console = tail_line(console + read_available((*proc)->stderr_fd(), 1 << 16), kProbeStderrBytes);
    if (WIFEXITED(st->raw) && WEXITSTATUS(st->raw) == 0) return {};
    return tl::unexpected(
        unavailable("a test microVM (" + accel + ") running /usr/bin/true " + st->describe() +
                    (console.empty() ? "" : " (console and QEMU said: " + console + ")") +
                    "; rebuild the guest image (`make microvm-image`) and check that " +
                    backend.options().qemu + " runs"));
}

// The host's TSC rate in kHz, measured once against CLOCK_MONOTONIC over kTscSample. Under
// TCG the guest's TSC is the host's, but the guest kernel's calibration against its emulated
// PIT fails on a loaded host (the PIT's ticks arrive late): it then marks the TSC unstable
// and hangs before init. Told the rate (tsc_early_khz), it skips that calibration.
constexpr std::chrono::milliseconds kTscSample{20};
std::uint64_t host_tsc_khz() {
    static const std::uint64_t khz = [] {
        timespec a{}, b{};
        ::clock_gettime(CLOCK_MONOTONIC, &a);
        const std::uint64_t t0 = __rdtsc();
        std::this_thread::sleep_for(kTscSample);
        const std::uint64_t t1 = __rdtsc();
        ::clock_gettime(CLOCK_MONOTONIC, &b);
        const double ns = static_cast<double>(b.tv_sec - a.tv_sec) * 1e9 +
                          static_cast<double>(b.tv_nsec - a.tv_nsec);
        return static_cast<std::uint64_t>(static_cast<double>(t1 - t0) / ns * 1e6);
    }();
    return khz;
}

// How long probe() lets its TCG guest run.
constexpr std::chrono::seconds kProbeTimeout{120};

}  // namespace

const MicrovmBackend::AccelChoice& MicrovmBackend::detect_accel() {
    static std::once_flag once;
    static AccelChoice choice;
    std::call_once(once, [] {
        const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            choice.why = std::string("/dev/kvm cannot be opened (") + std::strerror(errno) + ")";
            return;
        }
        ::close(fd);
        MicrovmOptions kvm;
        kvm.accel = "kvm";
        kvm.snapshot = false;  // one boot, bounded by kKvmProbeTimeout
        auto b = create(kvm);
        if (!b) {
            choice.why = b.error().message;
            return;
        }
        auto r = run_true(**b, kKvmProbeTimeout);
        if (!r) {
            choice.why = "/dev/kvm opens but does not run a stock guest: " + r.error().message;
            return;
        }
        choice.accel = VmAccel::kvm;
        choice.why = "/dev/kvm runs a test guest";
    });
    return choice;
}

std::string MicrovmBackend::default_image_dir() {
    return SANDFLOW_MICROVM_IMAGE_DIR;
}

Result<std::unique_ptr<MicrovmBackend>> MicrovmBackend::create(MicrovmOptions options) {
    if (options.accel != "auto" && options.accel != "kvm" && options.accel != "tcg")
        return fail(Errc::invalid_argument,
                    "unknown microVM accelerator '" + options.accel + "'; known: auto, kvm, tcg",
                    {{"backend", "microvm"}, {"accel", options.accel}});
    if (auto ok = check_positive(options.limits); !ok) return tl::unexpected(ok.error());
    if (::access(options.qemu.c_str(), X_OK) != 0)
        return tl::unexpected(unavailable(
            "QEMU is not installed at " + options.qemu + " (" + std::strerror(errno) +
            "): install it (Debian 12: `apt-get install qemu-system-x86`, which `make deps` "
            "does), or choose another backend"));
    if (options.image_dir.empty()) options.image_dir = default_image_dir();
    std::unique_ptr<MicrovmBackend> b(new MicrovmBackend(std::move(options)));
    b->kernel_ = b->options_.image_dir + "/vmlinuz";
    b->initrd_ = b->options_.image_dir + "/initramfs.img";
    for (const auto& f : {b->kernel_, b->initrd_})
        if (::access(f.c_str(), R_OK) != 0)
            return tl::unexpected(unavailable(
                "the microVM guest image is missing: " + f + " (" + std::strerror(errno) +
                "); build it with `make microvm-image` (scripts/microvm-image.sh, which needs "
                "Debian's archive once to download the kernel package)"));
    if (b->options_.accel == "kvm")
        b->accel_ = VmAccel::kvm;
    else if (b->options_.accel == "tcg")
        b->accel_ = VmAccel::tcg;
    else
        b->accel_ = detect_accel().accel;
    b->env_ = clean_worker_env();
    b->cgroups_ = mech::detect_cgroup_support();
    b->unshare_flags_ = qemu_namespaces();
    if (b->options_.snapshot) {
        std::string tmpl = (b->options_.snapshot_parent.empty() ? std::string("/tmp")
                                                                : b->options_.snapshot_parent) +
                           "/sandflow-microvm-XXXXXX";
        if (::mkdtemp(tmpl.data()) == nullptr)
            return tl::unexpected(system_error("create the microVM snapshots' folder " + tmpl +
                                                   " (MicrovmOptions::snapshot_parent)",
                                               errno));
        b->snapshot_dir_ = tmpl;
    }
    b->cmdline_ = b->accel_ == VmAccel::kvm
                      ? std::string(kKernelCmdline)
                      : std::string(kKernelCmdline) +
                            " tsc=reliable tsc_early_khz=" + std::to_string(host_tsc_khz());
    return b;
}

MicrovmBackend::VmShape MicrovmBackend::shape_of(const SandboxLimits& limits) {
    const std::uint64_t mib = 1ull << 20;
    return {(limits.memory_bytes + kGuestMemoryHeadroom + mib - 1) / mib,
            std::max<std::uint32_t>(1, (limits.cpu_milli + 999) / 1000)};
}

std::vector<std::string> MicrovmBackend::qemu_args(VmShape shape, const std::string& memory_backend,
                                                   bool snapshotting) const {
    std::vector<std::string> args = {
        options_.qemu,
        "-M",
        "microvm",
        "-accel",
        accel_ == VmAccel::kvm ? "kvm" : "tcg,tb-size=" + std::to_string(kTcgCacheMib),
        "-m",
        std::to_string(shape.memory_mib) + "M",
        "-smp",
        std::to_string(shape.cpus),
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-kernel",
        kernel_,
        "-initrd",
        initrd_,
        "-append",
        snapshotting ? cmdline_ + " " + std::string(kSnapshotFlag) : cmdline_,
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-device",
        "virtio-serial-device,max_ports=3",
        "-chardev",
        "socket,id=console,fd=" + std::to_string(kConsoleFd),
        "-device",
        "virtconsole,chardev=console",
        "-chardev",
        "socket,id=chan,fd=" + std::to_string(kChanFd),
        "-device",
        "virtserialport,chardev=chan,name=" + std::string(kChannelPort),
        "-chardev",
        "socket,id=out,fd=" + std::to_string(kOutFd),
        "-device",
        "virtserialport,chardev=out,name=" + std::string(kStdoutPort),
        // The host's /usr, read-only in QEMU as well as in the guest; nothing else of the
        // host's files is given.
        "-fsdev",
        "local,id=usr,path=/usr,security_model=none,readonly=on",
        "-device",
        "virtio-9p-device,fsdev=usr,mount_tag=" + std::string(kUsrTag),
        "-chardev",
        "socket,id=qmp,fd=" + std::to_string(kQmpFd),
        "-mon",
        "chardev=qmp,mode=control",
        // QEMU's own seccomp filter: no setuid/setgid, no fork/exec, no scheduler or
        // resource changes, no obsolete calls.
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    };
    if (!memory_backend.empty()) {
        args.insert(args.end(), {"-object", memory_backend, "-machine", "memory-backend=ram"});
    }
    if (accel_ == VmAccel::kvm) args.insert(args.end(), {"-cpu", "host"});
    return args;
}

Result<std::unique_ptr<Process>> MicrovmBackend::spawn(const WorkerSpec& spec) {
    if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
        return fail(Errc::internal, "spawn: argv[0] must be an absolute path");
    if (spec.workdir != "/tmp")
        return fail(Errc::invalid_argument,
                    "the microVM's working directory is /tmp, not '" + spec.workdir + "'");
    const SandboxLimits& limits = spec.limits ? *spec.limits : options_.limits;
    if (auto ok = check_positive(limits); !ok) return tl::unexpected(ok.error());
    if (auto ok = check_shared_dirs(spec.shared); !ok) return tl::unexpected(ok.error());
    for (const auto& d : spec.shared)
        if (!d.host.starts_with("/usr/"))
            return fail(Errc::invalid_argument,
                        "the microvm backend shares only the host's /usr with its guest, so "
                        "package folder '" +
                            d.host +
                            "' is out of its reach; install the packages under /usr (a "
                            "virtualenv in /usr/local/lib) or use another backend");
    const VmShape shape = shape_of(limits);

    std::shared_ptr<const Snapshot> snap;
    if (options_.snapshot) {
        auto s = snapshot_for(shape);
        if (s) snap = std::move(*s);
    }

    StartSpec start;
    start.argv = spec.argv;
    start.env = env_;
    start.workdir = spec.workdir;
    start.tmpfs_bytes = limits.tmpfs_bytes;
    start.tmpfs_inodes = limits.tmpfs_inodes;
    start.open_files = limits.open_files;
    start.nproc = std::min(limits.nproc, limits.pids);
    start.cpu_seconds = limits.cpu_seconds;
    start.clock_ns =
        static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    const std::string frame = encode_start(start);
    if (frame.size() - 4 > kMaxStartFrameBytes)
        return fail(Errc::invalid_argument,
                    "the microVM worker's command line and environment take " +
                        std::to_string(frame.size()) + " bytes, more than the guest accepts (" +
                        std::to_string(kMaxStartFrameBytes) + ", microvm::kMaxStartFrameBytes)");

    if (!snap) {
        auto l = launch(qemu_args(shape, "", false), frame, -1, limits, jail(shape));
        if (!l) return tl::unexpected(l.error());
        return std::unique_ptr<Process>(std::move(l->proc));
    }

    // Restore: the RAM is the snapshot's file mapped privately (share=off: the guest's writes
    // are copies of its own, never the file's); the device state comes in through fd 7 once
    // x-ignore-shared is set on this side too (the RAM is not in the stream); the VM, stopped
    // when it was saved, continues on `cont`, reads its start frame and starts the worker.
    UniqueFd state(::open(snap->state.c_str(), O_RDONLY | O_CLOEXEC));
    if (!state) return tl::unexpected(system_error("open the snapshot's " + snap->state, errno));
    std::vector<std::string> args =
        qemu_args(shape,
                  "memory-backend-file,id=ram,size=" + std::to_string(shape.memory_mib) +
                      "M,mem-path=" + snap->ram + ",share=off",
                  false);
    args.insert(args.end(), {"-incoming", "defer"});
    auto l = launch(args, frame, state.get(), limits, jail(shape));
    if (!l) return tl::unexpected(l.error());
    state.reset();
    const auto deadline = Clock::now() + kQmpTimeout;
    Qmp qmp(l->qmp.get());
    Result<json::value> step = json::value();
    if (auto ok = qmp.open(deadline); !ok) step = tl::unexpected(ok.error());
    if (step) step = qmp.run(kMigrateCaps, deadline);
    if (step)
        step = qmp.run(R"({"execute":"migrate-incoming","arguments":{"uri":"fd:)" +
                           std::to_string(kStateFd) + R"("}})",
                       deadline);
    if (step) {
        if (auto ok = qmp.wait_migrated(deadline); !ok) step = tl::unexpected(ok.error());
    }
    if (step) step = qmp.run(R"({"execute":"cont"})", deadline);
    if (!step) {
        const std::string console = read_available(l->proc->stderr_fd(), kProbeStderrBytes);
        l->proc->kill_and_wait();
        Error e = step.error();
        e.message = "restoring a microVM from its snapshot failed: " + e.message +
                    (console.empty() ? "" : " (QEMU said: " + tail_line(console, 300) + ")");
        return tl::unexpected(std::move(e));
    }
    ++restores_;
    return std::unique_ptr<Process>(std::move(l->proc));
}

Result<std::shared_ptr<const MicrovmBackend::Snapshot>> MicrovmBackend::snapshot_for(
    VmShape shape) {
    std::lock_guard lock(snapshot_mu_);
    if (auto it = snapshots_.find(shape); it != snapshots_.end()) return it->second;
    if (auto it = snapshot_failures_.find(shape); it != snapshot_failures_.end())
        return tl::unexpected(unavailable(it->second));
    auto s = take_snapshot(shape);
    if (!s) {
        // Taken once per shape: a VM that cannot be saved here boots each time.
        spdlog::warn("microvm: no snapshot for {} MiB, {} vCPU; each VM boots: {}",
                     shape.memory_mib, shape.cpus, s.error().message);
        snapshot_failures_[shape] = s.error().message;
        return tl::unexpected(s.error());
    }
    ++snapshots_taken_;
    snapshots_[shape] = *s;
    return *s;
}

// Boots a VM whose RAM is a shared file, waits for the agent's ready mark, stops it and
// writes its device state (migrate with x-ignore-shared: the RAM stays in its file).
Result<std::shared_ptr<const MicrovmBackend::Snapshot>> MicrovmBackend::take_snapshot(
    VmShape shape) {
    const std::string base = snapshot_dir_ + "/" + std::to_string(shape.memory_mib) + "M-" +
                             std::to_string(shape.cpus) + "cpu";
    auto snap = std::make_shared<Snapshot>(Snapshot{base + ".ram", base + ".state"});
    auto l =
        launch(qemu_args(shape,
                         "memory-backend-file,id=ram,size=" + std::to_string(shape.memory_mib) +
                             "M,mem-path=" + snap->ram + ",share=on",
                         true),
               "", -1, options_.limits, jail(shape));
    if (!l) return tl::unexpected(l.error());
    // The agent's ready mark, within the boot's allowance; the console is drained meanwhile
    // (a full socket would stall the guest) and quoted when the mark does not come.
    std::string console;
    const auto boot_deadline = Clock::now() + boot_allowance();
    for (;;) {
        console =
            tail_line(console + read_available(l->proc->stderr_fd(), 1 << 16), kProbeStderrBytes);
        char mark = 0;
        const ssize_t n = ::recv(l->proc->channel_fd(), &mark, 1, MSG_DONTWAIT);
        if (n == 1 && mark == kAgentReady) break;
        if (n >= 0 || l->proc->try_wait() || Clock::now() >= boot_deadline) {
            l->proc->kill_and_wait();
            return tl::unexpected(
                unavailable("the VM booted for a snapshot did not reach its agent's ready mark" +
                            (console.empty() ? std::string() : " (console: " + console + ")")));
        }
        pollfd p{l->proc->channel_fd(), POLLIN, 0};
        (void)::poll(&p, 1, 20);
    }
    UniqueFd state(::open(snap->state.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!state) return tl::unexpected(system_error("create " + snap->state, errno));
    const auto deadline = Clock::now() + kQmpTimeout;
    Qmp qmp(l->qmp.get());
    Result<json::value> step = json::value();
    if (auto ok = qmp.open(deadline); !ok) step = tl::unexpected(ok.error());
    if (step) step = qmp.run(kMigrateCaps, deadline);
    if (step) step = qmp.run(R"({"execute":"stop"})", deadline);
    if (step)
        step =
            qmp.run(R"({"execute":"getfd","arguments":{"fdname":"state"}})", deadline, state.get());
    if (step) step = qmp.run(R"({"execute":"migrate","arguments":{"uri":"fd:state"}})", deadline);
    if (step) {
        if (auto ok = qmp.wait_migrated(deadline); !ok) step = tl::unexpected(ok.error());
    }
    // The saving VM must never run again: its RAM is the snapshot's file.
    l->proc->kill_and_wait();
    if (!step) return tl::unexpected(step.error());
    return std::shared_ptr<const Snapshot>(std::move(snap));
}

// QEMU's jail (docs/sandbox.md): its namespaces and cgroups, and a Landlock wall: the host's /usr
// to read and run (its binary, libraries and firmware, and the 9p share, read-only), the image's
// two files, the loader's cache, /dev/null (and /dev/kvm under KVM), and the snapshots' folder,
// whose RAM files QEMU 7.2 opens read-write even to map them privately; nothing else. TCP is
// refused and, on ABI 6, signals out of its domain.
MicrovmBackend::Jail MicrovmBackend::jail(VmShape shape) const {
    using mech::LandlockAccess;
    std::vector<mech::LandlockRule> rules = {{"/usr", LandlockAccess::read_exec},
                                             {kernel_, LandlockAccess::read_file},
                                             {initrd_, LandlockAccess::read_file},
                                             {"/etc/ld.so.cache", LandlockAccess::read_file},
                                             {"/dev/null", LandlockAccess::device}};
    if (accel_ == VmAccel::kvm) rules.push_back({"/dev/kvm", LandlockAccess::device});
    if (!snapshot_dir_.empty()) rules.push_back({snapshot_dir_, LandlockAccess::read_write});
    return {mech::make_landlock_plan(rules, true), &cgroups_,
            (shape.memory_mib << 20) + kQemuMemoryOverhead, unshare_flags_};
}

std::string MicrovmBackend::snapshot_ram(const SandboxLimits& limits) const {
    std::lock_guard lock(snapshot_mu_);
    auto it = snapshots_.find(shape_of(limits));
    return it == snapshots_.end() ? std::string() : it->second->ram;
}

MicrovmBackend::~MicrovmBackend() {
    if (snapshot_dir_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(snapshot_dir_, ec);
}

namespace {
std::once_flag g_probe_once;
Result<void> g_probe_result;
}  // namespace

Result<void> MicrovmBackend::probe() {
    std::call_once(g_probe_once, [] {
        MicrovmOptions once;
        once.snapshot = false;  // one boot: a snapshot would serve no second VM
        auto backend = create(once);
        if (!backend) {
            g_probe_result = tl::unexpected(backend.error());
            return;
        }
        g_probe_result = run_true(**backend, kProbeTimeout);
    });
    return g_probe_result;
}

bool MicrovmBackend::emulated() {
    return detect_accel().accel == VmAccel::tcg;
}

std::string MicrovmBackend::probe_note() {
    const AccelChoice& c = detect_accel();
    if (c.accel == VmAccel::kvm) return "under KVM (" + c.why + ")";
    return "under TCG emulation, slow (" + c.why + "); auto picks it only for --isolation vm";
}

}  // namespace sandflow::sandbox
