// The microvm backend: each worker runs in a virtual machine of its own, QEMU's `microvm`
// machine booting Debian's kernel and an initramfs whose init is Sandflow's guest agent
// (guest/agent.cpp; the image: scripts/microvm-image.sh). docs/sandbox.md, "The microvm
// backend".
//
//   parent   socketpairs for the channel, the worker's stdout, the console (the worker's
//            stderr, the kernel's errors) and QEMU's monitor (QMP); QEMU's cgroups; the
//            start frame (what to run, with its limits; guest_protocol.hpp) written into
//            the channel → fork
//   child    enter the cgroups → /dev/null on 0 and 1, the console socket on 2 (QEMU's own
//            messages), the channel, stdout, console and monitor sockets on 3, 4, 5, 6, a
//            restore's saved state on 7 → default signals → own process group →
//            PR_SET_PDEATHSIG(SIGKILL) → user, net, IPC, UTS namespaces where allowed →
//            no_new_privs → Landlock → execve QEMU
//   QEMU     `-M microvm -nodefaults -no-user-config -nographic -no-reboot`, no network
//            device; memory and vCPUs from the limits; virtio-serial ports on the three
//            sockets (`-chardev socket,fd=N`); the host's /usr read-only over 9p;
//            isa-debug-exit, through which the agent reports the worker's end; `-sandbox on`
//   guest    the agent mounts, loads the virtio modules, reads the start frame, mounts /usr
//            and starts the worker with a unix socket on descriptor 3, which it relays to
//            the channel port
//
// Warm start by snapshot (MicrovmOptions::snapshot): the first VM of each memory size and
// vCPU count boots with its RAM in a shared file to where the agent waits for the start
// frame and is saved there over QMP; every later one is restored from it (-incoming, the
// RAM file mapped privately), reads its start frame and goes on as after a boot.
//
// Kill: SIGKILL to QEMU and its group; the guest goes with it. QEMU's exit status is the
// worker's as the agent reported it (microvm::decode_exit).
//
// Between fork() and execve() nothing allocates, throws or logs; a failure reaches the parent
// as {step, errno} through a close-on-exec pipe, as in spawn_process().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/backend.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/mechanisms/landlock.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox {

namespace microvm {
inline constexpr std::string_view kQemuPath = "/usr/bin/qemu-system-x86_64";
// Guest memory beyond the sandbox's memory limit: the guest's kernel, its page cache of the
// 9p share and the agent take ~40 MiB once Python runs.
inline constexpr std::uint64_t kGuestMemoryHeadroom = 64ull << 20;
// How long a stock kernel on real KVM may take to boot and run /usr/bin/true before KVM is
// judged unusable (a software nested hypervisor that never gets through the boot): real KVM
// takes well under a second.
inline constexpr std::chrono::seconds kKvmProbeTimeout{5};
// What a boot adds to a worker's start deadline (Backend::boot_allowance): under TCG the
// kernel's boot and Python's start take ~6.5 s on an idle 2-vCPU VM, and several times that
// on a loaded one.
inline constexpr std::chrono::seconds kTcgBootAllowance{60};
inline constexpr std::chrono::seconds kKvmBootAllowance{5};
// The kernel's command line: its console is the first virtio-serial port (the host's
// stderr capture), errors only; a panic ends the VM at once (with -no-reboot). Under TCG the
// host's TSC rate is added (tsc_early_khz, and tsc=reliable: the emulated clocks jitter with
// the host's load, which would make the kernel's watchdog distrust the TSC).
inline constexpr std::string_view kKernelCmdline = "console=hvc0 quiet loglevel=3 panic=-1";
// QEMU's cgroups (besides the guest's RAM, which its memory group holds too): TCG's cache of
// translated code (`tb-size`, 1 GiB by default in QEMU 7.2, capped here) and QEMU's own
// memory; its threads (vCPUs, I/O, RCU and the 9p workers, up to 64).
inline constexpr std::uint64_t kTcgCacheMib = 64;
inline constexpr std::uint64_t kQemuMemoryOverhead = 192ull << 20;
inline constexpr std::uint64_t kQemuThreads = 128;
// How long one exchange with QEMU's monitor (QMP) may take: a restore's incoming migration
// reads the device state (~50 KiB; the RAM is the snapshot's file, mapped), a snapshot's
// migration writes it.
inline constexpr std::chrono::seconds kQmpTimeout{30};
// The most bytes one QMP answer may take (query-migrate's is ~1 KiB).
inline constexpr std::size_t kMaxQmpLine = 64 * 1024;
}  // namespace microvm

// How the guest's CPU runs: on the host's CPU through KVM, or emulated by QEMU (TCG).
enum class VmAccel { kvm, tcg };

