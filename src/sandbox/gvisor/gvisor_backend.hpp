// The gvisor backend: each worker runs in its own gVisor sandbox, started with `runsc run`
// from an OCI bundle (oci_bundle.hpp). The worker's system calls are served by gVisor's
// user-space kernel (the sentry), not by the host's; its files come through runsc's gofer,
// its network is none at all (`--network=none`: only a loopback of its own). Chosen by name
// only (`--backend gvisor`), never by `auto`. docs/sandbox.md, "The gvisor backend".
//
//   parent   write config.json into the sandbox's own folder, create its cgroups with its
//            limits (and a CPU burst for gVisor's own start) → fork
//   child    channel on 0 (runsc hands a container its stdin, stdout and stderr and nothing
//            else), stdout and stderr pipes on 1 and 2 → default signals → own process group
//            → PR_SET_PDEATHSIG(SIGKILL) → wait for the parent → execve runsc
//   parent   move the child into its cgroups → release it → wait for its execve
//   runsc    `runsc --root=<sandbox's folder>/state --network=none --platform=ptrace
//            --ignore-cgroups [--rootless: only when the runtime is not root] run
//            --bundle=<sandbox's folder> <id>`: starts its gofer and
//            the sandbox, both with PR_SET_PDEATHSIG(SIGKILL) tied to itself, waits for the
//            worker and exits with its status
//
// Kill: SIGKILL to the runsc process (and its group): the kernel then kills the sandbox and
// the gofer (their death signal), and the sandbox's folder (bundle and runsc's state) is
// removed by the Process. A runtime that dies takes its runsc processes with it the same way
// (their death signal); the folders it left are removed by the next backend created.
//
// Between fork() and execve() nothing allocates, throws or logs; a failure reaches the parent
// as {step, errno} through a close-on-exec pipe, as in spawn_process().
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sandbox/backend.hpp"
#include "sandbox/gvisor/oci_bundle.hpp"
#include "sandbox/mechanisms/cgroups.hpp"
#include "sandbox/sandbox_limits.hpp"

namespace sandflow::sandbox {

namespace gvisor {
inline constexpr std::string_view kRunscPath = "/usr/bin/runsc";
// gVisor's platform: how the sentry intercepts the worker's system calls. ptrace works on
// any host that allows ptrace (no /dev/kvm or nested virtualisation needed) and is the
// only one of Debian 12's runsc that runs on these VMs; systrap (runsc from mid-2023) is
// faster, kvm the fastest where /dev/kvm is usable.
inline constexpr std::string_view kDefaultPlatform = "ptrace";
inline constexpr std::array<std::string_view, 3> kPlatforms = {"ptrace", "systrap", "kvm"};
// The sandbox's pid 1: Debian's tini (what `docker run --init` runs), with the worker as its
// child. gVisor makes a container's first process its init, to which orphans are
// re-parented; a worker there would never wait for them, and the zombies of a script's
// background processes would count against RLIMIT_NPROC until forks fail. tini waits for
// every process, passes signals on to the worker and exits with its status (128 + N for a
// signal, as runsc reports one). The static build: no loader work inside gVisor.
inline constexpr std::string_view kInitPath = "/usr/bin/tini-static";
// Where the backends of a runtime run as root keep their folders (runsc's own default,
// /run/runsc, is shared with every other runsc user of the host).
inline constexpr std::string_view kRootStateDir = "/run/sandflow/gvisor";
// The host's cgroups hold the whole sandbox: gVisor's kernel, its gofer and the runsc
// process as well as the worker. Memory: the sandbox's limit plus what those take at rest
// (~16 MiB measured; an idle python3 adds ~4 MiB), so that the worker keeps its limit.
inline constexpr std::uint64_t kRunscMemoryHeadroom = 32ull << 20;
// Tasks: the worker's own are capped inside (RLIMIT_NPROC, counted by gVisor's kernel);
// the host's pids cgroup is a backstop on the host tasks that serve them. At rest runsc,
// gofer and sentry have ~40; on the ptrace platform each process of the worker costs
// ~6 more (a stub process and its threads), each thread less than one.
inline constexpr std::uint32_t kRunscBaseTasks = 64;
inline constexpr std::uint32_t kHostTasksPerWorkerTask = 8;
}  // namespace gvisor

struct GvisorOptions {
    SandboxLimits limits;
    std::string runsc = std::string(gvisor::kRunscPath);
    std::string init = std::string(gvisor::kInitPath);             // a host path under /usr
    std::string platform = std::string(gvisor::kDefaultPlatform);  // one of gvisor::kPlatforms
    // Where this backend's folder is made; empty: gvisor::kRootStateDir as root,
    // $XDG_RUNTIME_DIR/sandflow/gvisor or /tmp/sandflow-gvisor-<uid> otherwise.
    std::string state_dir;
    // Use cgroups where this host lets Sandflow write them (gVisor's rlimits always apply).
    bool use_cgroups = true;
};

// The folder a backend keeps (the shared root, one folder per sandbox), removed with the
// backend and the last of its sandboxes, whichever goes last.
class GvisorFolder;

class GvisorBackend final : public Backend {
  public:
    // Checks the options and runsc, removes folders left by runtimes that are gone, and
    // writes this backend's folder and its sandboxes' shared root.
    static Result<std::unique_ptr<GvisorBackend>> create(GvisorOptions options = {});

    std::string_view name() const override { return "gvisor"; }
    IsolationLevel level() const override { return IsolationLevel::kernel; }
    SandboxLimits default_limits() const override { return options_.limits; }
    int channel_fd_in_worker() const override { return 0; }
    Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) override;

    // Starts one sandbox running /usr/bin/true and waits for it; the result is computed once
    // per process. Errc::sandbox_unavailable with how to fix it when gVisor cannot run here.
    static Result<void> probe();

    const GvisorOptions& options() const { return options_; }
    const mech::CgroupSupport& cgroup_support() const { return cgroups_; }
    // This backend's folder; each sandbox's is <folder>/sandboxes/<id>, runsc's --root
    // inside it at state/.
    const std::string& folder() const;
    // Whether runsc runs with --rootless (the runtime is not root).
    bool rootless() const { return rootless_; }

  private:
    explicit GvisorBackend(GvisorOptions options) : options_(std::move(options)) {}

    GvisorOptions options_;
    std::shared_ptr<GvisorFolder> folder_;
    gvisor::RootLayout layout_;
    mech::CgroupSupport cgroups_;
    bool rootless_ = false;
    std::vector<std::string> env_;
};

}  // namespace sandflow::sandbox
