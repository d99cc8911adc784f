// The sandbox backend interface (docs/sandbox.md, docs/architecture.md).
//
// A backend starts one worker process per actor instance, isolated as well as it can,
// with the channel on channel_fd_in_worker() (kChannelFd unless the backend says otherwise).
// Backends, strongest first: `microvm` (a virtual machine of its own: QEMU's microvm machine;
// sandbox/microvm/), `gvisor` (gVisor's user-space kernel through runsc;
// sandbox/gvisor/), `namespace` (user, pid, mount, network... namespaces; sandbox/namespace/),
// `landlock` (no namespaces: for containers and hosts that refuse them; sandbox/landlock/),
// and `none` (no isolation; development only, and only with an explicit opt-in).
//
// Users ask for an isolation level rather than a backend; `auto` picks the backend (see
// select_backend below and docs/sandbox.md#choosing-a-backend).
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "sandbox/process.hpp"
#include "sandbox/sandbox_limits.hpp"
#include "sandbox/shared_dir.hpp"
#include "sandbox/start_timeline.hpp"

namespace sandflow::sandbox {

// What runs inside: the worker's command line and the folder it starts in.
struct WorkerSpec {
    std::vector<std::string> argv;  // argv[0]: absolute path of the interpreter
    std::string workdir = "/tmp";
    // The sandbox's limits; unset: the backend's defaults (default_limits()).
    std::optional<SandboxLimits> limits;
    // When set, the start's steps are marked on it (sandbox_bench --timeline); it must
    // outlive spawn().
    StartTimeline* timeline = nullptr;
    // Host folders the worker may read (its package sets; shared_dir.hpp), checked by
    // spawn() with check_shared_dirs().
    std::vector<SharedDir> shared;
};

// What a spawn() whose worker always works in /tmp (gvisor, microvm) checks first, in this
// order: argv[0] is an absolute path (Errc::internal); the working directory is /tmp
// (Errc::invalid_argument: "<whose> working directory is /tmp, not '...'"); the limits, the
// spec's or else `defaults`, are positive; the shared folders pass check_shared_dirs(). The
// limits that apply.
Result<const SandboxLimits*> check_tmp_worker(const WorkerSpec& spec, const SandboxLimits& defaults,
                                              std::string_view whose);

// How strong an isolation is, weakest first. Each backend provides one level and meets
// every level below it.
//   process  the worker is a process of the host walled in by Landlock, seccomp, its own uid
//            and rlimits (landlock)
//   os       it also has namespaces of its own: its own view of files, processes, network
//            (namespace)
//   kernel   it also has a kernel of its own between it and the host's (gvisor)
//   vm       it also has a virtual machine of its own (microvm)
enum class IsolationLevel { none, process, os, kernel, vm };

std::string_view level_name(IsolationLevel level);
// "process", "os", "kernel", "vm"; an unknown name is an error naming the known ones.
Result<IsolationLevel> parse_level(std::string_view name);

class Backend {
  public:
    virtual ~Backend() = default;
    virtual std::string_view name() const = 0;
    virtual IsolationLevel level() const = 0;
    // False only for `none`: the worker runs with the runtime's own privileges.
    bool isolates() const { return level() != IsolationLevel::none; }
    // What a sandbox gets when WorkerSpec::limits is unset (what the warm pool starts).
    virtual SandboxLimits default_limits() const = 0;
    // The descriptor on which the worker finds its channel; WorkerSpec::argv names it last.
    // kChannelFd, or 0 where a sandbox can hand its worker only the standard descriptors
    // (gvisor): the channel is then the worker's stdin, and the SDK shims move it off 0 and
    // put /dev/null there, so that a worker sees the same descriptors on every backend.
    virtual int channel_fd_in_worker() const { return kChannelFd; }
    // How long a sandbox's own start may take before its worker runs (a VM's boot), on top
    // of the worker's start deadline; zero where the worker starts at once.
    virtual std::chrono::milliseconds boot_allowance() const { return {}; }
    // Where a worker of this backend finds a shared folder: mounted_path() where the
    // backend mounts it, the host's path where the worker reads the host's tree.
    virtual std::string shared_dir_path(const SharedDir& dir) const { return mounted_path(dir); }
    virtual Result<std::unique_ptr<Process>> spawn(const WorkerSpec& spec) = 0;
};

struct BackendOptions {
    // `none` refuses to start unless this is set (--insecure-no-sandbox).
    bool allow_insecure = false;
    // What `auto` must meet.
    IsolationLevel isolation = IsolationLevel::process;
    // The limits sandboxes get when their WorkerSpec names none (`none` enforces none).
    SandboxLimits limits;
    // gvisor: the platform runsc runs the sentry on; empty: gvisor::kDefaultPlatform.
    std::string gvisor_platform;
};

// Names accepted by make_backend besides "auto", strongest first.
std::vector<std::string_view> backend_names();

// What `auto` picks for `required`: of the backends that start here (host_probe.hpp) and
// meet the level, the fastest, which is the first in this order: namespace, landlock,
// gvisor, microvm. The first two start a worker as fast as a bare interpreter and namespace is the
// stronger; gvisor and microvm cost far more per start and call, so they are picked when the level
// asks for them. A microVM that runs only emulated (TCG: seconds per boot) is picked for level vm
// only. Errc::sandbox_unavailable, naming the level and what would provide it, when none does.
struct Selection {
    std::string backend;
    std::string reason;  // "namespace cannot run here (...); landlock meets process"
};
Result<Selection> select_backend(IsolationLevel required);

// The backend called `name`, or the one select_backend() picks for options.isolation when
// `name` is "auto" (logged once per process). Unknown names, a named backend below the
// required level, and `none` without allow_insecure are errors that say how to fix them.
Result<std::unique_ptr<Backend>> make_backend(std::string_view name, const BackendOptions& options);

// The environment every worker gets: nothing from the runtime's own.
std::vector<std::string> clean_worker_env();

}  // namespace sandflow::sandbox
