// QEMU's start for the microvm backend (microvm_backend.hpp): the descriptors QEMU's
// chardevs and monitor take, and launch(), which forks the child that enters QEMU's jail
// (cgroups, namespaces, no_new_privs, Landlock) and execs QEMU. Internal to the backend's
// files: qemu_launch.cpp, qmp.cpp, snapshot.cpp and microvm_backend.cpp.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "sandbox/microvm/microvm_backend.hpp"
#include "sandbox/process.hpp"

namespace sandflow::sandbox::microvm {

// Descriptors in QEMU: /dev/null on 0 and 1, the console socket on 2 (QEMU's own messages
// join the guest's console), then the channel, stdout and console sockets its chardevs take
// (`fd=3`, `fd=4`, `fd=5`), the monitor's socket (QMP, `fd=6`) and the saved device state a
// restore reads (`fd:7`), /dev/null where unused, then the report pipe, close-on-exec.
inline constexpr int kChanFd = 3, kOutFd = 4, kConsoleFd = 5, kQmpFd = 6, kStateFd = 7,
                     kReportFd = 8;
inline constexpr int kChildFds = kReportFd + 1;
// What the probe and a failed restore or snapshot quote of the console and QEMU's stderr.
inline constexpr std::size_t kProbeStderrBytes = 600;

// Errc::sandbox_unavailable with the backend "microvm".
Error unavailable(std::string message);

// One QEMU started: its process, and the host's ends of its monitor.
struct Launched {
    std::unique_ptr<Process> proc;
    UniqueFd qmp;
};

// Starts QEMU with `args`; `frame`, when not empty, waits in the channel for the agent.
// `state` is the saved device state a restore reads (-1: none).
Result<Launched> launch(const std::vector<std::string>& args, const std::string& frame, int state,
                        const SandboxLimits& limits, const MicrovmBackend::Jail& jail);

// Whether a child may enter new user, network, IPC and UTS namespaces here (a container may
// refuse them): found once by forking one that tries. The flags for unshare(), or 0.
int qemu_namespaces();

}  // namespace sandflow::sandbox::microvm
