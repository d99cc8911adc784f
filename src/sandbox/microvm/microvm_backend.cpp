// The microvm backend's orchestrator: create() (QEMU, the image, the accelerator), spawn()
// (the start frame, then a boot or a restore), the probes. QEMU's command line, jail and
// start: qemu_launch.cpp; its monitor: qmp.cpp; warm start by snapshot: snapshot.cpp.
#include "sandbox/microvm/microvm_backend.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "sandbox/microvm/guest_protocol.hpp"
#include "sandbox/microvm/qemu_launch.hpp"

namespace sandflow::sandbox {

using namespace microvm;
using Clock = std::chrono::steady_clock;

namespace {

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

Result<std::unique_ptr<Process>> MicrovmBackend::spawn(const WorkerSpec& spec) {
    auto checked = check_tmp_worker(spec, options_.limits, "the microVM's");
    if (!checked) return tl::unexpected(checked.error());
    const SandboxLimits& limits = **checked;
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
    return restore(*snap, shape, frame, limits);
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
