#include "sandbox/microvm/microvm_backend.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "core/log.hpp"
#include "sandbox/microvm/guest_protocol.hpp"

namespace sandflow::sandbox {

using namespace microvm;

namespace {

// Descriptors in QEMU: /dev/null on 0 and 1, the console socket on 2 (QEMU's own messages
// join the guest's console), then the channel, stdout and console sockets its chardevs take
// (`fd=3`, `fd=4`, `fd=5`), then the report pipe, close-on-exec.
constexpr int kChanFd = 3, kOutFd = 4, kConsoleFd = 5, kReportFd = 6;
// What probe() quotes of the console and QEMU's stderr.
constexpr std::size_t kProbeStderrBytes = 600;

enum ChildStep : int { kStepDescriptors = 1, kStepSetpgid, kStepDeathSignal, kStepExec };

const char* step_name(int step) {
    switch (step) {
        case kStepDescriptors:
            return "setting up descriptors";
        case kStepSetpgid:
            return "setpgid";
        case kStepDeathSignal:
            return "prctl(PR_SET_PDEATHSIG)";
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
    int src_fds[7];  // as placed on 0..6
};

[[noreturn]] void child_fail(int report_fd, int step) {
    const int msg[2] = {step, errno};
    [[maybe_unused]] ssize_t n = ::write(report_fd, msg, sizeof msg);
    ::_exit(127);
}

[[noreturn]] void run_child(const ChildContext& c) {
    if (!place_descriptors(c.src_fds, 7, kReportFd)) child_fail(c.src_fds[6], kStepDescriptors);
    (void)reset_signals();
    if (::setpgid(0, 0) != 0) child_fail(kReportFd, kStepSetpgid);
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) child_fail(kReportFd, kStepDeathSignal);
    if (::getppid() != c.parent) ::_exit(127);  // the parent died before prctl
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
                   const SandboxLimits& limits)
        : Process(pid, std::move(channel), std::move(out), std::move(err)), limits_(limits) {}
    ~MicrovmProcess() override { kill_and_wait(); }

    const SandboxLimits* limits() const override { return &limits_; }
    // The VM's memory and vCPUs are fixed at boot, the guest's rlimits and tmpfs too.
    Result<bool> update_limits(const SandboxLimits& to) override { return to == limits_; }

  protected:
    void on_exit(ExitStatus& s) override {
        if (!WIFEXITED(s.raw)) return;  // QEMU killed (the runtime's kill, a wall clock)
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
};

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
    return b;
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

    StartSpec start;
    start.argv = spec.argv;
    start.env = env_;
    start.workdir = spec.workdir;
    start.tmpfs_bytes = limits.tmpfs_bytes;
    start.tmpfs_inodes = limits.tmpfs_inodes;
    start.open_files = limits.open_files;
    start.nproc = std::min(limits.nproc, limits.pids);
    start.cpu_seconds = limits.cpu_seconds;
    const std::string frame = encode_start(start);
    if (frame.size() - 4 > kMaxStartFrameBytes)
        return fail(Errc::invalid_argument,
                    "the microVM worker's command line and environment take " +
                        std::to_string(frame.size()) + " bytes, more than the guest accepts (" +
                        std::to_string(kMaxStartFrameBytes) + ", microvm::kMaxStartFrameBytes)");

    // Everything the child needs is built now: it must not allocate after fork().
    const std::uint64_t mib = 1ull << 20;
    const std::uint64_t memory_mib = (limits.memory_bytes + kGuestMemoryHeadroom + mib - 1) / mib;
    const std::uint32_t cpus = std::max<std::uint32_t>(1, (limits.cpu_milli + 999) / 1000);
    std::vector<std::string> args = {
        options_.qemu,
        "-M",
        "microvm",
        "-accel",
        accel_ == VmAccel::kvm ? "kvm" : "tcg",
        "-m",
        std::to_string(memory_mib) + "M",
        "-smp",
        std::to_string(cpus),
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        "-kernel",
        kernel_,
        "-initrd",
        initrd_,
        "-append",
        accel_ == VmAccel::kvm ? std::string(kKernelCmdline)
                               : std::string(kKernelCmdline) + " tsc=reliable tsc_early_khz=" +
                                     std::to_string(host_tsc_khz()),
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
        // QEMU's own seccomp filter: no setuid/setgid, no fork/exec, no scheduler or
        // resource changes, no obsolete calls.
        "-sandbox",
        "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny",
    };
    if (accel_ == VmAccel::kvm) {
        args.emplace_back("-cpu");
        args.emplace_back("host");
    }
    const std::vector<std::string> qemu_env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    std::vector<char*> argv, envp;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    for (const auto& e : qemu_env) envp.push_back(const_cast<char*>(e.c_str()));
    envp.push_back(nullptr);

    int sv[2];
    auto pair = [&sv](const char* what) -> Result<std::pair<UniqueFd, UniqueFd>> {
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
            return tl::unexpected(system_error(std::string("socketpair for the ") + what, errno));
        return std::pair<UniqueFd, UniqueFd>{UniqueFd(sv[0]), UniqueFd(sv[1])};
    };
    auto chan = pair("microVM's channel");
    if (!chan) return tl::unexpected(chan.error());
    auto out = pair("microVM's stdout");
    if (!out) return tl::unexpected(out.error());
    auto console = pair("microVM's console");
    if (!console) return tl::unexpected(console.error());
    int rp[2];
    if (::pipe2(rp, O_CLOEXEC) != 0)
        return tl::unexpected(system_error("pipe for the report", errno));
    UniqueFd report_r(rp[0]), report_w(rp[1]);
    UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!devnull) return tl::unexpected(system_error("open /dev/null", errno));

    // The start frame waits in the channel's buffer until the guest's agent reads it.
    {
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
                           {devnull.get(), devnull.get(), console->second.get(), chan->second.get(),
                            out->second.get(), console->second.get(), report_w.get()}};
    const pid_t pid = ::fork();
    if (pid < 0) return tl::unexpected(system_error("fork", errno));
    if (pid == 0) run_child(ctx);

    chan->second.reset();
    out->second.reset();
    console->second.reset();
    report_w.reset();
    auto proc = std::make_unique<MicrovmProcess>(pid, std::move(chan->first), std::move(out->first),
                                                 std::move(console->first), limits);
    const ExecReport report = wait_for_exec(report_r.get(), kExecTimeoutMs);
    if (report.kind == ExecReport::timed_out) {
        proc->kill_and_wait();
        return tl::unexpected(unavailable("QEMU was not started within " +
                                          std::to_string(kExecTimeoutMs / 1000) +
                                          " s; it was killed"));
    }
    if (report.kind == ExecReport::failed) {
        proc->kill_and_wait();
        Error e = unavailable("starting " + options_.qemu + " for the microVM failed at " +
                              step_name(report.step) + ": " + std::strerror(report.err));
        e.data["errno"] = report.err;
        return tl::unexpected(std::move(e));
    }
    if (auto ok = set_worker_fds_nonblocking(*proc); !ok) return tl::unexpected(ok.error());
    return std::unique_ptr<Process>(std::move(proc));
}

namespace {
std::once_flag g_probe_once;
Result<void> g_probe_result;
}  // namespace

Result<void> MicrovmBackend::probe() {
    std::call_once(g_probe_once, [] {
        auto backend = create();
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