struct MicrovmOptions {
    SandboxLimits limits;
    std::string qemu = std::string(microvm::kQemuPath);
    // The guest image's folder (vmlinuz, initramfs.img, manifest); empty: where the build
    // writes it (MicrovmBackend::default_image_dir()).
    std::string image_dir;
    // "auto" (KVM when a test guest boots on it, else TCG), "kvm" or "tcg".
    std::string accel = "auto";
    // Warm start by snapshot (docs/sandbox.md): the first VM of each memory size and vCPU
    // count boots to the point where the agent waits for its start frame and is saved there;
    // every VM after it is restored from that state, its RAM the saved file mapped
    // copy-on-write. False: every VM boots.
    bool snapshot = true;
    // Where the snapshots are written (a private folder in it, removed with the backend);
    // empty: /tmp.
    std::string snapshot_parent;
};

class MicrovmBackend final : public Backend {
  public:
    // Checks QEMU and the image; "auto" resolves the accelerator (detect_accel()).
    static Result<std::unique_ptr<MicrovmBackend>> create(MicrovmOptions options = {});

    std::string_view name() const override { return "microvm"; }
    IsolationLevel level() const override { return IsolationLevel::vm; }
    SandboxLimits default_limits() const override { return options_.limits; }
    std::chrono::milliseconds boot_allowance() const override {
        return accel_ == VmAccel::kvm ? microvm::kKvmBootAllowance : microvm::kTcgBootAllowance;
    }
    // The guest mounts the host's /usr where it lies, so a shared folder under /usr is found
    // at its host path; spawn() refuses others.
    std::string shared_dir_path(const SharedDir& dir) const override { return dir.host; }
    Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) override;

    VmAccel accel() const { return accel_; }
    static std::string default_image_dir();
    const MicrovmOptions& options() const { return options_; }

    // KVM when /dev/kvm opens and a test guest boots on it within kKvmProbeTimeout, else
    // TCG; computed once per process. `why` says which and why.
    struct AccelChoice {
        VmAccel accel = VmAccel::tcg;
        std::string why;
    };
    static const AccelChoice& detect_accel();

    // Boots one guest running /usr/bin/true and waits for it; computed once per process.
    // Errc::sandbox_unavailable with how to fix it when it cannot run here.
    static Result<void> probe();
    // After probe(): "under KVM" or "under TCG emulation (why)".
    static std::string probe_note();
    // After probe(): whether the guest runs emulated (TCG), which `auto` takes only for
    // isolation level vm.
    static bool emulated();

    // Whether QEMU runs in namespaces of its own (where the host allows them).
    bool vmm_namespaces() const { return unshare_flags_ != 0; }
    // VMs restored from a snapshot, and snapshots taken, by this backend.
    std::size_t restores() const { return restores_.load(); }
    std::size_t snapshots_taken() const { return snapshots_taken_.load(); }
    // The RAM file of the snapshot for `limits` (empty before it is taken): tests check
    // that the VMs restored from it never write it.
    std::string snapshot_ram(const SandboxLimits& limits) const;

    ~MicrovmBackend() override;

    // What QEMU runs inside (docs/sandbox.md, "QEMU's jail").
    struct Jail {
        mech::LandlockPlan landlock;
        const mech::CgroupSupport* cgroups = nullptr;
        std::uint64_t memory_bytes = 0;  // its memory group: the guest's RAM and QEMU's own
        int unshare_flags = 0;
    };

  private:
    explicit MicrovmBackend(MicrovmOptions options) : options_(std::move(options)) {}

    struct Snapshot {
        std::string ram, state;
    };
    struct VmShape {
        std::uint64_t memory_mib = 0;
        std::uint32_t cpus = 1;
        auto operator<=>(const VmShape&) const = default;
    };
    static VmShape shape_of(const SandboxLimits& limits);
    std::vector<std::string> qemu_args(VmShape shape, const std::string& memory_backend,
                                       bool snapshotting) const;
    // The snapshot for `shape`, taken now if there is none yet.
    Result<std::shared_ptr<const Snapshot>> snapshot_for(VmShape shape);
    Result<std::shared_ptr<const Snapshot>> take_snapshot(VmShape shape);
    // A VM restored from `snap`, continued, with `frame` waiting in its channel.
    Result<std::unique_ptr<Process>> restore(const Snapshot& snap, VmShape shape,
                                             const std::string& frame, const SandboxLimits& limits);
    Jail jail(VmShape shape) const;

    MicrovmOptions options_;
    VmAccel accel_ = VmAccel::tcg;
    std::string kernel_, initrd_, cmdline_;
    std::vector<std::string> env_;
    mech::CgroupSupport cgroups_;
    // QEMU's own user, network, IPC and UTS namespaces (no host capability, no network
    // stack, nothing to talk to), or 0 where they are refused: Landlock and seccomp remain.
    int unshare_flags_ = 0;

    mutable std::mutex snapshot_mu_;  // held while a snapshot is taken: others wait for it
    std::string snapshot_dir_;        // made by create(), then unchanged
    std::map<VmShape, std::shared_ptr<const Snapshot>> snapshots_;
    std::map<VmShape, std::string> snapshot_failures_;  // tried once; these VMs boot
    std::atomic<std::size_t> restores_{0}, snapshots_taken_{0};
};

}  // namespace sandflow::sandbox
