// Warm start by snapshot (microvm_backend.hpp): the first VM of each shape boots to where
// its agent waits for the start frame and is saved there; every later one is restored.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <mutex>

#include "core/log.hpp"
#include "sandbox/microvm/guest_protocol.hpp"
#include "sandbox/microvm/microvm_backend.hpp"
#include "sandbox/microvm/qemu_launch.hpp"
#include "sandbox/microvm/qmp.hpp"

namespace sandflow::sandbox {

using namespace microvm;
using Clock = std::chrono::steady_clock;

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

Result<std::unique_ptr<Process>> MicrovmBackend::restore(const Snapshot& snap, VmShape shape,
                                                         const std::string& frame,
                                                         const SandboxLimits& limits) {
    // The RAM is the snapshot's file mapped privately (share=off: the guest's writes
    // are copies of its own, never the file's); the device state comes in through fd 7 once
    // x-ignore-shared is set on this side too (the RAM is not in the stream); the VM, stopped
    // when it was saved, continues on `cont`, reads its start frame and starts the worker.
    UniqueFd state(::open(snap.state.c_str(), O_RDONLY | O_CLOEXEC));
    if (!state) return tl::unexpected(system_error("open the snapshot's " + snap.state, errno));
    std::vector<std::string> args =
        qemu_args(shape,
                  "memory-backend-file,id=ram,size=" + std::to_string(shape.memory_mib) +
                      "M,mem-path=" + snap.ram + ",share=off",
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

}  // namespace sandflow::sandbox
